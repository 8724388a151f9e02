//! Getting and removing models: `POST /api/models/pull` starts a pull from the Hub (a GGUF file,
//! or an MLX repo whole; progress as `pull` events), `GET /api/models/pulls` lists this run's pulls, `DELETE
//! /api/models/pulls/{model}` cancels one, and `DELETE /api/models/{id}` deletes a model from
//! Headroom's own folder, never from another app's store or a folder the user added.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::error::ApiError;
use crate::api::AppState;
use crate::pull::repo::Contents;
use crate::pull::PullError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullRequest {
    /// `org/name` on the Hub.
    pub repo: String,
    /// A GGUF file in it; left out for an MLX repo, pulled whole.
    #[serde(default)]
    pub file: Option<String>,
}

impl From<PullError> for ApiError {
    fn from(e: PullError) -> Self {
        match e {
            PullError::Name(_) | PullError::ChooseFile { .. } | PullError::NotAModel(_) => {
                ApiError::bad_request("invalid_pull", e.to_string())
            }
            // The Hub cannot be reached: a gateway's failure, not the caller's.
            PullError::Listing {
                error: crate::pull::TransferError::Unreachable { .. },
                ..
            } => ApiError::bad_request("hub_unreachable", e.to_string())
                .with_status(StatusCode::BAD_GATEWAY),
            // The Hub's own answer: not there, or not without a token; anything else is the
            // Hub failing, a gateway's error.
            PullError::Listing {
                error: crate::pull::TransferError::Hub { status, .. },
                ..
            } => {
                let status = match status {
                    404 => StatusCode::NOT_FOUND,
                    401 | 403 => StatusCode::FORBIDDEN,
                    _ => StatusCode::BAD_GATEWAY,
                };
                ApiError::bad_request("repo_not_available", e.to_string()).with_status(status)
            }
            PullError::Listing { .. } => ApiError::bad_request("hub_error", e.to_string())
                .with_status(StatusCode::BAD_GATEWAY),
            PullError::TooMany => ApiError::bad_request("too_many_pulls", e.to_string())
                .with_status(StatusCode::TOO_MANY_REQUESTS),
            PullError::Running(_) | PullError::Exists(_) => {
                ApiError::bad_request("pull_conflict", e.to_string())
                    .with_status(StatusCode::CONFLICT)
            }
            PullError::NotRunning(_) => ApiError::not_found("pull_not_running", e.to_string()),
        }
    }
}

pub async fn start(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let bytes = body.map_err(|r| ApiError::bad_request("invalid_body", r.body_text()))?;
    let request: PullRequest = crate::api::body::decode(&bytes)?;
    let status = state
        .pulls
        .start(&request.repo, request.file.as_deref())
        .await?;
    Ok((StatusCode::ACCEPTED, Json(json!(status))))
}

/// `GET /api/hub/{org}/{name}`: what a Hub repo holds, so a form can offer its files: an MLX
/// repo's files (pulled together), or its GGUF files to choose from, each with its size.
pub async fn repo(
    State(state): State<AppState>,
    Path((org, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let repo = format!("{org}/{name}");
    let files = |entries: Vec<&crate::pull::repo::TreeEntry>| {
        entries
            .iter()
            .map(|e| json!({"file": e.path, "size": e.size}))
            .collect::<Vec<_>>()
    };
    let (kind, listed) = match state.pulls.contents(&repo).await? {
        Contents::Mlx(pieces) => ("mlx", files(pieces.iter().map(|(_, e)| e).collect())),
        Contents::Gguf(entries) => ("gguf", files(entries.iter().collect())),
        Contents::Neither => ("neither", Vec::new()),
    };
    let total: u64 = listed.iter().filter_map(|f| f["size"].as_u64()).sum();
    Ok(Json(
        json!({ "repo": repo, "kind": kind, "files": listed, "total": total }),
    ))
}

pub async fn list(State(state): State<AppState>) -> Json<Value> {
    Json(json!({ "pulls": state.pulls.list() }))
}

pub async fn cancel(
    State(state): State<AppState>,
    Path(model): Path<String>,
) -> Result<Json<Value>, ApiError> {
    state.pulls.cancel(&model)?;
    Ok(Json(json!({ "model": model, "cancelled": true })))
}

/// Deletes a model file (or MLX folder) from Headroom's own model folder; 409 while it is
/// loaded, 403 for a model elsewhere.
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let file = state.catalog.find(&id)?;
    if let Some(source) = file.source {
        return Err(ApiError::bad_request(
            "model_not_deletable",
            format!(
                "'{id}' is in {}'s store: Headroom never deletes another app's models",
                source.label()
            ),
        )
        .with_status(StatusCode::FORBIDDEN));
    }
    let own = state.pulls.folder().canonicalize().ok();
    if own.is_none() || file.path.parent() != own.as_deref() {
        return Err(ApiError::bad_request(
            "model_not_deletable",
            format!(
                "'{id}' is in a model folder you added ({}), not Headroom's own: delete it there",
                file.path
                    .parent()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            ),
        )
        .with_status(StatusCode::FORBIDDEN));
    }
    let pool = state.pool.status().await?;
    if pool.models.iter().any(|m| m.id == id) {
        return Err(ApiError::bad_request(
            "model_loaded",
            format!("'{id}' is loaded: stop it first"),
        )
        .with_status(StatusCode::CONFLICT));
    }
    let path = file.path.clone();
    let removed = tokio::task::spawn_blocking(move || {
        if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        }
    })
    .await
    .map_err(|e| ApiError::server("delete_failed", e.to_string()))?;
    removed.map_err(|e| ApiError::server("delete_failed", format!("cannot delete '{id}': {e}")))?;
    state.pulls.forget(&id);
    tracing::info!(%id, bytes = file.size, "model deleted");
    Ok(Json(
        json!({ "id": id, "deleted": true, "bytes": file.size }),
    ))
}
