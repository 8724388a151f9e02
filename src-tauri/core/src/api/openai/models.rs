//! `GET /v1/models`: every model file in the model folders and other apps' stores, loaded or
//! not; `owned_by` names the app whose store it is in.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use crate::api::AppState;

pub async fn list(State(state): State<AppState>) -> Json<Value> {
    let catalog = state.catalog.clone();
    // Listing reads folders; keep it off the async workers.
    let models = tokio::task::spawn_blocking(move || catalog.list())
        .await
        .unwrap_or_default();
    let data: Vec<Value> = models
        .into_iter()
        .map(|m| {
            let created = std::fs::metadata(&m.path)
                .and_then(|meta| meta.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs());
            json!({
                "id": m.id,
                "object": "model",
                "created": created,
                "owned_by": m.source.map_or("headroom", |s| s.name()),
                "size_bytes": m.size,
            })
        })
        .collect();
    Json(json!({ "object": "list", "data": data }))
}
