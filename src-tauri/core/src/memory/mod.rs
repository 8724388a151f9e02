//! Measuring memory. (The full probe with pressure levels is its own subsystem; this holds
//! what the engine and the pool need today.)

mod rss;
mod trim;

pub use rss::process_rss;
pub use trim::release_free_memory;
