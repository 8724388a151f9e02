//! The memory probe: one snapshot of the machine's memory and the operating system's own
//! pressure signal, behind one trait with one implementation per platform.
//!
//! The arithmetic lives in pure functions over raw counters (`linux::snapshot_from`,
//! `macos::snapshot_from`), so both platforms' formulas are unit-tested here with fixtures; only
//! the reading of the counters is platform code.

pub mod linux;
pub mod macos;

use serde::Serialize;

use super::{process_memory, ProcessMemory};

/// The operating system's own verdict on memory, where it gives one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OsPressure {
    Normal,
    Warn,
    Critical,
    /// This platform (or this machine) gives no level.
    Unknown,
}

/// Linux pressure-stall information for memory: the share of the last 10 s in which some (or
/// all) runnable tasks waited for memory, in percent.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Stall {
    pub some_avg10: f64,
    pub full_avg10: f64,
}

/// The machine's memory at one moment, in bytes. In a memory-limited cgroup (a container, or a
/// test harness) the totals are the cgroup's, since that is the limit the process will hit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MemorySnapshot {
    pub total: u64,
    pub used: u64,
    /// What can be had without swapping or reclaim stalls.
    pub available: u64,
    /// Pages the kernel cannot page out (macOS "Wired"); `None` on Linux.
    pub wired: Option<u64>,
    /// Memory held compressed (macOS "Compressed"); `None` on Linux.
    pub compressed: Option<u64>,
    /// File cache the kernel can drop.
    pub cached_files: u64,
    /// File cache counted in `used` (a limited cgroup's active file pages; 0 where `used`
    /// already leaves the cache out). The growth rate of other apps' memory leaves it out: a
    /// burst of reads is not an allocation, and the kernel can still reclaim it.
    pub file_in_use: u64,
    /// Memory nothing holds, not even the file cache: what the kernel hands out before it has
    /// to reclaim (Linux `MemFree`, or a limited cgroup's room under its limit, the smaller).
    /// `None` where not read (macOS, whose pressure level needs no such check).
    pub free: Option<u64>,
    pub swap_used: u64,
    pub pressure: OsPressure,
    pub stall: Option<Stall>,
    /// True when a cgroup limit below the host's RAM sets `total`.
    pub cgroup_limited: bool,
    /// This process.
    pub process: Option<ProcessMemory>,
}

#[cfg(test)]
impl MemorySnapshot {
    /// A machine with `total` bytes, `percent` of them used, and nothing else known: the
    /// starting point of the tests that drive tiers and the monitor.
    pub fn with_used_percent(total: u64, percent: f64) -> Self {
        let used = (total as f64 * percent / 100.0) as u64;
        Self {
            total,
            used,
            available: total - used,
            wired: None,
            compressed: None,
            cached_files: 0,
            file_in_use: 0,
            free: None,
            swap_used: 0,
            pressure: OsPressure::Unknown,
            stall: None,
            cgroup_limited: false,
            process: None,
        }
    }
}

impl MemorySnapshot {
    /// Used memory as a percentage of the effective total.
    pub fn used_percent(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.used as f64 * 100.0 / self.total as f64
        }
    }

    pub fn system(&self) -> super::SystemMemory {
        super::SystemMemory {
            total: self.total,
            available: self.available,
            used: self.used,
        }
    }
}

/// Why a snapshot could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("cannot read {what}: {source}")]
    Read {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot make sense of {what}")]
    Parse { what: String },
    #[error("{0}")]
    Os(String),
}

/// Where memory figures come from; a trait so the pool and the pressure monitor can be driven
/// by scripted snapshots in tests.
pub trait MemoryProbe: Send + Sync + 'static {
    fn snapshot(&self) -> Result<MemorySnapshot, ProbeError>;

    /// The three figures admission needs, or `None` where memory cannot be read.
    fn system(&self) -> Option<super::SystemMemory> {
        self.snapshot().ok().map(|s| s.system())
    }
}

/// This platform's probe.
pub fn os_probe() -> std::sync::Arc<dyn MemoryProbe> {
    #[cfg(target_os = "macos")]
    {
        std::sync::Arc::new(macos::MacProbe)
    }
    #[cfg(not(target_os = "macos"))]
    {
        std::sync::Arc::new(linux::LinuxProbe::default())
    }
}

/// The process part every probe adds.
fn with_process(mut snapshot: MemorySnapshot) -> MemorySnapshot {
    snapshot.process = process_memory();
    snapshot
}
