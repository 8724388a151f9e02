//! What the pool tells the world.

use serde::Serialize;

use crate::engine::Footprint;

/// One change in the pool, in the order it happened.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PoolEvent {
    Loading {
        model: String,
    },
    Loaded {
        model: String,
        footprint: Footprint,
        load_ms: u64,
    },
    LoadFailed {
        model: String,
        error: String,
    },
    Unloaded {
        model: String,
        /// Process memory before and after the unload, when it could be measured.
        rss_before: Option<u64>,
        rss_after: Option<u64>,
    },
}
