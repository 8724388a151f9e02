//! OpenAI's Responses API, `POST /v1/responses`, over the same generation as chat completions.
//!
//! Headroom keeps no responses: each request carries its whole conversation in `input`, as a
//! client with `store: false` sends it (Codex does). `previous_response_id`, `conversation` and
//! `item_reference` are refused with a 400 that says so, and `GET`/`DELETE /v1/responses/{id}`
//! answer 404. The response object says `"store": false`.

mod output;
mod request;
mod stream;

use axum::extract::{Path, State};
use axum::response::sse::Sse;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::api::body::JsonBody;
use crate::api::error::ApiError;
use crate::api::generation::{self, unix_now};
use crate::api::AppState;
use crate::vocab::Dialect;
use output::Reply;
pub use request::ResponsesRequest;

pub async fn create(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<ResponsesRequest>,
) -> Result<Response, ApiError> {
    let call = request.prepare()?;
    let (messages, tools) = (call.messages, call.tools);
    let answer = generation::start(
        &state,
        Dialect::OpenAiResponses,
        &call.model,
        |model| generation::chat_prompt(model, messages, &tools, true),
        call.checked.settings(),
    )
    .await?;
    let reply = Reply {
        id: format!("resp_{}", uuid::Uuid::new_v4().simple()),
        created_at: unix_now(),
        echo: call.echo,
        answer,
    };
    Ok(if call.stream {
        Sse::new(stream::events(reply)).into_response()
    } else {
        Json(reply.collect().await?).into_response()
    })
}

/// `GET` or `DELETE /v1/responses/{id}`: nothing is stored, so nothing is found.
pub async fn not_stored(Path(id): Path<String>) -> ApiError {
    ApiError::not_found(
        "response_not_found",
        format!("no response '{id}': Headroom does not store responses"),
    )
}

/// What the endpoint makes of a body before it looks for the model: the request decoder the
/// fuzz target drives.
pub fn decode(body: &[u8]) -> Result<(), ApiError> {
    crate::api::body::decode::<ResponsesRequest>(body)?
        .prepare()
        .map(drop)
}
