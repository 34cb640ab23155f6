//! Seconds in the settings file, as a number (fractions allowed), read
//! into a [`Duration`].

use std::time::Duration;

use serde::{de::Error, Deserialize, Deserializer};

pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let secs = f64::deserialize(d)?;
    Duration::try_from_secs_f64(secs)
        .map_err(|_| D::Error::custom(format!("{secs} is not a number of seconds (0 or more)")))
}
