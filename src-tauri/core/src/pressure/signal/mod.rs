//! What wakes the pressure monitor between its polls: the kernel's own signal, where the
//! platform has one.
//!
//! Each platform arms its sources once at startup and forwards every firing into one channel, so
//! the monitor awaits a single receiver whatever the platform and however many sources there are
//! (Linux arms two PSI triggers per pressure file: the system's and the own cgroup's).

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "macos")]
mod macos;
#[cfg(target_os = "linux")]
mod psi;
#[cfg(target_os = "linux")]
pub mod threshold;

use serde::Serialize;
use tokio::sync::mpsc;

/// What woke the monitor.
/// Ordered by what it says about memory: a full stall is the most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Wake {
    Poll,
    /// Linux cgroup v1: the own cgroup's usage crossed one of the thresholds on its limit
    /// (every 5 % from half of it). Says where memory is, not that it is short.
    Threshold,
    /// The macOS memory-pressure dispatch source fired; the snapshot reads the level it set.
    OsSignal,
    /// A Linux PSI trigger: some tasks stalled on memory for 7.5 % of its window (500 ms, or
    /// 2 s where the shorter one is not granted). Constrained at least.
    Stall,
    /// Every task stalled on memory for 5 % of the window. Critical at least.
    FullStall,
}

impl Wake {
    /// The name `/metrics` and the log use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Poll => "poll",
            Self::Threshold => "threshold",
            Self::OsSignal => "os_signal",
            Self::Stall => "stall",
            Self::FullStall => "full_stall",
        }
    }
}

/// The armed sources' firings. Firings that arrive while the monitor is busy are coalesced into
/// the most severe: one look after a burst sees the same memory as one look per firing would.
pub struct Signals {
    rx: mpsc::Receiver<Wake>,
    /// Keeps the channel open where nothing is armed, so `next` waits instead of ending.
    _keep_open: mpsc::Sender<Wake>,
}

impl Signals {
    /// Arms every source this platform has; a source that cannot be armed is logged and left
    /// to the poll.
    pub fn arm() -> Self {
        let (tx, rx) = mpsc::channel(4);
        #[cfg(target_os = "linux")]
        linux::arm(&tx);
        #[cfg(target_os = "macos")]
        macos::arm(&tx);
        Self { rx, _keep_open: tx }
    }

    /// The next firing, or the most severe of those that came together (one stall fires the
    /// system's and the cgroup's triggers at once; that is one look, not four); pending forever
    /// when nothing is armed.
    pub async fn next(&mut self) -> Wake {
        let mut wake = self.rx.recv().await.unwrap_or(Wake::Poll);
        while let Ok(more) = self.rx.try_recv() {
            wake = wake.max(more);
        }
        wake
    }
}

/// Forwards one firing, dropping it when a wake is already queued (the monitor will look anyway).
fn forward(tx: &mpsc::Sender<Wake>, wake: Wake) {
    let _ = tx.try_send(wake);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_burst_of_firings_is_one_wake_at_its_most_severe() {
        let (tx, rx) = mpsc::channel(4);
        let mut signals = Signals {
            rx,
            _keep_open: tx.clone(),
        };
        for wake in [Wake::Stall, Wake::FullStall, Wake::Stall] {
            forward(&tx, wake);
        }
        assert_eq!(signals.next().await, Wake::FullStall);
        forward(&tx, Wake::OsSignal);
        assert_eq!(signals.next().await, Wake::OsSignal);
    }
}
