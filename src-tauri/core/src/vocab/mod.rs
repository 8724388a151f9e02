//! The words every subsystem speaks: sizes and how they are written, idle timeouts, pressure
//! tiers with their thresholds and margins, how events are published, and the API dialects.
//!
//! This is the leaf of the crate's module graph: it imports nothing of the crate, so config,
//! pressure, pool, notifications and the UI's API can all use it without depending on each
//! other (docs/design.md draws the graph).

mod clock;
mod dialect;
mod duration;
mod margins;
mod publish;
mod size;
mod thresholds;
mod tier;

pub use clock::{now_unix_ms, unix_ms};
pub use dialect::Dialect;
pub use duration::{parse_idle_timeout, IdleTimeout};
pub use margins::TierMargins;
pub use publish::{nowhere, Publish};
pub use size::{file_size, memory_size, parse_bytes, ByteSize, MemoryLimit};
pub use thresholds::PressureThresholds;
pub use tier::Tier;
