//! The three figures the pool's admission works with.

use serde::Serialize;

/// The machine's memory at one moment, in bytes (a memory-limited cgroup's, when the process
/// runs in one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SystemMemory {
    pub total: u64,
    /// What can be had without swapping: free memory plus caches the kernel can drop.
    pub available: u64,
    pub used: u64,
}
