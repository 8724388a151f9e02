//! Measuring memory: this process (resident, anonymous and file-backed, per mapped file), the
//! machine through the platform's probe, and handing freed heap back to the OS.

mod mapped;
pub mod probe;
mod rss;
mod system;
mod trim;

pub use mapped::resident_bytes_of_file;
pub use probe::{os_probe, MemoryProbe, MemorySnapshot, OsPressure, ProbeError, Stall};
pub use rss::{process_memory, process_rss, ProcessMemory};
pub use system::SystemMemory;
pub use trim::{keep_large_blocks_returnable, release_free_memory};
