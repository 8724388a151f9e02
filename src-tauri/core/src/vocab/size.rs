//! Memory amounts in settings: `"2GiB"`, `"512MB"`, a plain number of bytes, and for the pool
//! limit also `"75%"` of RAM or `"auto"`.
//!
//! Users write sizes the way their tools print them, so both binary (KiB, MiB, GiB, TiB) and
//! decimal (KB, MB, GB, TB) units are accepted and mean what they say.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A number of bytes, written in the config as a number or a string with a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

/// The pool's memory limit.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum MemoryLimit {
    /// RAM minus a quarter of it, the quarter kept between 4 GiB and 8 GiB: what the rest of
    /// the machine needs to stay responsive. (On machines or cgroups under 8 GiB, half.)
    #[default]
    Auto,
    /// A share of RAM, in percent (0 < p ≤ 100).
    Percent(f64),
    Bytes(u64),
}

const GIB: u64 = 1 << 30;

impl MemoryLimit {
    /// The limit in bytes on a machine with `total` bytes of RAM.
    pub fn resolve(self, total: u64) -> u64 {
        match self {
            Self::Auto => {
                // Below 8 GiB the 4 GiB floor would leave nothing: keep half instead.
                let reserve = (total / 4).clamp(4 * GIB, 8 * GIB).min(total / 2);
                total.saturating_sub(reserve)
            }
            // f64 holds any RAM size we will meet to well under a byte per GiB.
            Self::Percent(p) => ((total as f64) * p / 100.0) as u64,
            Self::Bytes(b) => b,
        }
    }
}

/// Parses `"1.5GiB"`, `"512 MB"`, `"1048576"`.
pub fn parse_bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "k" => 1_000,
        "mb" | "m" => 1_000_000,
        "gb" | "g" => 1_000_000_000,
        "tb" | "t" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => return None,
    };
    let bytes = number * scale as f64;
    (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

impl std::str::FromStr for MemoryLimit {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("auto") {
            return Ok(Self::Auto);
        }
        if let Some(percent) = text.strip_suffix('%') {
            return match percent.trim().parse::<f64>() {
                Ok(p) if p > 0.0 && p <= 100.0 => Ok(Self::Percent(p)),
                _ => Err(format!("{text:?} is not a percentage from 0 to 100")),
            };
        }
        parse_bytes(text)
            .map(Self::Bytes)
            .ok_or_else(|| format!("{text:?} is not \"auto\", a percentage or a size"))
    }
}

impl std::str::FromStr for ByteSize {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        parse_bytes(text)
            .map(Self)
            .ok_or_else(|| format!("{text:?} is not a size such as \"2GiB\" or \"512MB\""))
    }
}

/// Memory as macOS shows it, in the tray, notifications, messages and the window: binary
/// amounts labelled KB, MB, GB (Activity Monitor calls a 16 GiB Mac's RAM "16 GB"), so that a
/// figure here matches the one the user sees there. "1.5 GB", "310 MB".
pub fn memory_size(bytes: u64) -> String {
    scaled(bytes, 1024.0)
}

/// A file's size as Finder shows it: decimal units (1 GB = 10^9 bytes).
pub fn file_size(bytes: u64) -> String {
    scaled(bytes, 1000.0)
}

fn scaled(bytes: u64, base: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= base && unit + 1 < UNITS.len() {
        value /= base;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else if value >= 100.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

impl fmt::Display for MemoryLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Percent(p) => write!(f, "{p}%"),
            Self::Bytes(b) => write!(f, "{b}"),
        }
    }
}

impl Serialize for MemoryLimit {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Bytes(b) => s.serialize_u64(*b),
            other => s.serialize_str(&other.to_string()),
        }
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

/// Accepts a string (parsed with `FromStr`) or a non-negative integer of bytes.
struct StringOrBytes<T>(std::marker::PhantomData<T>);

impl<T> Visitor<'_> for StringOrBytes<T>
where
    T: std::str::FromStr<Err = String> + From<u64>,
{
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a size such as \"2GiB\", or a number of bytes")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        v.parse().map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        Ok(T::from(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        u64::try_from(v)
            .map(T::from)
            .map_err(|_| E::custom(format!("{v} is negative")))
    }
}

impl From<u64> for ByteSize {
    fn from(v: u64) -> Self {
        Self(v)
    }
}

impl From<u64> for MemoryLimit {
    fn from(v: u64) -> Self {
        Self::Bytes(v)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StringOrBytes(std::marker::PhantomData))
    }
}

impl<'de> Deserialize<'de> for MemoryLimit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StringOrBytes(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_in_both_unit_systems() {
        assert_eq!(parse_bytes("1048576"), Some(1 << 20));
        assert_eq!(parse_bytes("2GiB"), Some(2 << 30));
        assert_eq!(parse_bytes("1.5 GiB"), Some(3 << 29));
        assert_eq!(parse_bytes("512MB"), Some(512_000_000));
        assert_eq!(parse_bytes("512 mib"), Some(512 << 20));
        assert_eq!(parse_bytes("-1"), None);
        assert_eq!(parse_bytes("12 parsecs"), None);
        assert_eq!(parse_bytes(""), None);
        assert_eq!(parse_bytes("99999999999TiB"), None);
    }

    #[test]
    fn auto_keeps_a_quarter_between_4_and_8_gib() {
        // 8 GiB: a quarter is 2 GiB, raised to 4 GiB.
        assert_eq!(MemoryLimit::Auto.resolve(8 * GIB), 4 * GIB);
        // 24 GiB: a quarter is 6 GiB.
        assert_eq!(MemoryLimit::Auto.resolve(24 * GIB), 18 * GIB);
        // 64 GiB: a quarter is 16 GiB, capped at 8 GiB.
        assert_eq!(MemoryLimit::Auto.resolve(64 * GIB), 56 * GIB);
        // A 2 GiB container: half.
        assert_eq!(MemoryLimit::Auto.resolve(2 * GIB), GIB);
    }

    #[test]
    fn limits_parse_from_words_percentages_and_sizes() {
        assert_eq!("auto".parse(), Ok(MemoryLimit::Auto));
        assert_eq!("50%".parse(), Ok(MemoryLimit::Percent(50.0)));
        assert_eq!(MemoryLimit::Percent(50.0).resolve(10 * GIB), 5 * GIB);
        assert_eq!("8GiB".parse(), Ok(MemoryLimit::Bytes(8 * GIB)));
        assert!("0%".parse::<MemoryLimit>().is_err());
        assert!("150%".parse::<MemoryLimit>().is_err());
        assert!("lots".parse::<MemoryLimit>().is_err());
    }

    #[test]
    fn toml_accepts_strings_and_integers() {
        #[derive(Deserialize)]
        struct T {
            a: ByteSize,
            b: MemoryLimit,
            c: MemoryLimit,
        }
        let t: T = toml::from_str("a = \"1GiB\"\nb = 1000\nc = \"25%\"\n").expect("parses");
        assert_eq!(t.a, ByteSize(GIB));
        assert_eq!(t.b, MemoryLimit::Bytes(1000));
        assert_eq!(t.c, MemoryLimit::Percent(25.0));
        assert!(toml::from_str::<T>("a = -5\nb = 1\nc = 1\n").is_err());
    }

    #[test]
    fn memory_in_binary_units_files_in_decimal() {
        assert_eq!(memory_size(999), "999 B");
        // A 16 GiB Mac reads "16.0 GB", as Activity Monitor has it; this 24 GiB VM "24.0 GB".
        assert_eq!(memory_size(16 * GIB), "16.0 GB");
        assert_eq!(memory_size(24 * GIB), "24.0 GB");
        assert_eq!(memory_size(310 << 20), "310 MB");
        assert_eq!(memory_size(1536 << 20), "1.5 GB");
        assert_eq!(file_size(98_000_000), "98.0 MB");
        assert_eq!(file_size(1_500_000_000), "1.5 GB");
    }
}
