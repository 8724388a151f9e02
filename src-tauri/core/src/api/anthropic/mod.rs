//! Anthropic's Messages API: `POST /v1/messages` (whole or streamed) and
//! `POST /v1/messages/count_tokens`, over the same generation as the OpenAI routes. Errors in
//! Anthropic's shape: `{"type": "error", "error": {"type", "message"}}`.

mod messages;
mod request;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::api::error::ApiError;

pub use messages::{count_tokens, messages};

/// An error answered in Anthropic's shape, with the status the OpenAI routes would give it.
pub struct AnthropicError(pub ApiError);

impl From<ApiError> for AnthropicError {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

impl AnthropicError {
    /// Anthropic's error type for a status.
    fn kind(&self) -> &'static str {
        match self.0.status {
            StatusCode::BAD_REQUEST => "invalid_request_error",
            StatusCode::UNAUTHORIZED => "authentication_error",
            StatusCode::FORBIDDEN => "permission_error",
            StatusCode::NOT_FOUND => "not_found_error",
            StatusCode::PAYLOAD_TOO_LARGE => "request_too_large",
            StatusCode::TOO_MANY_REQUESTS => "rate_limit_error",
            StatusCode::SERVICE_UNAVAILABLE => "overloaded_error",
            s if s.is_client_error() => "invalid_request_error",
            _ => "api_error",
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        json!({ "type": "error", "error": { "type": self.kind(), "message": self.0.message } })
    }
}

impl IntoResponse for AnthropicError {
    fn into_response(self) -> Response {
        let mut response = (self.0.status, Json(self.to_json())).into_response();
        if let Some(seconds) = self.0.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// The body, as JSON, or an Anthropic-shaped error (too large, not JSON, a field of the wrong
/// type).
fn decode<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, AnthropicError> {
    let bytes = body.map_err(|rejection| {
        let e = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::bad_request(
                "request_too_large",
                format!(
                    "the request body is larger than {} bytes",
                    crate::api::MAX_BODY_BYTES
                ),
            )
            .with_status(StatusCode::PAYLOAD_TOO_LARGE)
        } else {
            ApiError::bad_request("invalid_body", rejection.body_text())
        };
        AnthropicError(e)
    })?;
    Ok(crate::api::body::decode::<T>(&bytes)?)
}
