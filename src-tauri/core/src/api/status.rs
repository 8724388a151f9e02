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
    let catalog = state.catalog.clone();
    // A scan reads folders; keep it off the async workers.
    let sources = tokio::task::spawn_blocking(move || sources(&catalog))
        .await
        .unwrap_or_default();
    Ok(Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "pid": std::process::id(),
        "address": format!("http://127.0.0.1:{}", state.port),
        "process_rss": process_rss(),
        "model_dirs": state.catalog.dirs(),
        "sources": sources,
        "pool": pool,
    })))
}

/// Every kind of store: where it is on this machine (null if it is not), and how many models
/// it holds if it is served (null if the `sources` setting leaves it out).
fn sources(catalog: &crate::models::Catalog) -> Vec<Value> {
    use crate::models::{Source, SourceKind};
    let served = catalog.source_counts();
    let here = Source::locate_all(&SourceKind::ALL);
    SourceKind::ALL
        .into_iter()
        .map(|kind| {
            let served = served.iter().find(|(s, _)| s.kind == kind);
            let folder = served
                .map(|(s, _)| s.root.clone())
                .or_else(|| here.iter().find(|s| s.kind == kind).map(|s| s.root.clone()));
            json!({
                "source": kind,
                "label": kind.label(),
                "folder": folder,
                "models": served.map(|(_, count)| count),
            })
        })
        .collect()
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
