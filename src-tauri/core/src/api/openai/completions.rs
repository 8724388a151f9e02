//! `POST /v1/completions`: raw text in, text out, no chat template.

use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;

use super::options::{Checked, GenerationOptions};
use super::run::{start, Kind, Prepared};
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

/// A text completion request that passed every check, ready to run.
#[derive(Debug)]
pub struct CompletionCall {
    pub model: String,
    pub prompt: String,
    pub checked: Checked,
    pub stream: bool,
}

impl CompletionRequest {
    pub fn prepare(self) -> Result<CompletionCall, ApiError> {
        let checked = self.options.check(Some(DEFAULT_MAX_TOKENS))?;
        let prompt = match self.prompt {
            Prompt::One(p) => p,
            Prompt::Many(mut v) if v.len() == 1 => v.remove(0),
            Prompt::Many(_) => {
                return Err(ApiError::bad_request(
                    "invalid_prompt",
                    "only one prompt per request is supported",
                ))
            }
        };
        Ok(CompletionCall {
            model: self.model,
            prompt,
            checked,
            stream: self.options.stream,
        })
    }
}

/// What the endpoint makes of a body before it looks for the model: the request decoder the
/// fuzz target drives.
pub fn decode(body: &[u8]) -> Result<CompletionCall, ApiError> {
    crate::api::body::decode::<CompletionRequest>(body)?.prepare()
}

pub async fn completions(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<CompletionRequest>,
) -> Result<Response, ApiError> {
    let call = request.prepare()?;
    let prompt = call.prompt;
    let started = start(
        &state,
        Kind::Text,
        &call.model,
        |_| Ok(Prepared::text(prompt, None)),
        call.checked,
    )
    .await?;
    Ok(started.respond(call.stream).await)
}
