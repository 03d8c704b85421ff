//! Small formatting and parsing helpers for the command line: UTC timestamps,
//! durations, and the wall clock (the binary is the only place that reads it).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64
}

pub(crate) use tidings::utc::utc;

/// `count` with its noun in the right number: `1 specialist`, `2 specialists`.
pub(crate) fn counted(count: u64, one: &str, many: &str) -> String {
    format!("{count} {}", if count == 1 { one } else { many })
}

/// A human duration such as `1h 5m` for milliseconds.
pub(crate) fn human_duration(ms: u64) -> String {
    let seconds = ms / 1000;
    match seconds {
        0..=59 => format!("{seconds}s"),
        60..=3599 => format!("{}m {}s", seconds / 60, seconds % 60),
        3600..=86_399 => format!("{}h {}m", seconds / 3600, seconds % 3600 / 60),
        _ => format!("{}d {}h", seconds / 86_400, seconds % 86_400 / 3600),
    }
}

/// Parses `90`, `90s`, `15m`, `1h`, `1d` (or `500ms`) into milliseconds.
pub(crate) fn parse_duration_ms(text: &str) -> anyhow::Result<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .with_context(|| format!("invalid duration {text:?}: expected e.g. 90s, 15m, 1h"))?;
    let scale = match unit {
        "ms" => 1,
        "" | "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        other => bail!("invalid duration unit {other:?} in {text:?}: use ms, s, m, h or d"),
    };
    number
        .checked_mul(scale)
        .with_context(|| format!("duration {text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_take_the_noun_in_their_number() {
        assert_eq!(counted(0, "entry", "entries"), "0 entries");
        assert_eq!(counted(1, "entry", "entries"), "1 entry");
        assert_eq!(counted(2, "peer", "peers"), "2 peers");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("90").unwrap(), 90_000);
        assert_eq!(parse_duration_ms("15m").unwrap(), 900_000);
        assert_eq!(parse_duration_ms("1d").unwrap(), 86_400_000);
        assert_eq!(parse_duration_ms("250ms").unwrap(), 250);
        assert!(parse_duration_ms("1y").is_err());
        assert!(parse_duration_ms("h").is_err());
        assert_eq!(human_duration(3_660_000), "1h 1m");
    }
}
