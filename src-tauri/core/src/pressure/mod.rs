//! The pressure monitor: watches the operating system's own memory-pressure signal and acts
//! through the pool before the machine swaps.
//!
//! Event-driven where the platform allows (Linux PSI triggers awaited with tokio's `AsyncFd`;
//! the macOS dispatch memory-pressure source), backed by a poll of the probe every second that also catches a missed or
//! unsupported event. Each look classifies a snapshot into a [`Tier`] (with hysteresis) and
//! tells the pool, which owns every unload.

mod hooks;
mod signal;
mod tier;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{mpsc, watch};

pub use hooks::UnloadHooks;
pub use signal::Wake;
pub use tier::{classify, TierTracker};

use crate::memory::{MemoryProbe, MemorySnapshot};
use crate::vocab::Publish;
use crate::vocab::{PressureThresholds, Tier};
use signal::Signals;
use tier::stalls_are_pressure;

/// How often the probe is read when no event comes.
pub const POLL: Duration = Duration::from_secs(1);

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
    } = monitor;
    let mut looks = Looks::default();
    let mut ticker = tokio::time::interval(POLL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let wake = tokio::select! {
            _ = ticker.tick() => Wake::Poll,
            wake = signals.next() => wake,
            changed = thresholds.changed() => {
                if changed.is_err() { return; }
                Wake::Poll
            }
        };
        let seen = Instant::now();
        let Ok(snapshot) = probe.snapshot() else {
            continue;
        };
        let limits = *thresholds.borrow();
        let Some(report) = looks.look(wake, &snapshot, &limits, seen) else {
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
}

impl Looks {
    /// A report when the tier changed, and on every look while it is constrained or worse
    /// (the pool unloads step by step, one look at a time, until the tier drops).
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
            Wake::OsSignal | Wake::Poll => Tier::Normal,
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
        if changed.is_none() && tier < Tier::Constrained {
            return None;
        }
        if changed.is_some() {
            tracing::info!(
                ?previous, ?tier, ?wake,
                used_percent = snapshot.used_percent(),
                available = snapshot.available,
                total = snapshot.total,
                free = ?snapshot.free,
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
}

impl From<&PressureReport> for TierChanged {
    fn from(report: &PressureReport) -> Self {
        Self {
            tier: report.tier,
            previous: report.previous,
            wake: report.wake,
            used_percent: (report.used_percent * 10.0).round() / 10.0,
            available: report.available,
            stall_some_avg10: report.stall_some,
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
}
