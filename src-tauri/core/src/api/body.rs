//! Request bodies: size-limited, parsed as JSON, and refused in OpenAI's error shape. axum's own
//! `Json` answers in plain text and with 422 for a wrong type; clients of an OpenAI API expect a
//! 400 with an error object that names the field.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// Largest request body; beyond it the request is refused with 413 before it is read in full.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::bad_request(
                    "request_too_large",
                    format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
                )
                .with_status(StatusCode::PAYLOAD_TOO_LARGE)
            } else {
                ApiError::bad_request("invalid_body", rejection.body_text())
            }
        })?;
        decode(&bytes).map(Self)
    }
}

/// Parses a request body as `T`, refusing in OpenAI's error shape with the field at fault named.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = if inner.is_syntax() || inner.is_eof() {
            format!("the body is not valid JSON: {inner}")
        } else if path == "." {
            format!("invalid request: {inner}")
        } else {
            format!("invalid value for '{path}': {inner}")
        };
        ApiError::bad_request("invalid_json", message)
    })?;
    de.end().map_err(|e| {
        ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {e}"))
    })?;
    Ok(value)
}
