//! Ollama's own API (`/api/chat`, `/api/generate`, `/api/embed`, `/api/tags`, `/api/ps`,
//! `/api/show`, `/api/version`) for the clients that speak it: the `ollama` libraries, Open
//! WebUI, editors' plugins. Translated onto the same generation and pool as the other dialects.
//!
//! Model names: Ollama clients send `name:tag`. A model in Ollama's own store (id
//! `ollama:<name>:<tag>`, see `models::sources`) goes by its Ollama name, `llama3.2` meaning
//! `llama3.2:latest` as in Ollama. Any other model's id is a file name or another app's id, so
//! `id` and `id:latest` both name it, and the lists call it `id:latest`; another tag is not
//! found.

mod generate;
mod models;
mod pull;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::api::error::ApiError;
use crate::api::generation::Settings;
use crate::api::openai::options::GenerationOptions;
use crate::api::AppState;
use crate::models::sources::is_source_id;
use crate::models::SourceKind;

pub use generate::{chat, generate};
pub use models::{embed, embeddings, ps, show, tags, unsupported, version};
pub use pull::pull;

/// A request body read as `T`, or the error saying what is wrong with it.
fn decode<T: serde::de::DeserializeOwned>(
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<T, ApiError> {
    let bytes = body.map_err(|r| ApiError::bad_request("invalid_body", r.body_text()))?;
    crate::api::body::decode(&bytes)
}

/// An error in Ollama's shape, `{"error": "…"}`, with the status the other routes give it.
pub struct OllamaError(pub ApiError);

impl From<ApiError> for OllamaError {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

impl IntoResponse for OllamaError {
    fn into_response(self) -> Response {
        (self.0.status, Json(json!({ "error": self.0.message }))).into_response()
    }
}

/// The ids an Ollama name may mean, in order: the model of that name in Ollama's own store,
/// then Headroom's id for it (`id` or `id:latest`).
fn candidate_ids(name: &str) -> Vec<String> {
    let own = name.strip_suffix(":latest").unwrap_or(name).to_string();
    if is_source_id(name) {
        return vec![own];
    }
    let tagged = if name.contains(':') {
        name.to_string()
    } else {
        format!("{name}:latest")
    };
    vec![format!("{}{tagged}", SourceKind::Ollama.prefix()), own]
}

/// The model id `name` means: the first candidate the catalog has, else Headroom's reading of
/// it, whose lookup then says what is missing.
fn model_id(state: &AppState, name: &str) -> Result<String, ApiError> {
    // A model an Ollama client pulled from Hugging Face, by the name it pulled it with.
    if let Some(id) = state.pulls.pulled_as(&pull::tagged(name)) {
        if state.catalog.find(&id).is_ok() {
            return Ok(id);
        }
    }
    let candidates = candidate_ids(name);
    if let Some(id) = candidates.iter().find(|id| state.catalog.find(id).is_ok()) {
        return Ok(id.clone());
    }
    let id = name.strip_suffix(":latest").unwrap_or(name);
    if id.contains(':') && !is_source_id(id) {
        return Err(ApiError::not_found(
            "model_not_found",
            format!("model '{name}' not found: neither Ollama's store nor Headroom's folders have it (Headroom's own models have only the tag 'latest')"),
        )
        .with_status(StatusCode::NOT_FOUND));
    }
    Ok(id.to_string())
}

/// How the lists name a model: a model of Ollama's store by its Ollama name, any other as
/// `id:latest`.
fn model_name(id: &str) -> String {
    match id.strip_prefix(SourceKind::Ollama.prefix()) {
        Some(name) => name.to_string(),
        None => format!("{id}:latest"),
    }
}

/// How the lists name a model: by the name an Ollama client pulled it with, if it did, else
/// as [`model_name`] says.
fn listed_name(
    origins: &std::collections::BTreeMap<String, crate::pull::record::Origin>,
    id: &str,
) -> String {
    origins
        .get(id)
        .and_then(|o| o.ollama_name.clone())
        .unwrap_or_else(|| model_name(id))
}

/// The time as Ollama writes it (RFC 3339, UTC).
fn timestamp(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let days = i64::try_from(secs / 86_400).unwrap_or_default();
    let (year, month, day) = crate::engine::template::civil_from_days(days);
    let rest = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60,
        unix_ms % 1000
    )
}

/// Ollama's `options` (and `keep_alive`) checked as the OpenAI routes check the same samplers.
/// `num_ctx` is accepted and ignored: the context per request is Headroom's `context_size`.
fn settings(options: Option<&Value>, keep_alive: Option<&Value>) -> Result<Settings, ApiError> {
    let mut mapped = serde_json::Map::new();
    if let Some(Value::Object(options)) = options {
        for key in [
            "temperature",
            "top_k",
            "top_p",
            "min_p",
            "typical_p",
            "repeat_penalty",
            "repeat_last_n",
            "presence_penalty",
            "frequency_penalty",
            "seed",
            "stop",
        ] {
            if let Some(value) = options.get(key) {
                mapped.insert(key.into(), value.clone());
            }
        }
        // -1 (forever) and -2 (fill the context) mean no limit here.
        if let Some(n) = options.get("num_predict").and_then(Value::as_i64) {
            if n > 0 {
                mapped.insert("max_tokens".into(), json!(n));
            }
        }
    } else if let Some(other) = options {
        if !other.is_null() {
            return Err(ApiError::bad_request(
                "invalid_options",
                format!("'options' must be an object, got {other}"),
            ));
        }
    }
    if let Some(keep_alive) = keep_alive {
        mapped.insert("keep_alive".into(), keep_alive.clone());
    }
    let options: GenerationOptions = serde_json::from_value(Value::Object(mapped))
        .map_err(|e| ApiError::bad_request("invalid_options", format!("'options': {e}")))?;
    Ok(options.check(None)?.settings())
}

/// `format`: `"json"` or a JSON Schema.
fn format_schema(format: Option<&Value>) -> Result<Option<Value>, ApiError> {
    match format {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s == "json" => Ok(Some(json!({ "type": "object" }))),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(schema @ Value::Object(_)) => {
            crate::engine::tools::check_schema(schema).map_err(|why| {
                ApiError::bad_request("invalid_format", format!("'format': {why}"))
            })?;
            Ok(Some(schema.clone()))
        }
        Some(other) => Err(ApiError::bad_request(
            "invalid_format",
            format!("'format' must be \"json\" or a JSON Schema, got {other}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_ids_and_back() {
        assert_eq!(candidate_ids("smol"), ["ollama:smol:latest", "smol"]);
        assert_eq!(candidate_ids("smol:latest"), ["ollama:smol:latest", "smol"]);
        assert_eq!(
            candidate_ids("llama3.2:3b"),
            ["ollama:llama3.2:3b", "llama3.2:3b"]
        );
        assert_eq!(
            candidate_ids("hf:org/repo/m.gguf:latest"),
            ["hf:org/repo/m.gguf"]
        );
        assert_eq!(model_name("smol"), "smol:latest");
        assert_eq!(model_name("ollama:llama3.2:3b"), "llama3.2:3b");
        assert_eq!(
            model_name("hf:org/repo/m.gguf"),
            "hf:org/repo/m.gguf:latest"
        );
    }

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(timestamp(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(timestamp(1_764_547_200_123), "2025-12-01T00:00:00.123Z");
    }

    #[test]
    fn options_are_checked_like_the_openai_fields() {
        let s = settings(
            Some(&json!({"temperature": 0, "num_predict": 5, "num_ctx": 8192})),
            None,
        )
        .expect("valid");
        assert_eq!((s.sampling.temperature, s.max_tokens), (Some(0.0), Some(5)));
        assert!(settings(Some(&json!({"temperature": 9})), None).is_err());
        assert!(
            settings(Some(&json!({"num_predict": -1})), None).is_ok_and(|s| s.max_tokens.is_none())
        );
    }
}
