//! `headroom_margin`: what a load must leave available to the rest of the machine, per
//! pressure tier. Written as a table (`relaxed`, `constrained`, `critical`) or, as before tiers
//! existed, as one size for all three.

use std::fmt;

use serde::de::{self, value::MapAccessDeserializer, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::vocab::{ByteSize, TierMargins};

const GIB: u64 = 1 << 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeadroomMargins {
    /// Normal and elevated pressure.
    pub relaxed: ByteSize,
    pub constrained: ByteSize,
    pub critical: ByteSize,
}

impl Default for HeadroomMargins {
    fn default() -> Self {
        Self {
            relaxed: ByteSize(3 * GIB / 2),
            constrained: ByteSize(2 * GIB),
            critical: ByteSize(5 * GIB / 2),
        }
    }
}

/// The defaults are sized for a 16 GiB machine; on a smaller one (or a small container) each
/// default shrinks in proportion, so a 4 GiB box is not refused every load. Values the user
/// chose stand as written.
const DEFAULTS_SIZED_FOR: u64 = 16 * GIB;

impl HeadroomMargins {
    pub fn flat(size: ByteSize) -> Self {
        Self {
            relaxed: size,
            constrained: size,
            critical: size,
        }
    }

    /// Each tier's name in the config, its value and its default.
    pub fn tiers(&self) -> [(&'static str, ByteSize, ByteSize); 3] {
        let d = Self::default();
        [
            ("relaxed", self.relaxed, d.relaxed),
            ("constrained", self.constrained, d.constrained),
            ("critical", self.critical, d.critical),
        ]
    }

    /// The margins in force on a machine (or cgroup) with `total_ram` bytes.
    pub fn for_machine(&self, total_ram: u64) -> TierMargins {
        let scale = |value: ByteSize, default: ByteSize| {
            if value == default {
                let scaled =
                    u128::from(default.0) * u128::from(total_ram) / u128::from(DEFAULTS_SIZED_FOR);
                value.0.min(u64::try_from(scaled).unwrap_or(u64::MAX))
            } else {
                value.0
            }
        };
        let [relaxed, constrained, critical] = self.tiers().map(|(_, v, d)| scale(v, d));
        // A default that shrank must not fall below a chosen value of the tier beneath it.
        let constrained = constrained.max(relaxed);
        TierMargins {
            relaxed,
            constrained,
            critical: critical.max(constrained),
        }
    }
}

/// `#[serde(deserialize_with)]` for the setting: one size for every tier, or the table.
pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<HeadroomMargins, D::Error> {
    d.deserialize_any(MarginsVisitor)
}

struct MarginsVisitor;

impl<'de> Visitor<'de> for MarginsVisitor {
    type Value = HeadroomMargins;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "a size such as \"2GiB\" for every tier, or a table of relaxed, constrained and critical sizes",
        )
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        v.parse::<ByteSize>()
            .map(HeadroomMargins::flat)
            .map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(HeadroomMargins::flat(ByteSize(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        u64::try_from(v)
            .map(|v| HeadroomMargins::flat(ByteSize(v)))
            .map_err(|_| E::custom(format!("{v} is negative")))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        HeadroomMargins::deserialize(MapAccessDeserializer::new(map))
    }
}

/// A margin from an environment variable named in GB (`HEADROOM_HEADROOM_GB_RELAXED=1.5`): a
/// plain number is GiB; a size with a unit is taken as written.
pub(super) fn parse_gb(value: &str) -> Option<ByteSize> {
    let value = value.trim();
    match value.parse::<f64>() {
        Ok(gb) if gb.is_finite() && gb >= 0.0 => Some(ByteSize((gb * GIB as f64) as u64)),
        Ok(_) => None,
        Err(_) => value.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct File {
        #[serde(deserialize_with = "deserialize")]
        headroom_margin: HeadroomMargins,
    }

    fn parse(text: &str) -> Result<HeadroomMargins, String> {
        toml::from_str::<File>(text)
            .map(|f| f.headroom_margin)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn one_size_for_every_tier_or_a_table() {
        assert_eq!(
            parse("headroom_margin = \"3GiB\"").expect("size"),
            HeadroomMargins::flat(ByteSize(3 * GIB))
        );
        let m = parse("[headroom_margin]\ncritical = \"4GiB\"").expect("table");
        assert_eq!(m.critical, ByteSize(4 * GIB));
        assert_eq!(m.relaxed, HeadroomMargins::default().relaxed);
        let e = parse("[headroom_margin]\nsevere = \"4GiB\"").unwrap_err();
        assert!(e.contains("severe"), "{e}");
        let e = parse("headroom_margin = -5").unwrap_err();
        assert!(e.contains("negative"), "{e}");
    }

    #[test]
    fn defaults_shrink_on_small_machines_and_chosen_values_stand() {
        let d = HeadroomMargins::default().for_machine(4 * GIB);
        assert_eq!(
            (d.relaxed, d.constrained, d.critical),
            (3 * GIB / 8, GIB / 2, 5 * GIB / 8)
        );
        let big = HeadroomMargins::default().for_machine(64 * GIB);
        assert_eq!(big.critical, 5 * GIB / 2);
        let chosen = HeadroomMargins::flat(ByteSize(3 * GIB)).for_machine(4 * GIB);
        assert_eq!(chosen.relaxed, 3 * GIB);
        // One tier chosen, the others defaults that shrink: they still grow with the tier.
        let mixed = HeadroomMargins {
            relaxed: ByteSize(GIB),
            ..HeadroomMargins::default()
        }
        .for_machine(4 * GIB);
        assert_eq!(
            (mixed.relaxed, mixed.constrained, mixed.critical),
            (GIB, GIB, GIB)
        );
        let legacy = HeadroomMargins::flat(ByteSize(2 * GIB)).for_machine(8 * GIB);
        assert!(legacy.relaxed <= legacy.constrained && legacy.constrained <= legacy.critical);
    }

    #[test]
    fn gigabytes_from_the_environment() {
        assert_eq!(parse_gb("1.5"), Some(ByteSize(3 * GIB / 2)));
        assert_eq!(parse_gb("512MiB"), Some(ByteSize(512 << 20)));
        assert_eq!(parse_gb("-1"), None);
        assert_eq!(parse_gb("lots"), None);
    }
}
