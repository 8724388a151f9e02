//! Measuring memory: this process (resident, anonymous and file-backed, per mapped file), the
//! machine (total and available), and handing freed heap back to the OS.

mod mapped;
mod rss;
mod system;
mod trim;

pub use mapped::resident_bytes_of_file;
pub use rss::{process_memory, process_rss, ProcessMemory};
pub use system::{MemoryProbe, OsProbe, SystemMemory};
pub use trim::release_free_memory;
