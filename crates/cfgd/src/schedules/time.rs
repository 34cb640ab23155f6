//! Times and step lists as people write them: RFC 3339 in UTC or
//! `+DURATION`, and `10%@TIME,50%@TIME`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::invalid;
use crate::error::Result;

/// Reads a time: RFC 3339 in UTC (`2026-12-04T03:00:00Z`; without the `Z`
/// it is UTC too), or `+` and a duration from `now_ms` (`+90s`, `+2h`).
/// Answers milliseconds since the Unix epoch.
pub fn parse_time(text: &str, now_ms: u64) -> Result<u64> {
    let text = text.trim();
    if let Some(after) = text.strip_prefix('+') {
        let after = humantime::parse_duration(after).map_err(|e| {
            invalid(format!(
                "time {text:?}: not a duration such as +90s or +2h: {e}"
            ))
        })?;
        return Ok(now_ms + after.as_millis() as u64);
    }
    let at = humantime::parse_rfc3339_weak(text).map_err(|_| {
        invalid(format!(
            "time {text:?}: not RFC 3339 in UTC (2026-12-04T03:00:00Z) nor +DURATION (+90s)"
        ))
    })?;
    Ok(at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64))
}

/// `ms` as RFC 3339, to the millisecond.
pub fn format_time(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// Reads a rollout's steps, `10%@TIME,50%@TIME,100%@TIME`: percentages
/// from 0 to 100 at times that rise, each in the future.
pub fn parse_steps(text: &str, now_ms: u64) -> Result<Vec<(u32, u64)>> {
    let mut steps: Vec<(u32, u64)> = Vec::new();
    for part in text.split(',').map(str::trim) {
        let bad = |why: &str| invalid(format!("step {part:?}: {why}"));
        let (percent, at) = part
            .split_once('@')
            .ok_or_else(|| bad("a step is PERCENT%@TIME, such as 10%@+1h"))?;
        let percent: u32 = percent
            .trim()
            .strip_suffix('%')
            .and_then(|p| p.trim().parse().ok())
            .filter(|p| *p <= 100)
            .ok_or_else(|| bad("the percentage must be 0% to 100%"))?;
        let at = parse_time(at, now_ms)?;
        check_future(at, now_ms)?;
        if steps.last().is_some_and(|(_, before)| at <= *before) {
            return Err(bad("each step's time must come after the step before it"));
        }
        steps.push((percent, at));
    }
    Ok(steps)
}

/// Refuses a time that is not in the future.
pub(crate) fn check_future(at_ms: u64, now_ms: u64) -> Result<()> {
    if at_ms <= now_ms {
        return Err(invalid(format!(
            "{} is in the past (it is {} now)",
            format_time(at_ms),
            format_time(now_ms)
        )));
    }
    Ok(())
}

/// Milliseconds since the Unix epoch now.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        let now = 1_800_000_000_000;
        assert_eq!(parse_time("+90s", now).unwrap(), now + 90_000);
        assert_eq!(
            parse_time("2027-01-15T08:00:00Z", now).unwrap(),
            1_800_000_000_000
        );
        assert_eq!(
            parse_time("2027-01-15T08:00:00", now).unwrap(),
            1_800_000_000_000
        );
        for bad in ["tomorrow", "+soon", "2027-13-01T00:00:00Z", ""] {
            assert!(parse_time(bad, now).is_err(), "{bad}");
        }
    }

    #[test]
    fn steps() {
        let now = 1_000;
        let steps = parse_steps("10%@+1s, 50%@+2s,100%@+3s", now).unwrap();
        assert_eq!(steps, vec![(10, 2_000), (50, 3_000), (100, 4_000)]);
        for bad in [
            "10@+1s",
            "10%",
            "101%@+1s",
            "10%@+2s,20%@+1s",
            "10%@1970-01-01T00:00:00Z",
            "x%@+1s",
        ] {
            assert!(parse_steps(bad, now).is_err(), "{bad}");
        }
    }
}
