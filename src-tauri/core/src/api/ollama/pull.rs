//! `/api/pull` for Ollama clients, for the names Ollama itself pulls from Hugging Face:
//! `hf.co/<org>/<repo>[:<tag>]`. The tag chooses the GGUF file as Ollama does (`Q4_K_M` by
//! default); an MLX repo comes whole. The pull is the same as `POST /api/models/pull`
//! (staged, resumed, checked, at most three at once), and the name pulled by goes on naming
//! the model. Progress streams as Ollama's NDJSON lines (`pulling manifest`, `pulling …` with
//! `total` and `completed`, `success`), or one line at the end with `"stream": false`.
//!
//! Names of Ollama's own registry (`llama3.2:3b`) are refused: Headroom does not reach
//! registry.ollama.ai, and `ollama pull` already fills Ollama's store, which Headroom serves.
//! A client that disconnects leaves the pull running, as `DELETE /api/models/pulls/{model}`
//! can still cancel it.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{decode, OllamaError};
use crate::api::error::ApiError;
use crate::api::AppState;
use crate::pull::repo::{choose_gguf, paths, Contents};
use crate::pull::{PullError, PullState, PullStatus};

#[derive(Debug, Deserialize)]
pub struct PullRequest {
    /// `model`, or `name` as older clients send it.
    #[serde(alias = "name")]
    pub model: String,
    pub stream: Option<bool>,
}

/// How often a streaming pull reports.
const REPORT: Duration = Duration::from_millis(250);

/// A Hugging Face name as Ollama writes it: the repo, and the tag if one is given.
pub fn hub_name(name: &str) -> Option<(&str, Option<&str>)> {
    let rest = name
        .strip_prefix("hf.co/")
        .or_else(|| name.strip_prefix("huggingface.co/"))?;
    let (repo, tag) = match rest.rsplit_once(':') {
        Some((repo, tag)) => (repo, Some(tag)),
        None => (rest, None),
    };
    Some((repo, tag.filter(|t| !t.is_empty())))
}

/// The name as Ollama keeps it: with its tag, `latest` if none was given.
pub fn tagged(name: &str) -> String {
    match hub_name(name) {
        Some((_, None)) => format!("{}:latest", name.trim_end_matches(':')),
        _ => name.to_string(),
    }
}

pub async fn pull(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OllamaError> {
    let request: PullRequest = decode(body)?;
    let stream = request.stream != Some(false);
    let name = request.model.trim();
    let Some((repo, tag)) = hub_name(name) else {
        return Err(ApiError::bad_request(
            "not_supported",
            format!("'{name}' is a name of Ollama's registry, which Headroom does not pull from: pull it with `ollama pull` (Headroom serves Ollama's store), or pull from Hugging Face as hf.co/<org>/<repo>:<quant>"),
        )
        .into());
    };
    let name = tagged(name);
    let file = match state.pulls.contents(repo).await.map_err(ApiError::from)? {
        Contents::Gguf(entries) => {
            let files = paths(&entries);
            Some(
                choose_gguf(&files, tag)
                    .ok_or_else(|| {
                        ApiError::not_found(
                            "model_not_found",
                            format!(
                                "{repo} has no GGUF file for the tag '{}': its files are {}",
                                tag.unwrap_or("latest"),
                                files.join(", ")
                            ),
                        )
                    })?
                    .to_string(),
            )
        }
        Contents::Mlx(_) => None,
        Contents::Neither => {
            return Err(ApiError::from(PullError::NotAModel(repo.to_string())).into())
        }
    };
    let started = match state
        .pulls
        .start_as(repo, file.as_deref(), Some(&name))
        .await
    {
        Ok(started) => started,
        // Already pulled from this repo: this name names it from now on. A model of the same
        // name from anywhere else is not taken for it.
        Err(PullError::Exists(model)) => {
            let same = state
                .pulls
                .origins()
                .get(&model)
                .is_some_and(|o| o.repo == repo && o.file == file);
            if !same {
                return Err(ApiError::from(PullError::Exists(model)).into());
            }
            state.pulls.name(&model, repo, file.as_deref(), &name);
            return Ok(done_at_once(stream));
        }
        Err(e) => return Err(ApiError::from(e).into()),
    };
    if !stream {
        let ended = state.pulls.wait(&started.model).await;
        return Ok(match ended {
            Some(s) if s.state == PullState::Done => {
                Json(json!({"status": "success"})).into_response()
            }
            other => OllamaError(ApiError::server("pull_failed", failure(other.as_ref())))
                .into_response(),
        });
    }
    let pulls = state.pulls.clone();
    let model = started.model.clone();
    let first = Bytes::from(format!("{}\n", json!({"status": "pulling manifest"})));
    let lines = futures::stream::unfold(Some(false), move |phase| {
        let pulls = pulls.clone();
        let model = model.clone();
        let first = first.clone();
        async move {
            let reported = phase?;
            if !reported {
                return Some((Ok::<_, Infallible>(first), Some(true)));
            }
            tokio::time::sleep(REPORT).await;
            let status = pulls.status(&model);
            let (text, more) = match status.as_ref().map(|s| s.state) {
                Some(PullState::Downloading) => (progress_line(status.as_ref()), true),
                Some(PullState::Done) => (
                    [
                        json!({"status": "verifying sha256 digest"}),
                        json!({"status": "writing manifest"}),
                        json!({"status": "success"}),
                    ]
                    .iter()
                    .map(|l| format!("{l}\n"))
                    .collect(),
                    false,
                ),
                _ => (
                    format!("{}\n", json!({"error": failure(status.as_ref())})),
                    false,
                ),
            };
            Some((Ok(Bytes::from(text)), more.then_some(true)))
        }
    });
    Ok(ndjson(Body::from_stream(lines)))
}

/// A line of progress: Ollama's `pulling <layer>` with bytes total and done.
fn progress_line(status: Option<&PullStatus>) -> String {
    let Some(s) = status else {
        return String::new();
    };
    let layer = s.file.as_deref().unwrap_or(&s.model);
    let line: Value = if s.total == 0 {
        json!({"status": format!("pulling {layer}")})
    } else {
        json!({
            "status": format!("pulling {layer}"),
            "digest": layer,
            "total": s.total,
            "completed": s.received,
        })
    };
    format!("{line}\n")
}

fn failure(status: Option<&PullStatus>) -> String {
    match status {
        Some(s) if s.state == PullState::Cancelled => "the pull was cancelled".into(),
        Some(s) => s.error.clone().unwrap_or_else(|| "the pull failed".into()),
        None => "the pull vanished".into(),
    }
}

fn done_at_once(stream: bool) -> Response {
    if stream {
        ndjson(Body::from(format!("{}\n", json!({"status": "success"}))))
    } else {
        Json(json!({"status": "success"})).into_response()
    }
}

fn ndjson(body: Body) -> Response {
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/x-ndjson"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hugging_face_names_are_read_as_ollama_writes_them() {
        assert_eq!(
            hub_name("hf.co/bartowski/SmolLM2-135M-Instruct-GGUF:Q4_1"),
            Some(("bartowski/SmolLM2-135M-Instruct-GGUF", Some("Q4_1")))
        );
        assert_eq!(
            hub_name("huggingface.co/org/repo"),
            Some(("org/repo", None))
        );
        assert_eq!(hub_name("hf.co/org/repo:"), Some(("org/repo", None)));
        assert_eq!(hub_name("llama3.2:3b"), None);
        assert_eq!(tagged("hf.co/org/repo"), "hf.co/org/repo:latest");
        assert_eq!(tagged("hf.co/org/repo:Q4_1"), "hf.co/org/repo:Q4_1");
        assert_eq!(
            tagged("huggingface.co/org/repo"),
            "huggingface.co/org/repo:latest"
        );
    }
}
