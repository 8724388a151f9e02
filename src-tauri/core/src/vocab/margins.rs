//! The headroom margin: memory a load must leave available to the rest of the machine. It grows
//! with the pressure tier, since a machine already under pressure has less slack to absorb a
//! load that comes out larger than estimated.

use serde::Serialize;

use super::Tier;

/// The margin at each tier, in bytes. At critical and emergency loads are refused outright; the
/// critical margin still applies to the admission figures the API shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TierMargins {
    /// Normal and elevated.
    pub relaxed: u64,
    pub constrained: u64,
    pub critical: u64,
}

impl TierMargins {
    /// One margin at every tier.
    pub fn flat(bytes: u64) -> Self {
        Self {
            relaxed: bytes,
            constrained: bytes,
            critical: bytes,
        }
    }

    pub fn for_tier(&self, tier: Tier) -> u64 {
        match tier {
            Tier::Normal | Tier::Elevated => self.relaxed,
            Tier::Constrained => self.constrained,
            Tier::Critical | Tier::Emergency => self.critical,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_margin_grows_with_the_tier() {
        let m = TierMargins {
            relaxed: 1,
            constrained: 2,
            critical: 3,
        };
        let at = |t| m.for_tier(t);
        assert_eq!(
            [
                at(Tier::Normal),
                at(Tier::Elevated),
                at(Tier::Constrained),
                at(Tier::Critical),
                at(Tier::Emergency)
            ],
            [1, 1, 2, 3, 3]
        );
    }
}
