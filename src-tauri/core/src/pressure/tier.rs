//! Pressure tiers: from a memory snapshot to one of five levels, with hysteresis so a machine
//! hovering at a threshold does not flap between two tiers (and unload on every flap).

use crate::memory::{MemorySnapshot, OsPressure};
use crate::vocab::{PressureThresholds, Tier};

/// Percentage points a tier's threshold is lowered by before the tier is left again.
pub const HYSTERESIS_POINTS: f64 = 3.0;
/// PSI: this share of the last 10 s with some tasks stalled on memory means constrained at
/// least; with all tasks stalled, critical at least.
pub const STALL_SOME_CONSTRAINED: f64 = 10.0;
pub const STALL_FULL_CRITICAL: f64 = 10.0;
/// Stalls are pressure only while free memory is under this share of the total.
pub const STALL_SHORT_FREE_PERCENT: f64 = 10.0;

/// Whether stalls on memory now mean the machine is short of it. The kernel reclaims for want
/// of memory only when free memory runs down to its watermarks (a cgroup: to its limit), so
/// with plenty free a stall is something else: a read of file pages the kernel dropped earlier,
/// or proactive reclaim (DAMON, a VM's balloon) paging out cold cache. Unloading a model then
/// relieves nothing, and refusing requests would be a false alarm. Where free memory is not
/// read, stalls count.
pub fn stalls_are_pressure(s: &MemorySnapshot) -> bool {
    s.free
        .is_none_or(|free| (free as f64) < s.total as f64 * STALL_SHORT_FREE_PERCENT / 100.0)
}

/// The tier the snapshot alone says, with each used-percent threshold lowered by `lowered`.
pub fn classify(s: &MemorySnapshot, t: &PressureThresholds, lowered: f64) -> Tier {
    let used = s.used_percent();
    let by_use = if used >= t.emergency - lowered {
        Tier::Emergency
    } else if used >= t.critical - lowered {
        Tier::Critical
    } else if used >= t.constrained - lowered {
        Tier::Constrained
    } else if used >= t.elevated - lowered {
        Tier::Elevated
    } else {
        Tier::Normal
    };
    // The operating system's own verdict and measured stalls set a floor.
    let by_os = match s.pressure {
        OsPressure::Critical => Tier::Critical,
        OsPressure::Warn => Tier::Constrained,
        OsPressure::Normal | OsPressure::Unknown => Tier::Normal,
    };
    let by_stall = match s.stall.filter(|_| stalls_are_pressure(s)) {
        Some(stall) if stall.full_avg10 >= STALL_FULL_CRITICAL => Tier::Critical,
        Some(stall) if stall.some_avg10 >= STALL_SOME_CONSTRAINED => Tier::Constrained,
        _ => Tier::Normal,
    };
    by_use.max(by_os).max(by_stall)
}

/// Follows the tier: up at once, down only when the snapshot is clear of the current tier's
/// threshold by [`HYSTERESIS_POINTS`].
#[derive(Debug, Clone, Copy)]
pub struct TierTracker {
    current: Tier,
}

impl Default for TierTracker {
    fn default() -> Self {
        Self {
            current: Tier::Normal,
        }
    }
}

impl TierTracker {
    pub fn current(&self) -> Tier {
        self.current
    }

    /// Takes a snapshot; returns the new tier when it changed. `floor` is a tier the caller
    /// knows holds at least (the kernel's stall trigger just fired).
    pub fn update(
        &mut self,
        s: &MemorySnapshot,
        t: &PressureThresholds,
        floor: Tier,
    ) -> Option<Tier> {
        let raw = classify(s, t, 0.0).max(floor);
        let next = if raw > self.current {
            raw
        } else {
            // Leaving a tier needs the lowered thresholds to agree.
            classify(s, t, HYSTERESIS_POINTS).min(self.current)
        };
        (next != self.current).then(|| {
            self.current = next;
            next
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::Stall;

    fn at(percent: f64) -> MemorySnapshot {
        MemorySnapshot::with_used_percent(1_000_000, percent)
    }

    #[test]
    fn thresholds_map_used_percent_to_tiers() {
        let t = PressureThresholds::default();
        for (percent, tier) in [
            (50.0, Tier::Normal),
            (75.0, Tier::Elevated),
            (86.0, Tier::Constrained),
            (90.0, Tier::Critical),
            (99.0, Tier::Emergency),
        ] {
            assert_eq!(classify(&at(percent), &t, 0.0), tier, "{percent}%");
        }
    }

    #[test]
    fn a_fired_trigger_is_critical_for_that_look() {
        let t = PressureThresholds::default();
        let mut tracker = TierTracker::default();
        assert_eq!(
            tracker.update(&at(50.0), &t, Tier::Critical),
            Some(Tier::Critical)
        );
        // The next poll without the signal falls back.
        assert_eq!(
            tracker.update(&at(50.0), &t, Tier::Normal),
            Some(Tier::Normal)
        );
    }

    #[test]
    fn the_os_level_and_stalls_raise_the_tier() {
        let t = PressureThresholds::default();
        let mut s = at(40.0);
        s.pressure = OsPressure::Warn;
        assert_eq!(classify(&s, &t, 0.0), Tier::Constrained);
        s.pressure = OsPressure::Critical;
        assert_eq!(classify(&s, &t, 0.0), Tier::Critical);
        let mut s = at(40.0);
        s.stall = Some(Stall {
            some_avg10: 12.0,
            full_avg10: 0.0,
        });
        assert_eq!(classify(&s, &t, 0.0), Tier::Constrained);
        s.stall = Some(Stall {
            some_avg10: 30.0,
            full_avg10: 15.0,
        });
        assert_eq!(classify(&s, &t, 0.0), Tier::Critical);
        // Free memory short (5% of the total): stalls count; plenty free (50%): they do not,
        // and use alone decides.
        s.free = Some(50_000);
        assert_eq!(classify(&s, &t, 0.0), Tier::Critical);
        s.free = Some(500_000);
        assert_eq!(classify(&s, &t, 0.0), Tier::Normal);
        // The OS level never lowers what use says.
        let mut s = at(96.0);
        s.pressure = OsPressure::Normal;
        assert_eq!(classify(&s, &t, 0.0), Tier::Emergency);
    }

    #[test]
    fn a_tier_rises_at_once_and_falls_only_past_the_band() {
        let t = PressureThresholds::default();
        let mut tracker = TierTracker::default();
        // A scripted replay: (used %, expected change).
        let script = [
            (70.0, None),
            (91.0, Some(Tier::Critical)),
            (89.0, None), // below 90 but within 3 points: stays critical
            (88.0, None),
            (86.5, Some(Tier::Constrained)), // clear of 90 − 3 = 87
            (90.0, Some(Tier::Critical)),
            (60.0, Some(Tier::Normal)),
            (74.0, None),
            (75.0, Some(Tier::Elevated)),
            (73.0, None),
            (71.9, Some(Tier::Normal)),
        ];
        for (percent, expected) in script {
            assert_eq!(
                tracker.update(&at(percent), &t, Tier::Normal),
                expected,
                "at {percent}%"
            );
        }
    }
}
