//! `/api/tags`, `/api/ps`, `/api/show`, `/api/version`, `/api/embed` (and the older
//! `/api/embeddings`), and the routes that would write, which Headroom does not offer.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{decode, listed_name, model_id, timestamp, OllamaError};
use crate::api::error::ApiError;
use crate::api::AppState;
use crate::engine::embed::normalize;
use crate::engine::EmbedInput;
use crate::models::ModelFile;

/// The version Headroom reports: its own.
pub async fn version() -> Json<Value> {
    Json(json!({ "version": env!("CARGO_PKG_VERSION") }))
}

/// A digest of what names the file (its path, size and modification time): stable while the
/// file is, and cheap. Ollama's is the blob's sha256; hashing gigabytes per listing is not.
fn digest(file: &ModelFile) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    file.path.hash(&mut hasher);
    file.size.hash(&mut hasher);
    file.version.hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

fn details() -> Value {
    json!({ "format": "gguf", "family": "", "families": null, "parameter_size": "", "quantization_level": "" })
}

fn modified_at(file: &ModelFile) -> String {
    let ms = std::fs::metadata(&file.path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0));
    timestamp(ms)
}

/// Every model on disk.
pub async fn tags(State(state): State<AppState>) -> Json<Value> {
    let origins = state.pulls.origins();
    let models: Vec<Value> = state
        .catalog
        .list()
        .iter()
        .map(|file| {
            let name = listed_name(&origins, &file.id);
            json!({
                "name": name,
                "model": name,
                "modified_at": modified_at(file),
                "size": file.size,
                "digest": digest(file),
                "details": details(),
            })
        })
        .collect();
    Json(json!({ "models": models }))
}

/// The loaded models, with the memory each really holds (Ollama reports its estimate).
pub async fn ps(State(state): State<AppState>) -> Result<Json<Value>, OllamaError> {
    let pool = state.pool.status().await.map_err(ApiError::from)?;
    let origins = state.pulls.origins();
    let models: Vec<Value> = pool
        .models
        .iter()
        .map(|m| {
            let size = m.memory.map_or(m.estimate.total, |f| f.total);
            let digest = state.catalog.find(&m.id).map(|f| digest(&f)).unwrap_or_default();
            let name = listed_name(&origins, &m.id);
            json!({
                "name": name,
                "model": name,
                "size": size,
                "digest": digest,
                "details": details(),
                // Ollama's far future for "never".
                "expires_at": m.expires_at.map_or_else(|| "2318-01-01T00:00:00Z".to_string(), timestamp),
                "size_vram": 0,
            })
        })
        .collect();
    Ok(Json(json!({ "models": models })))
}

#[derive(Debug, Deserialize)]
pub struct ShowRequest {
    /// `model`, or `name` as older clients send it.
    pub model: Option<String>,
    pub name: Option<String>,
}

/// What a model is, from its file (the model is not loaded for it).
pub async fn show(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, OllamaError> {
    let request: ShowRequest = decode(body)?;
    let name = request
        .model
        .or(request.name)
        .ok_or_else(|| ApiError::bad_request("invalid_request", "'model' is required"))?;
    let file = state
        .catalog
        .find(&model_id(&state, &name)?)
        .map_err(ApiError::from)?;
    Ok(Json(json!({
        "modelfile": format!("FROM {}\n", file.path.display()),
        "parameters": "",
        "template": "",
        "details": details(),
        "model_info": { "general.file_size": file.size },
        "capabilities": ["completion"],
        "modified_at": modified_at(&file),
    })))
}

#[derive(Debug, Deserialize)]
pub struct EmbedRequest {
    pub model: String,
    /// `/api/embed`: a string or strings.
    pub input: Option<Value>,
    /// `/api/embeddings` (older): one string.
    pub prompt: Option<String>,
    pub keep_alive: Option<Value>,
}

async fn embed_vectors(
    state: &AppState,
    request: &EmbedRequest,
    inputs: Vec<EmbedInput>,
) -> Result<(Vec<Vec<f32>>, u32), ApiError> {
    let keep_alive = match &request.keep_alive {
        None => None,
        Some(value) => super::settings(None, Some(value))?.keep_alive,
    };
    let file = state.catalog.find(&model_id(state, &request.model)?)?;
    let model = state.pool.acquire(file, keep_alive).await?;
    let mut embeddings = model.embed(inputs)?.wait().await?;
    for vector in &mut embeddings.vectors {
        normalize(vector);
    }
    Ok((embeddings.vectors, embeddings.prompt_tokens))
}

pub async fn embed(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, OllamaError> {
    let request: EmbedRequest = decode(body)?;
    let inputs = match &request.input {
        Some(Value::String(text)) => vec![EmbedInput::Text(text.clone())],
        Some(Value::Array(list)) if !list.is_empty() && list.iter().all(Value::is_string) => list
            .iter()
            .filter_map(Value::as_str)
            .map(|t| EmbedInput::Text(t.to_string()))
            .collect(),
        _ => {
            return Err(ApiError::bad_request(
                "invalid_input",
                "'input' must be a string or a non-empty list of strings",
            )
            .into())
        }
    };
    if inputs
        .iter()
        .any(|i| matches!(i, EmbedInput::Text(t) if t.is_empty()))
    {
        return Err(ApiError::bad_request("invalid_input", "an input is empty").into());
    }
    let started = std::time::Instant::now();
    let (vectors, tokens) = embed_vectors(&state, &request, inputs).await?;
    Ok(Json(json!({
        "model": request.model,
        "embeddings": vectors,
        "total_duration": u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX),
        "prompt_eval_count": tokens,
    })))
}

pub async fn embeddings(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, OllamaError> {
    let request: EmbedRequest = decode(body)?;
    let prompt = request
        .prompt
        .clone()
        .filter(|p| !p.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request("invalid_input", "'prompt' must be a non-empty string")
        })?;
    let (vectors, _) = embed_vectors(&state, &request, vec![EmbedInput::Text(prompt)]).await?;
    Ok(Json(
        json!({ "embedding": vectors.into_iter().next().unwrap_or_default() }),
    ))
}

/// `/api/push`, `/api/create`, `/api/copy`, `/api/delete`: Headroom serves the models in its
/// folders and other apps' stores, and changes them only by its own pull and delete.
pub async fn unsupported() -> OllamaError {
    OllamaError(
        ApiError::bad_request(
            "not_supported",
            "Headroom does not push, create, copy or delete models through Ollama's API: pull with hf.co/<org>/<repo>:<quant>, and delete in Headroom's window or with DELETE /api/models/{id}",
        )
        .with_status(StatusCode::NOT_IMPLEMENTED),
    )
}
