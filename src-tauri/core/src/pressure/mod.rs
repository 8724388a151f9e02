//! The pressure monitor: watches the operating system's own memory-pressure signal and acts
//! through the pool before the machine swaps.
//!
//! Event-driven where the platform allows (a Linux PSI trigger, awaited with tokio's
//! `AsyncFd`), backed by a poll of the probe every second that also catches a missed or
//! unsupported event. Each look classifies a snapshot into a [`Tier`] (with hysteresis) and
//! tells the pool, which owns every unload.

#[cfg(target_os = "linux")]
mod psi;
mod tier;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

pub use tier::{classify, Tier, TierTracker};

use crate::config::PressureThresholds;
use crate::memory::MemoryProbe;
use crate::pool::Pool;

/// How often the probe is read when no event comes.
pub const POLL: Duration = Duration::from_secs(1);

/// What woke the monitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// The kernel's trigger fired: some tasks stalled on memory for 150 ms of the last 2 s.
    /// Constrained at least.
    Stall,
    /// Every task stalled on memory for 100 ms of the last 2 s. Critical at least.
    FullStall,
    Poll,
}

/// Starts the monitor; it runs until the pool shuts down. `thresholds` may change live.
pub fn start(
    probe: Arc<dyn MemoryProbe>,
    pool: Pool,
    thresholds: watch::Receiver<PressureThresholds>,
) {
    tokio::spawn(run(probe, pool, thresholds));
}

async fn run(
    probe: Arc<dyn MemoryProbe>,
    pool: Pool,
    mut thresholds: watch::Receiver<PressureThresholds>,
) {
    let some = arm_trigger(Wake::Stall);
    let full = arm_trigger(Wake::FullStall);
    let mut tracker = TierTracker::default();
    let mut ticker = tokio::time::interval(POLL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let wake = tokio::select! {
            _ = ticker.tick() => Wake::Poll,
            fired = signal(some.as_ref()) => woke(fired, Wake::Stall),
            fired = signal(full.as_ref()) => woke(fired, Wake::FullStall),
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
        let previous = tracker.current();
        // The kernel's trigger means tasks are stalling on memory right now: act as critical
        // (unload the least recently used idle model) for this look.
        let floor = match wake {
            Wake::FullStall => Tier::Critical,
            Wake::Stall => Tier::Constrained,
            Wake::Poll => Tier::Normal,
        };
        let changed = tracker.update(&snapshot, &limits, floor);
        let tier = tracker.current();
        if changed.is_some() || tier >= Tier::Constrained {
            if changed.is_some() {
                tracing::info!(
                    ?previous, ?tier, ?wake,
                    used_percent = snapshot.used_percent(),
                    stall = ?snapshot.stall,
                    "memory pressure tier changed"
                );
            }
            let report = PressureReport {
                tier,
                previous,
                wake,
                seen,
                used_percent: snapshot.used_percent(),
                available: snapshot.available,
                stall_some: snapshot.stall.map(|s| s.some_avg10),
            };
            if pool.pressure(report).await.is_err() {
                return;
            }
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

#[cfg(target_os = "linux")]
type Trigger = psi::PsiTrigger;
#[cfg(not(target_os = "linux"))]
type Trigger = ();

fn woke(fired: std::io::Result<()>, wake: Wake) -> Wake {
    match fired {
        Ok(()) => wake,
        Err(e) => {
            tracing::warn!(error = %e, "a pressure trigger failed; polling covers it");
            Wake::Poll
        }
    }
}

#[cfg(target_os = "linux")]
fn arm_trigger(wake: Wake) -> Option<Trigger> {
    let path = std::path::Path::new("/proc/pressure/memory");
    let (kind, stall_us) = match wake {
        Wake::FullStall => (psi::StallKind::Full, 100_000),
        _ => (psi::StallKind::Some, 150_000),
    };
    match psi::PsiTrigger::arm(path, kind, stall_us) {
        Ok(trigger) => {
            tracing::info!(
                ?kind,
                stall_us,
                window_us = psi::WINDOW_US,
                "memory pressure trigger armed"
            );
            Some(trigger)
        }
        Err(e) => {
            tracing::info!(error = %e, "no PSI trigger (kernel without PSI, or not permitted); polling every second");
            None
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn arm_trigger(_wake: Wake) -> Option<Trigger> {
    // macOS: the dispatch memory-pressure source is not wired yet; the poll reads the kernel's
    // own level (kern.memorystatus_vm_pressure_level) every second.
    None
}

#[cfg(target_os = "linux")]
async fn signal(trigger: Option<&Trigger>) -> std::io::Result<()> {
    match trigger {
        Some(t) => t.fired().await,
        None => std::future::pending().await,
    }
}

#[cfg(not(target_os = "linux"))]
async fn signal(_trigger: Option<&Trigger>) -> std::io::Result<()> {
    std::future::pending().await
}
