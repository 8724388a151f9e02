//! `/health`, `/api/status` and the `/api/events` stream.

use std::convert::Infallible;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::Json;
use futures::stream::Stream;
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;

use super::error::ApiError;
use super::AppState;
use crate::memory::process_rss;

pub async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// The pool and this process, for the UI and for tests.
pub async fn status(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let pool = state.pool.status().await?;
    Ok(Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "pid": std::process::id(),
        "address": format!("http://127.0.0.1:{}", state.port),
        "process_rss": process_rss(),
        "model_dirs": state.catalog.dirs(),
        "pool": pool,
    })))
}

/// Pool events as server-sent events, one JSON object each. A subscriber that falls too far
/// behind gets a `lagged` event telling it to re-read `/api/status`. The stream ends when the
/// server begins to shut down, so an open UI does not hold the shutdown up.
pub async fn events(
    State(state): State<AppState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let receiver = state.bus.subscribe();
    let stream = futures::stream::unfold(
        (receiver, state.stopping),
        |(mut receiver, mut stopping)| async move {
            let received = tokio::select! {
                received = receiver.recv() => received,
                _ = stopping.wait_for(|s| *s) => return None,
            };
            let data = match received {
                Ok(event) => serde_json::to_string(&event).unwrap_or_default(),
                Err(RecvError::Lagged(missed)) => {
                    json!({ "type": "lagged", "missed": missed }).to_string()
                }
                Err(RecvError::Closed) => return None,
            };
            Some((Ok(Event::default().data(data)), (receiver, stopping)))
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::default())
}
