//! Linux cgroup v1: the kernel's usage thresholds on the own memory cgroup.
//!
//! Writing `<eventfd> <fd of memory.usage_in_bytes> <bytes>` to the cgroup's
//! `cgroup.event_control` makes the kernel signal the eventfd whenever the cgroup's usage
//! crosses that many bytes, either way, checked as pages are charged (every 512 KB or so), not
//! on anyone's clock. A ladder of thresholds every [`STEP_PERCENT`] of the limit from
//! [`FIRST_PERCENT`] up wakes the monitor as a burst climbs: two rungs apart give it the rate,
//! long before a one-second poll would look. Above the top rung the usage is at the limit and
//! the kernel reclaims; the monitor polls fast by then.
//!
//! cgroup v2 has no such thresholds (`memory.events` reports only `memory.high`/`max`
//! breaches of limits Headroom does not set); its PSI triggers are armed beside (see `linux.rs`).

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::mpsc;

use super::{forward, Wake};

/// The lowest rung, in percent of the cgroup's limit.
pub const FIRST_PERCENT: u64 = 50;
/// Rungs every this many percent up to the limit.
pub const STEP_PERCENT: u64 = 5;

/// The rungs for a cgroup limited to `limit` bytes, in bytes.
pub fn ladder(limit: u64) -> Vec<u64> {
    (FIRST_PERCENT..100)
        .step_by(STEP_PERCENT as usize)
        .map(|percent| limit / 100 * percent)
        .collect()
}

/// Arms the ladder on the v1 memory cgroup at `dir` (limited to `limit` bytes); every crossing
/// is forwarded as [`Wake::Threshold`].
pub(super) fn arm(dir: &Path, limit: u64, tx: &mpsc::Sender<Wake>) -> std::io::Result<()> {
    // SAFETY: eventfd returns a new descriptor (or -1), which OwnedFd then owns.
    let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor nothing else owns.
    let events = unsafe { OwnedFd::from_raw_fd(raw) };
    let usage = File::open(dir.join("memory.usage_in_bytes"))?;
    let mut control = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join("cgroup.event_control"))?;
    let rungs = ladder(limit);
    for bytes in &rungs {
        // One registration per write.
        control.write_all(
            format!("{} {} {bytes}", events.as_raw_fd(), usage.as_raw_fd()).as_bytes(),
        )?;
    }
    // SAFETY: the AsyncFd owns the descriptor, which stays open and the same until the AsyncFd
    // is dropped.
    let events = unsafe { AsyncFd::register_with_interest(events, Interest::READABLE) }
        .map_err(|e| e.into_parts().1)?;
    tracing::info!(
        cgroup = %dir.display(), limit, rungs = rungs.len(),
        "memory usage thresholds armed (cgroup v1)"
    );
    tokio::spawn(watch(events, usage, tx.clone()));
    Ok(())
}

/// Forwards each crossing until the monitor is gone. `_usage` stays open as long as the
/// registrations it names.
async fn watch(events: AsyncFd<OwnedFd>, _usage: File, tx: mpsc::Sender<Wake>) {
    loop {
        let Ok(mut ready) = events.readable().await else {
            return;
        };
        let mut count = [0u8; 8];
        // SAFETY: reads 8 bytes into a buffer of 8 from a descriptor the AsyncFd owns.
        let read = unsafe {
            libc::read(
                events.get_ref().as_raw_fd(),
                count.as_mut_ptr().cast(),
                count.len(),
            )
        };
        if read < 0 {
            let error = std::io::Error::last_os_error();
            if error.kind() == std::io::ErrorKind::WouldBlock {
                ready.clear_ready();
                continue;
            }
            tracing::warn!(%error, "memory usage thresholds failed; the poll covers it");
            return;
        }
        forward(&tx, Wake::Threshold);
        if tx.is_closed() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ladder_runs_from_half_the_limit_in_steps_of_five_percent() {
        let rungs = ladder(1_200_000_000);
        assert_eq!(rungs.first(), Some(&600_000_000));
        assert_eq!(rungs.last(), Some(&1_140_000_000));
        assert_eq!(rungs.len(), 10);
    }
}
