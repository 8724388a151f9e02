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

use serde::Serialize;
use tokio::sync::mpsc;

/// What woke the monitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Wake {
    /// A Linux PSI trigger: some tasks stalled on memory for 150 ms of the last 2 s.
    /// Constrained at least.
    Stall,
    /// Every task stalled on memory for 100 ms of the last 2 s. Critical at least.
    FullStall,
    /// The macOS memory-pressure dispatch source fired; the snapshot reads the level it set.
    OsSignal,
    Poll,
}

/// The armed sources' firings. Firings that arrive while the monitor is busy are coalesced: one
/// look after a burst sees the same memory as one look per firing would.
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

    /// The next firing; pending forever when nothing is armed.
    pub async fn next(&mut self) -> Wake {
        self.rx.recv().await.unwrap_or(Wake::Poll)
    }
}

/// Forwards one firing, dropping it when a wake is already queued (the monitor will look anyway).
fn forward(tx: &mpsc::Sender<Wake>, wake: Wake) {
    let _ = tx.try_send(wake);
}
