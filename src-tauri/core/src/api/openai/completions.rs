//! `POST /v1/completions`: raw text in, text out, no chat template.

use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;

use super::options::GenerationOptions;
use super::run::{start, Kind};
use crate::api::body::JsonBody;
use crate::api::error::ApiError;
use crate::api::AppState;

/// OpenAI's default for this endpoint.
const DEFAULT_MAX_TOKENS: u32 = 16;

#[derive(Debug, Deserialize)]
pub struct CompletionRequest {
    pub model: String,
    pub prompt: Prompt,
    #[serde(flatten)]
    pub options: GenerationOptions,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    One(String),
    Many(Vec<String>),
}

pub async fn completions(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<CompletionRequest>,
) -> Result<Response, ApiError> {
    let checked = request.options.check(Some(DEFAULT_MAX_TOKENS))?;
    let prompt = match request.prompt {
        Prompt::One(p) => p,
        Prompt::Many(mut v) if v.len() == 1 => v.remove(0),
        Prompt::Many(_) => {
            return Err(ApiError::bad_request(
                "invalid_prompt",
                "only one prompt per request is supported",
            ))
        }
    };
    let started = start(&state, Kind::Text, &request.model, |_| Ok(prompt), checked).await?;
    Ok(started.respond(request.options.stream).await)
}
