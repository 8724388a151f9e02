//! The HTTP API: OpenAI-compatible endpoints under `/v1`, Headroom's own under `/api`, and the
//! web UI at `/`. Served on loopback only.

mod body;
pub mod error;
mod guard;
mod openai;
mod status;
mod ui;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;

use crate::models::Catalog;
use crate::pool::Pool;
pub use body::MAX_BODY_BYTES;
use error::ApiError;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub pool: Pool,
    pub catalog: Arc<Catalog>,
    /// The port the server really listens on, for the `Host` check.
    pub port: u16,
    /// True once the server is shutting down.
    pub stopping: tokio::sync::watch::Receiver<bool>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(status::health))
        .route("/v1/models", get(openai::models::list))
        .route("/v1/chat/completions", post(openai::chat::completions))
        .route("/v1/completions", post(openai::completions::completions))
        .route("/api/status", get(status::status))
        .route("/api/events", get(status::events))
        .route("/", get(ui::index))
        .route("/ui/{file}", get(ui::file))
        .fallback(|| async { ApiError::not_found("not_found", "no such endpoint") })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::check,
        ))
        .with_state(state)
}
