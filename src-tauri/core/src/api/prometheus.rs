//! `GET /metrics` (Prometheus text) and `GET /api/metrics/generations` (the last 100).

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};

use super::error::ApiError;
use super::AppState;
use crate::metrics::{ModelGauges, PoolGauges, ServerLoad};

pub async fn prometheus(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let pool = state.pool.status().await?;
    let load = ServerLoad {
        connections: state.connections.now(),
        tasks: tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks(),
    };
    let gauges = PoolGauges {
        used: pool.used,
        limit: pool.limit,
        models: pool
            .models
            .iter()
            .map(|m| ModelGauges {
                id: &m.id,
                memory: m.memory,
                in_flight: m.in_flight,
            })
            .collect(),
    };
    let text = state.metrics.render(&gauges, state.probe.system(), load);
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
