//! The HTTP API: OpenAI- and Anthropic-compatible endpoints under `/v1`, Ollama's under `/api`
//! beside Headroom's own, and the web UI at `/`. Served on loopback only.

pub mod anthropic;
pub mod body;
pub mod error;
mod event_stream;
pub mod generation;
mod guard;
mod manage;
pub mod ollama;
pub mod openai;
mod prometheus;
mod pull;
mod settings;
mod status;
mod ui;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use axum::Router;

use crate::memory::MemoryProbe;
use crate::metrics::Metrics;
use crate::models::Catalog;
use crate::pool::Pool;
pub use body::MAX_BODY_BYTES;
use error::ApiError;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub pool: Pool,
    pub catalog: Arc<Catalog>,
    pub probe: Arc<dyn MemoryProbe>,
    /// The settings in force and the config file (`live.store()`), and what applies changes
    /// to the running server.
    pub live: crate::live::Live,
    /// Every change, for `/api/events`.
    pub bus: crate::events::Bus,
    pub metrics: Metrics,
    /// Conversations saved when models unloaded, for `/api/models` to say how much disk they
    /// take.
    pub conversations: Option<crate::engine::saved::SavedPrefixes>,
    /// The last ten minutes of memory, for the timeline.
    pub history: crate::history::History,
    /// The port the server really listens on, for the `Host` check.
    pub port: u16,
    /// Listening beyond loopback (the `bind` setting): the `Host` check is off, the key is on.
    pub shared: bool,
    /// Connections open now, for `/metrics`.
    pub connections: crate::listen::OpenConnections,
    /// True once the server is shutting down.
    pub stopping: tokio::sync::watch::Receiver<bool>,
    /// Models being pulled from the Hub.
    pub pulls: crate::pull::Pulls,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(status::health))
        .route("/v1/models", get(openai::models::list))
        .route("/v1/chat/completions", post(openai::chat::completions))
        .route("/v1/completions", post(openai::completions::completions))
        .route("/v1/responses", post(openai::responses::create))
        .route(
            "/v1/responses/{id}",
            get(openai::responses::not_stored).delete(openai::responses::not_stored),
        )
        .route("/v1/embeddings", post(openai::embeddings::embeddings))
        .route("/v1/messages", post(anthropic::messages))
        .route("/v1/messages/count_tokens", post(anthropic::count_tokens))
        .route("/api/chat", post(ollama::chat))
        .route("/api/generate", post(ollama::generate))
        .route("/api/embed", post(ollama::embed))
        .route("/api/embeddings", post(ollama::embeddings))
        .route("/api/tags", get(ollama::tags))
        .route("/api/ps", get(ollama::ps))
        .route("/api/show", post(ollama::show))
        .route("/api/version", get(ollama::version))
        .route("/api/pull", post(ollama::pull))
        .route("/api/push", post(ollama::unsupported))
        .route("/api/create", post(ollama::unsupported))
        .route("/api/copy", post(ollama::unsupported))
        .route("/api/delete", delete(ollama::unsupported))
        .route("/api/status", get(status::status))
        .route("/api/events", get(status::events))
        .route("/api/models", get(manage::models))
        .route("/api/models/pull", post(pull::start))
        .route("/api/hub/{org}/{name}", get(pull::repo))
        .route("/api/models/pulls", get(pull::list))
        .route("/api/models/pulls/{model}", delete(pull::cancel))
        .route("/api/models/{id}", delete(pull::delete))
        .route("/api/settings", get(settings::get).put(settings::put))
        .route("/api/memory/status", get(manage::status))
        .route("/api/memory/flush", post(manage::flush))
        .route("/api/memory/history", get(manage::history))
        .route("/api/memory/models/{id}", delete(manage::unload))
        .route("/api/memory/models/{id}/load", post(manage::load))
        .route("/api/metrics/generations", get(prometheus::generations))
        .route("/metrics", get(prometheus::prometheus))
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
