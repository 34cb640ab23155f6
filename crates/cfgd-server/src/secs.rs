//! Seconds in the settings file, as a number (fractions allowed), read
//! into a [`Duration`].

use std::time::Duration;

use serde::{Deserialize, Deserializer};

pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    Ok(Duration::from_secs_f64(f64::deserialize(d)?))
}
