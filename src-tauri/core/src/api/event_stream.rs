//! The shape every dialect's event stream has: each step of the generation queues the events
//! it makes, which go out in order, until the step that ends it. Dropping the stream (the
//! client went away) drops the generation with it, which the engine then cancels.

use std::convert::Infallible;
use std::future::Future;

use axum::response::sse::Event;
use futures::stream::Stream;

/// A dialect's streamed answer under way.
pub trait Steps: Send + 'static {
    /// The next event ready to go out.
    fn pop(&mut self) -> Option<Event>;
    /// True once the last event has been queued.
    fn finished(&self) -> bool;
    /// Waits for the generation's next step and queues what it makes.
    fn step(&mut self) -> impl Future<Output = ()> + Send;
}

/// The queued events, in order, then whatever each further step queues, until the last.
pub fn events(steps: impl Steps) -> impl Stream<Item = Result<Event, Infallible>> {
    futures::stream::unfold(steps, |mut steps| async move {
        loop {
            if let Some(event) = steps.pop() {
                return Some((Ok(event), steps));
            }
            if steps.finished() {
                return None;
            }
            steps.step().await;
        }
    })
}
