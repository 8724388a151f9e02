//! Pressure tiers: how short of memory the machine is, in five steps. The monitor decides the
//! tier; the pool, the margins, notifications and the UI act on it.

use std::fmt;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    Normal,
    Elevated,
    Constrained,
    Critical,
    Emergency,
}

impl Tier {
    /// The tier's name as users see it and the API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::Elevated => "elevated",
            Self::Constrained => "constrained",
            Self::Critical => "critical",
            Self::Emergency => "emergency",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tier_shows_as_the_api_writes_it() {
        for tier in [
            Tier::Normal,
            Tier::Elevated,
            Tier::Constrained,
            Tier::Critical,
            Tier::Emergency,
        ] {
            let json = serde_json::to_value(tier).expect("serializes");
            assert_eq!(json, tier.to_string());
        }
    }
}
