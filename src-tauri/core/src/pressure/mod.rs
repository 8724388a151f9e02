//! The pressure monitor: watches the operating system's own memory-pressure signal and acts
//! through the pool before the machine swaps.
//!
//! Event-driven where the platform allows (Linux PSI triggers and cgroup v1 usage thresholds
//! awaited with tokio's `AsyncFd`; the macOS dispatch memory-pressure source), backed by a poll
//! of the probe that also catches a missed or unsupported event: every second while memory is
//! at ease, ten times a second from constrained up or while memory grows fast. Each look
//! classifies a snapshot into a [`Tier`] (with hysteresis), measures how fast other apps' memory
//! grows and how long what is available lasts at that pace ([`growth`]), and tells the pool,
//! which owns every unload.

mod growth;
mod hooks;
mod signal;
mod tier;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{mpsc, watch};

pub use growth::Course;
pub use hooks::UnloadHooks;
pub use signal::Wake;
pub use tier::{classify, TierTracker};

use crate::memory::{MemoryProbe, MemorySnapshot};
use crate::metrics::Metrics;
use crate::vocab::Publish;
use crate::vocab::{PressureThresholds, Tier};
use growth::Growth;
use signal::Signals;
use tier::stalls_are_pressure;

/// How often the probe is read when no event comes and memory is at ease.
pub const POLL: Duration = Duration::from_secs(1);
/// How often from constrained up, or while memory grows fast: a look costs ~0.1 ms. Not at
/// elevated, where a Mac may sit all day: ten looks a second would be 0.13 % of a core.
pub const FAST_POLL: Duration = Duration::from_millis(100);
/// When what is available lasts less than this at the pace memory grows, the pool unloads
/// busy models too, ending their requests: an unload that waits for the tiers would come after
/// the kernel's OOM killer. It is the time an unload of a busy model takes (its generation
/// ended at the next token, its memory freed: 60–150 ms measured here with a small model,
/// more on a large one mid-prompt), with room to spare for the looks that measure the pace.
pub const URGENT_WITHIN: Duration = Duration::from_millis(1500);

/// Looks the monitor reports may wait for the pool by; the pool reads them ahead of requests.
pub const REPORT_QUEUE: usize = 16;

/// What the monitor needs: where to look, what to compare with, whom to tell.
pub struct Monitor {
    pub probe: Arc<dyn MemoryProbe>,
    /// May change live.
    pub thresholds: watch::Receiver<PressureThresholds>,
    pub hooks: UnloadHooks,
    /// Every look the pool must act on (see [`Looks::look`]).
    pub reports: mpsc::Sender<PressureReport>,
    /// Tier changes, for everyone else.
    pub publish: Publish<TierChanged>,
    /// Counts the wakes by what woke the monitor.
    pub metrics: Metrics,
}

/// Starts the monitor; it runs until the pool stops reading its reports. The kernel's signal is
/// armed before this returns, so it is listening before any model loads.
pub fn start(monitor: Monitor) {
    let signals = Signals::arm();
    tokio::spawn(run(monitor, signals));
}

async fn run(monitor: Monitor, mut signals: Signals) {
    let Monitor {
        probe,
        mut thresholds,
        hooks,
        reports,
        publish,
        metrics,
    } = monitor;
    let mut looks = Looks::default();
    let mut next_poll = tokio::time::Instant::now() + POLL;
    loop {
        let wake = tokio::select! {
            () = tokio::time::sleep_until(next_poll) => Wake::Poll,
            wake = signals.next() => wake,
            changed = thresholds.changed() => {
                if changed.is_err() { return; }
                Wake::Poll
            }
        };
        metrics.pressure_wake(wake.as_str());
        let seen = Instant::now();
        let report = match probe.snapshot() {
            Ok(snapshot) => looks.look(wake, &snapshot, &thresholds.borrow(), seen),
            Err(_) => None,
        };
        // From this look's verdict, reported or not: fast while memory is tight or growing.
        next_poll = tokio::time::Instant::now() + looks.poll_interval();
        let Some(report) = report else {
            continue;
        };
        if report.tier != report.previous {
            publish(TierChanged::from(&report));
        }
        if reports.send(report).await.is_err() {
            return;
        }
        // Hooks run once on the way up into critical or emergency, once the pool has been told
        // (its unloads finish on their own time).
        if report.tier >= Tier::Critical && report.tier > report.previous {
            hooks.run(report.tier).await;
        }
    }
}

/// The monitor's judgement, apart from its waiting: one snapshot in, at most one report out.
#[derive(Default)]
struct Looks {
    tracker: TierTracker,
    growth: Growth,
    /// The course the last look saw.
    course: Option<Course>,
    /// Whether the last look found memory running out sooner than an unload takes.
    urgent: bool,
}

impl Looks {
    /// How long until the next look if nothing wakes the monitor first.
    fn poll_interval(&self) -> Duration {
        let growing = self.course.is_some_and(|c| c.rate.is_some());
        if self.tracker.current() >= Tier::Constrained || growing {
            FAST_POLL
        } else {
            POLL
        }
    }

    /// A report when the tier changed, on every look while it is constrained or worse (the
    /// pool unloads step by step, one look at a time, until the tier drops), and on every look
    /// while memory runs out sooner than [`URGENT_WITHIN`].
    fn look(
        &mut self,
        wake: Wake,
        snapshot: &MemorySnapshot,
        limits: &PressureThresholds,
        seen: Instant,
    ) -> Option<PressureReport> {
        let previous = self.tracker.current();
        // The kernel's trigger means tasks are stalling on memory right now: act at least at
        // the tier the trigger stands for, for this look, if memory is short.
        let floor = match wake {
            Wake::FullStall => Tier::Critical,
            Wake::Stall => Tier::Constrained,
            Wake::OsSignal | Wake::Poll | Wake::Threshold => Tier::Normal,
        };
        let floor = if floor > Tier::Normal && !stalls_are_pressure(snapshot) {
            tracing::info!(
                ?wake, free = ?snapshot.free, total = snapshot.total,
                "memory stall with plenty of memory free: not pressure"
            );
            Tier::Normal
        } else {
            floor
        };
        let changed = self.tracker.update(snapshot, limits, floor);
        let tier = self.tracker.current();
        // Other apps' memory: used memory but for file cache (a burst of reads is not an
        // allocation, and the kernel can still reclaim it) and this process's own (a load or a
        // batch is not a burst to unload models for; its file pages are cache, out already).
        let own = snapshot.process.map_or(0, |p| p.anon);
        let others = snapshot
            .used
            .saturating_sub(snapshot.file_in_use)
            .saturating_sub(own);
        let course = self.growth.record(seen, others, snapshot.available);
        self.course = Some(course);
        let was_urgent = self.urgent;
        self.urgent = course
            .seconds_left
            .is_some_and(|left| left < URGENT_WITHIN.as_secs_f64());
        if changed.is_none() && tier < Tier::Constrained && !self.urgent {
            return None;
        }
        if changed.is_some() || self.urgent != was_urgent {
            tracing::info!(
                ?previous, ?tier, wake = wake.as_str(),
                used_percent = snapshot.used_percent(),
                available = snapshot.available,
                total = snapshot.total,
                free = ?snapshot.free,
                growth_bytes_per_s = ?course.rate.map(|r| r.round()),
                seconds_left = ?course.seconds_left,
                urgent = self.urgent,
                cgroup_limited = snapshot.cgroup_limited,
                stall = ?snapshot.stall,
                "memory pressure tier changed"
            );
        }
        Some(PressureReport {
            tier,
            previous,
            wake,
            seen,
            used_percent: snapshot.used_percent(),
            available: snapshot.available,
            stall_some: snapshot.stall.map(|s| s.some_avg10),
            growth: course.rate,
            seconds_left: course.seconds_left,
            urgent: self.urgent,
        })
    }
}

/// The event of a tier change, for the UI, the timeline and notifications.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename = "pressure")]
pub struct TierChanged {
    pub tier: Tier,
    pub previous: Tier,
    /// "stall" or "full_stall" (Linux PSI triggers), "os_signal" (the macOS dispatch source),
    /// or "poll".
    pub wake: Wake,
    /// To a tenth of a percent.
    pub used_percent: f64,
    pub available: u64,
    pub stall_some_avg10: Option<f64>,
    /// How fast other apps' memory grew, in bytes per second, when it grew fast.
    pub growth_rate: Option<f64>,
    /// How long what is available lasts at that pace, in seconds.
    pub seconds_left: Option<f64>,
}

impl From<&PressureReport> for TierChanged {
    fn from(report: &PressureReport) -> Self {
        Self {
            tier: report.tier,
            previous: report.previous,
            wake: report.wake,
            used_percent: report.used_percent_shown(),
            available: report.available,
            stall_some_avg10: report.stall_some,
            growth_rate: report.growth_shown(),
            seconds_left: report.seconds_left_shown(),
        }
    }
}

/// What the monitor tells the pool.
#[derive(Debug, Clone, Copy)]
pub struct PressureReport {
    pub tier: Tier,
    pub previous: Tier,
    pub wake: Wake,
    /// When the monitor woke, to measure the reaction.
    pub seen: Instant,
    pub used_percent: f64,
    pub available: u64,
    pub stall_some: Option<f64>,
    /// Other apps' memory growth, bytes per second, when fast (see [`Course`]).
    pub growth: Option<f64>,
    pub seconds_left: Option<f64>,
    /// Memory runs out sooner than [`URGENT_WITHIN`]: unload busy models too.
    pub urgent: bool,
}

/// The figures as events show them: a percent to a tenth, bytes per second whole, seconds to
/// the millisecond.
impl PressureReport {
    pub fn used_percent_shown(&self) -> f64 {
        (self.used_percent * 10.0).round() / 10.0
    }

    pub fn growth_shown(&self) -> Option<f64> {
        self.growth.map(f64::round)
    }

    pub fn seconds_left_shown(&self) -> Option<f64> {
        self.seconds_left.map(|s| (s * 1000.0).round() / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{OsPressure, Stall};

    /// A snapshot as a probe would give it: `percent` of a 16 GiB machine used.
    fn snapshot(percent: f64, pressure: OsPressure, stall: Option<(f64, f64)>) -> MemorySnapshot {
        MemorySnapshot {
            pressure,
            stall: stall.map(|(some_avg10, full_avg10)| Stall {
                some_avg10,
                full_avg10,
            }),
            ..MemorySnapshot::with_used_percent(16 << 30, percent)
        }
    }

    #[test]
    fn a_scripted_probe_drives_the_monitor() {
        use OsPressure::{Critical, Normal, Warn};
        let limits = PressureThresholds::default();
        let mut looks = Looks::default();
        // (what woke it, the probe's snapshot, the tier reported — None: nothing sent).
        let script = [
            (Wake::Poll, snapshot(40.0, Normal, None), None),
            (
                Wake::Poll,
                snapshot(76.0, Normal, None),
                Some(Tier::Elevated),
            ),
            (Wake::Poll, snapshot(77.0, Normal, None), None),
            // The kernel's trigger fires before the figures show anything.
            (
                Wake::Stall,
                snapshot(77.0, Normal, Some((2.0, 0.0))),
                Some(Tier::Constrained),
            ),
            (
                Wake::FullStall,
                snapshot(78.0, Normal, Some((20.0, 4.0))),
                Some(Tier::Critical),
            ),
            // The stall's ten-second average now says critical by itself: it holds, and every
            // look while it holds is reported so the pool unloads one more model.
            (
                Wake::Poll,
                snapshot(78.0, Normal, Some((40.0, 12.0))),
                Some(Tier::Critical),
            ),
            (
                Wake::Poll,
                snapshot(70.0, Normal, Some((12.0, 2.0))),
                Some(Tier::Constrained),
            ),
            (
                Wake::Poll,
                snapshot(60.0, Normal, Some((1.0, 0.0))),
                Some(Tier::Normal),
            ),
            (Wake::Poll, snapshot(60.0, Normal, None), None),
            // macOS: the dispatch source wakes it and the snapshot carries the kernel's level.
            (
                Wake::OsSignal,
                snapshot(60.0, Warn, None),
                Some(Tier::Constrained),
            ),
            (
                Wake::OsSignal,
                snapshot(60.0, Critical, None),
                Some(Tier::Critical),
            ),
            (
                Wake::Poll,
                snapshot(96.0, Critical, None),
                Some(Tier::Emergency),
            ),
            (
                Wake::OsSignal,
                snapshot(50.0, Normal, None),
                Some(Tier::Normal),
            ),
        ];
        let start = Instant::now();
        for (step, (wake, snap, expected)) in script.into_iter().enumerate() {
            let report = looks.look(wake, &snap, &limits, start);
            assert_eq!(report.map(|r| r.tier), expected, "step {step}: {wake:?}");
            if let Some(r) = report {
                assert_eq!(r.wake, wake);
                assert!((r.used_percent - snap.used_percent()).abs() < 1e-9);
            }
        }
    }

    #[test]
    fn stalls_with_plenty_of_memory_free_are_not_pressure() {
        let limits = PressureThresholds::default();
        let mut looks = Looks::default();
        let start = Instant::now();
        // 30% of a 16 GiB machine used, 60% free outright: the trigger fires, the averages
        // would say critical, and nothing is reported.
        let plenty = MemorySnapshot {
            free: Some((16 << 30) / 10 * 6),
            ..snapshot(30.0, OsPressure::Normal, Some((40.0, 30.0)))
        };
        for wake in [Wake::Stall, Wake::FullStall, Wake::Poll] {
            assert_eq!(
                looks.look(wake, &plenty, &limits, start).map(|r| r.tier),
                None
            );
        }
        // The same stalls with free memory run down to 5%: the kernel is reclaiming for want
        // of memory, and they count.
        let short = MemorySnapshot {
            free: Some((16 << 30) / 20),
            ..plenty
        };
        let report = looks.look(Wake::FullStall, &short, &limits, start);
        assert_eq!(report.map(|r| r.tier), Some(Tier::Critical));
    }

    #[test]
    fn memory_running_out_faster_than_an_unload_is_urgent_whatever_the_tier() {
        let limits = PressureThresholds::default();
        let mut looks = Looks::default();
        let start = Instant::now();
        assert_eq!(looks.poll_interval(), POLL);
        // 16 GiB, 40 % used, then another app takes 2 GB/s: 100 ms later 41.2 % is used, still
        // normal, and what is left lasts ~4.9 s: not urgent, but the monitor now looks ten
        // times a second.
        assert!(looks
            .look(
                Wake::Poll,
                &snapshot(40.0, OsPressure::Normal, None),
                &limits,
                start
            )
            .is_none());
        let calm = looks.look(
            Wake::Threshold,
            &snapshot(41.2, OsPressure::Normal, None),
            &limits,
            start + Duration::from_millis(100),
        );
        assert!(calm.is_none(), "{calm:?}");
        assert_eq!(looks.poll_interval(), FAST_POLL);
        // Later, at 88 % (constrained) and then 89.3 % 100 ms on: 2.2 GB/s with 1.8 GB left,
        // under a second: urgent.
        let report = looks
            .look(
                Wake::Threshold,
                &snapshot(88.0, OsPressure::Normal, None),
                &limits,
                start + Duration::from_millis(4000),
            )
            .expect("reported");
        assert!(!report.urgent, "the looks before it are out of the window");
        let report = looks
            .look(
                Wake::Threshold,
                &snapshot(89.3, OsPressure::Normal, None),
                &limits,
                start + Duration::from_millis(4100),
            )
            .expect("reported");
        assert!(report.urgent, "{report:?}");
        assert!(report.seconds_left.is_some_and(|s| s < 1.5), "{report:?}");
        let rate = report.growth.expect("a rate");
        assert!((rate - 2.23e9).abs() < 0.05e9, "{rate}");
        // Memory stops growing: the urgency passes with the next look that sees it.
        let report = looks
            .look(
                Wake::Poll,
                &snapshot(89.3, OsPressure::Normal, None),
                &limits,
                start + Duration::from_millis(4300),
            )
            .expect("constrained is reported");
        assert!(!report.urgent);
    }

    #[test]
    fn this_process_growing_is_not_a_burst() {
        let limits = PressureThresholds::default();
        let mut looks = Looks::default();
        let start = Instant::now();
        let with_own = |percent: f64, own: u64| MemorySnapshot {
            process: Some(crate::memory::ProcessMemory {
                resident: own + (1 << 30),
                anon: own,
                file: 1 << 30,
            }),
            ..snapshot(percent, OsPressure::Normal, None)
        };
        // A load of 4 GiB of our own in 200 ms, from 70 % to 95 % of 16 GiB.
        looks.look(Wake::Poll, &with_own(70.0, 0), &limits, start);
        let report = looks
            .look(
                Wake::Poll,
                &with_own(95.0, 4 << 30),
                &limits,
                start + Duration::from_millis(200),
            )
            .expect("the tier changed");
        assert!(!report.urgent, "{report:?}");
        assert_eq!(report.growth, None);
    }
}
