//! Idle timeouts as people write them: Ollama's `keep_alive` ("5m", "1h30m", "30s", a number of
//! seconds, negative = forever), LM Studio's `ttl` (seconds), and "never" in the config.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// How long an idle model stays loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleTimeout {
    /// Until it is stopped, evicted or the server exits.
    Never,
    /// This long after its last request ends; zero = as soon as it ends.
    After(Duration),
}

impl IdleTimeout {
    /// The longest timeout written as a duration: beyond it, "never" is meant. (It also keeps
    /// `Instant + timeout` far from overflow.)
    pub const MAX: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

    /// Seconds as Ollama and LM Studio send them: negative means forever.
    pub fn from_seconds(seconds: f64) -> Result<Self, String> {
        if !seconds.is_finite() {
            return Err(format!("{seconds} is not a number of seconds"));
        }
        if seconds < 0.0 {
            return Ok(Self::Never);
        }
        let duration = Duration::try_from_secs_f64(seconds).map_err(|e| e.to_string())?;
        Ok(if duration > Self::MAX {
            Self::Never
        } else {
            Self::After(duration)
        })
    }

    /// Seconds, for the API; `None` for never.
    pub fn as_secs(self) -> Option<u64> {
        match self {
            Self::Never => None,
            Self::After(d) => Some(d.as_secs()),
        }
    }
}

/// Parses "never", a number of seconds ("300", "-1", "2.5"), or a Go-style duration such as
/// "5m", "1h30m", "500ms", "-1m" (negative = never, as Ollama reads it).
pub fn parse_idle_timeout(text: &str) -> Result<IdleTimeout, String> {
    let text = text.trim();
    let bad = || {
        format!(
            "{text:?} is not a duration: use \"never\", seconds, or a duration such as \"30s\", \"5m\", \"1h30m\""
        )
    };
    if text.eq_ignore_ascii_case("never") || text.eq_ignore_ascii_case("forever") {
        return Ok(IdleTimeout::Never);
    }
    if let Ok(seconds) = text.parse::<f64>() {
        return IdleTimeout::from_seconds(seconds);
    }
    let (negative, mut rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if rest.is_empty() {
        return Err(bad());
    }
    let mut seconds = 0.0f64;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let number: f64 = rest[..number_end].parse().map_err(|_| bad())?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        seconds += number * scale;
        rest = &rest[unit_end..];
    }
    if negative && seconds > 0.0 {
        return Ok(IdleTimeout::Never);
    }
    IdleTimeout::from_seconds(seconds)
}

impl fmt::Display for IdleTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Never => f.write_str("never"),
            Self::After(d) => {
                let secs = d.as_secs();
                if d.subsec_nanos() != 0 {
                    write!(f, "{}s", d.as_secs_f64())
                } else if secs != 0 && secs % 3600 == 0 {
                    write!(f, "{}h", secs / 3600)
                } else if secs != 0 && secs % 60 == 0 {
                    write!(f, "{}m", secs / 60)
                } else {
                    write!(f, "{secs}s")
                }
            }
        }
    }
}

impl Serialize for IdleTimeout {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// In the config a negative timeout is a mistake, not "forever" (that is spelled "never").
struct ConfigTimeout;

impl Visitor<'_> for ConfigTimeout {
    type Value = IdleTimeout;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"never\", a duration such as \"10m\", or a number of seconds")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<IdleTimeout, E> {
        if v.trim_start().starts_with('-') {
            return Err(E::custom(format!(
                "{v:?} is negative; write \"never\" to keep models loaded"
            )));
        }
        parse_idle_timeout(v).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<IdleTimeout, E> {
        IdleTimeout::from_seconds(v as f64).map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<IdleTimeout, E> {
        if v < 0 {
            return Err(E::custom(format!(
                "{v} is negative; write \"never\" to keep models loaded"
            )));
        }
        IdleTimeout::from_seconds(v as f64).map_err(E::custom)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<IdleTimeout, E> {
        if v < 0.0 {
            return Err(E::custom(format!(
                "{v} is negative; write \"never\" to keep models loaded"
            )));
        }
        IdleTimeout::from_seconds(v).map_err(E::custom)
    }
}

impl<'de> Deserialize<'de> for IdleTimeout {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ConfigTimeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after(secs: f64) -> IdleTimeout {
        IdleTimeout::After(Duration::from_secs_f64(secs))
    }

    #[test]
    fn ollama_durations() {
        assert_eq!(parse_idle_timeout("5m"), Ok(after(300.0)));
        assert_eq!(parse_idle_timeout("1h30m"), Ok(after(5400.0)));
        assert_eq!(parse_idle_timeout("30s"), Ok(after(30.0)));
        assert_eq!(parse_idle_timeout("1.5h"), Ok(after(5400.0)));
        assert_eq!(parse_idle_timeout("500ms"), Ok(after(0.5)));
        assert_eq!(parse_idle_timeout("0"), Ok(after(0.0)));
        assert_eq!(parse_idle_timeout("300"), Ok(after(300.0)));
        assert_eq!(parse_idle_timeout("-1"), Ok(IdleTimeout::Never));
        assert_eq!(parse_idle_timeout("-1m"), Ok(IdleTimeout::Never));
        assert_eq!(parse_idle_timeout("never"), Ok(IdleTimeout::Never));
        assert_eq!(parse_idle_timeout("99999999h"), Ok(IdleTimeout::Never));
    }

    #[test]
    fn nonsense_is_refused() {
        for bad in [
            "",
            "5 minutes",
            "m",
            "5x",
            "1h-3m",
            "--1",
            "nan",
            "inf",
            "1..2s",
        ] {
            assert!(parse_idle_timeout(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn displayed_the_way_it_is_written() {
        assert_eq!(after(600.0).to_string(), "10m");
        assert_eq!(after(3600.0).to_string(), "1h");
        assert_eq!(after(90.0).to_string(), "90s");
        assert_eq!(after(0.0).to_string(), "0s");
        assert_eq!(IdleTimeout::Never.to_string(), "never");
    }

    #[test]
    fn config_values() {
        #[derive(Deserialize)]
        struct T {
            t: IdleTimeout,
        }
        let t = |s: &str| toml::from_str::<T>(s).map(|t| t.t);
        assert_eq!(t("t = \"10m\"").ok(), Some(after(600.0)));
        assert_eq!(t("t = 120").ok(), Some(after(120.0)));
        assert_eq!(t("t = \"never\"").ok(), Some(IdleTimeout::Never));
        assert!(t("t = -5").is_err());
        assert!(t("t = \"-5m\"").is_err());
        assert!(t("t = \"soon\"").is_err());
    }
}
