//! How fast used memory grows, and how long what is available lasts at that pace.
//!
//! Tiers say where memory stands; they cannot say how soon it runs out. A browser restoring
//! tabs or a container starting can take a gigabyte a second, which crosses every tier between
//! two one-second looks and leaves the kernel's OOM killer to decide. The monitor records used
//! memory at every look (polls and the kernel's events alike) and works out the rate from the
//! looks of the last [`WINDOW`]; what is available divided by that rate is the time left, and
//! when that is shorter than an unload takes, waiting for the tiers is waiting too long.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Looks older than this say nothing about the current burst. Two, so that two polls a second
/// apart (memory at ease, no kernel events) still give a rate.
pub const WINDOW: Duration = Duration::from_secs(2);
/// A rate needs looks at least this far apart: two looks 5 ms apart that straddle one large
/// allocation would read as a burst of many GB/s.
pub const MIN_SPAN: Duration = Duration::from_millis(100);
/// Growth slower than this is the machine's ordinary drift, not a burst.
pub const MIN_RATE: f64 = 20e6;

/// The recent looks at used memory.
#[derive(Debug, Default)]
pub struct Growth {
    looks: VecDeque<(Instant, u64)>,
}

/// What the recent looks say about memory's course.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Course {
    /// Bytes per second used memory grew by over the window, when it grew faster than
    /// [`MIN_RATE`] over at least [`MIN_SPAN`].
    pub rate: Option<f64>,
    /// Seconds until available memory runs out at that rate.
    pub seconds_left: Option<f64>,
}

impl Growth {
    /// Records a look at `used` bytes, `available` left, and says where that leads.
    pub fn record(&mut self, at: Instant, used: u64, available: u64) -> Course {
        while self
            .looks
            .front()
            .is_some_and(|(then, _)| at.saturating_duration_since(*then) > WINDOW)
        {
            self.looks.pop_front();
        }
        self.looks.push_back((at, used));
        let rate = self.rate(at, used);
        Course {
            rate,
            seconds_left: rate.map(|r| available as f64 / r),
        }
    }

    /// The steepest climb from any look in the window at least [`MIN_SPAN`] back to now: a
    /// burst that began half a second ago is not averaged away by the calm before it.
    fn rate(&self, at: Instant, used: u64) -> Option<f64> {
        self.looks
            .iter()
            .filter_map(|(then, was)| {
                let span = at.saturating_duration_since(*then);
                (span >= MIN_SPAN).then(|| (used as f64 - *was as f64) / span.as_secs_f64())
            })
            .fold(None, |best: Option<f64>, r| {
                Some(best.map_or(r, |b| b.max(r)))
            })
            .filter(|r| *r >= MIN_RATE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1_000_000;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_steady_climb_gives_its_rate_and_the_time_left() {
        let start = Instant::now();
        let mut growth = Growth::default();
        // 400 MB/s: 40 MB every 100 ms, from 400 MB used with 800 MB available.
        let mut course = None;
        for step in 0..5u64 {
            let used = 400 * MB + step * 40 * MB;
            course = Some(growth.record(start + ms(step * 100), used, 1200 * MB - used));
        }
        let course = course.expect("looked");
        let rate = course.rate.expect("a rate");
        assert!((rate - 400e6).abs() < 1e3, "{rate}");
        // 560 MB used, 640 MB left: 1.6 s.
        let left = course.seconds_left.expect("time left");
        assert!((left - 1.6).abs() < 1e-6, "{left}");
    }

    #[test]
    fn no_rate_from_looks_too_close_together_or_too_old() {
        let start = Instant::now();
        let mut growth = Growth::default();
        growth.record(start, 100 * MB, 900 * MB);
        // 50 MB in 5 ms is one allocation, not a rate.
        let close = growth.record(start + ms(5), 150 * MB, 850 * MB);
        assert_eq!(close.rate, None);
        // More than two seconds later the first looks are out of the window.
        let late = growth.record(start + ms(2100), 400 * MB, 600 * MB);
        assert_eq!(late.rate, None);
    }

    #[test]
    fn a_burst_after_a_calm_is_not_averaged_away() {
        let start = Instant::now();
        let mut growth = Growth::default();
        for step in 0..8u64 {
            growth.record(start + ms(step * 100), 300 * MB, 900 * MB);
        }
        // Then 2 GB/s for 100 ms.
        let course = growth.record(start + ms(800), 500 * MB, 700 * MB);
        let rate = course.rate.expect("a rate");
        assert!((rate - 2e9).abs() < 1e3, "{rate}");
    }

    #[test]
    fn shrinking_or_drifting_memory_has_no_rate() {
        let start = Instant::now();
        let mut growth = Growth::default();
        growth.record(start, 500 * MB, 500 * MB);
        assert_eq!(
            growth.record(start + ms(200), 400 * MB, 600 * MB).rate,
            None
        );
        // 1 MB in 200 ms: 5 MB/s, drift.
        assert_eq!(
            growth.record(start + ms(400), 401 * MB, 599 * MB).rate,
            None
        );
    }
}
