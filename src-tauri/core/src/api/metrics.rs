//! `GET /metrics` (Prometheus text) and `GET /api/metrics/generations` (the last 100).

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};

use super::error::ApiError;
use super::AppState;

pub async fn prometheus(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let pool = state.pool.status().await?;
    let load = crate::metrics::ServerLoad {
        connections: state.connections.now(),
        tasks: tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks(),
    };
    let text = state.metrics.render(&pool, state.probe.system(), load);
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    ))
}

pub async fn generations(State(state): State<AppState>) -> Json<Value> {
    Json(json!({ "generations": state.metrics.generations.recent() }))
}
