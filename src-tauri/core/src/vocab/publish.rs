//! How a subsystem publishes its events without knowing who listens: a function it calls with
//! each event, in order. The server hands every subsystem one that wraps its events into the
//! app-wide event and sends it on the one bus, so the pool's and the monitor's events keep
//! the order they happened in.

use std::sync::Arc;

/// Publishes one kind of event.
pub type Publish<T> = Arc<dyn Fn(T) + Send + Sync>;

/// A publisher that drops every event, for a subsystem run alone.
pub fn nowhere<T>() -> Publish<T> {
    Arc::new(|_| {})
}
