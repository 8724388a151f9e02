//! Errors in OpenAI's shape: `{"error": {"message", "type", "code"}}`, with the status code
//! that says whose fault it was. A client's mistake is a 4xx with a message that says what to
//! fix; a 5xx means the server or a model file failed.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::engine::EngineError;
use crate::models::CatalogError;
use crate::pool::PoolError;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub code: &'static str,
    pub message: String,
    /// Seconds, for 503s the client should retry.
    pub retry_after: Option<u32>,
    /// The request field (or setting) at fault, as OpenAI's `param`.
    pub param: Option<String>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Detail<'a>,
}

#[derive(Serialize)]
pub(super) struct Detail<'a> {
    message: &'a str,
    r#type: &'a str,
    code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    param: Option<&'a str>,
}

impl ApiError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            kind: "invalid_request_error",
            code,
            message: message.into(),
            retry_after: None,
            param: None,
        }
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            kind: "invalid_request_error",
            code,
            message: message.into(),
            retry_after: None,
            param: None,
        }
    }

    pub fn server(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            kind: "server_error",
            code,
            message: message.into(),
            retry_after: None,
            param: None,
        }
    }

    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            kind: "server_error",
            code,
            message: message.into(),
            retry_after: Some(1),
            param: None,
        }
    }

    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// The `error` object alone, for an error that happens inside an SSE stream.
    pub(super) fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "error": Detail { message: &self.message, r#type: self.kind, code: self.code, param: self.param.as_deref() } })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: Detail {
                message: &self.message,
                r#type: self.kind,
                code: self.code,
                param: self.param.as_deref(),
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<CatalogError> for ApiError {
    fn from(e: CatalogError) -> Self {
        match e {
            CatalogError::InvalidId(_) => Self::bad_request("invalid_model_id", e.to_string()),
            CatalogError::NotFound(_) => Self::not_found(
                "model_not_found",
                format!("{e}; GET /v1/models lists the models there are"),
            ),
        }
    }
}

impl From<PoolError> for ApiError {
    fn from(e: PoolError) -> Self {
        let code = e.code();
        let message = e.to_string();
        match e {
            PoolError::LoadFailed { .. } => Self::server(code, message),
            PoolError::InsufficientMemory { retry, .. } => Self {
                retry_after: retry.then_some(5),
                ..Self::unavailable(code, message)
            },
            PoolError::LowMemory { .. } => Self {
                retry_after: Some(5),
                ..Self::unavailable(code, message)
            },
            PoolError::NotLoaded(_) => Self::not_found(code, message),
            PoolError::StillLoading(_) | PoolError::Pinned { .. } => {
                Self::bad_request(code, message).with_status(StatusCode::CONFLICT)
            }
            PoolError::ShuttingDown => Self::unavailable(code, message),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::PromptTooLong { .. } => {
                Self::bad_request("context_length_exceeded", e.to_string())
            }
            EngineError::Template(_) => Self::bad_request("invalid_messages", e.to_string()),
            EngineError::EmptyPrompt => Self::bad_request("invalid_prompt", e.to_string()),
            EngineError::InvalidSampling(_) => {
                Self::bad_request("invalid_logit_bias", e.to_string())
            }
            EngineError::InvalidInput(_) => Self::bad_request("invalid_input", e.to_string()),
            EngineError::Unsupported(_) => Self::bad_request("model_not_supported", e.to_string()),
            EngineError::InvalidConstraint(_) => Self::bad_request("invalid_schema", e.to_string()),
            EngineError::QueueFull { .. } => Self::unavailable("queue_full", e.to_string()),
            EngineError::BadModelFile { .. } => Self::server("model_load_failed", e.to_string()),
            EngineError::Internal(_) => Self::server("engine_error", e.to_string()),
        }
    }
}
