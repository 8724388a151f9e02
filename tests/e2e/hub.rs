//! A local stand-in for the Hugging Face Hub, with its URL layout and headers: `HEAD`/`GET
//! /<org>/<repo>/resolve/main/<file>` answers 302 to its storage (`/cdn/<name>`) with
//! `X-Linked-Etag` (the sha256, quoted), `X-Linked-Size` and `ETag` for an LFS file, and serves
//! a small (git) file itself with its git id as `ETag`; the storage serves the bytes with
//! `Content-Length` and honours `Range: bytes=N-` with 206. `GET
//! /api/models/<org>/<repo>/tree/main` lists a repo's files as the Hub does (with `lfs.oid`,
//! the sha256, for LFS files). It can drop the connection once partway, send bytes slowly,
//! name a wrong sha256, claim a huge size, or ask for a token. Every storage request's `Range`
//! is recorded, and whether it carried a token.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures::StreamExt;

/// How the Hub serves one file.
#[derive(Clone, Default)]
pub struct Served {
    pub bytes: Arc<Vec<u8>>,
    pub sha256: String,
    /// Cut the first body after this many bytes (a dropped connection).
    pub drop_once_at: Option<u64>,
    /// Send 256 KiB every this long.
    pub pace: Option<Duration>,
    /// Claim this size instead of the real one.
    pub claimed_size: Option<u64>,
    /// Answer 401 unless `Authorization: Bearer <this>` comes, as a gated repo does.
    pub token: Option<String>,
    /// A small file kept in git, not LFS: served by the Hub itself, with no sha256.
    pub small: bool,
}

impl Served {
    /// A file with these bytes, its sha256 computed.
    pub fn of(bytes: Vec<u8>) -> Self {
        use sha2::Digest;
        let sha256 = format!("{:x}", sha2::Sha256::digest(&bytes));
        Self {
            bytes: Arc::new(bytes),
            sha256,
            ..Self::default()
        }
    }
}

#[derive(Clone, Default)]
struct Hub {
    files: Arc<Mutex<HashMap<String, Served>>>,
    ranges: Arc<Mutex<Vec<String>>>,
    storage_tokens: Arc<Mutex<usize>>,
    dropped: Arc<Mutex<bool>>,
}

pub struct HubServer {
    pub url: String,
    hub: Hub,
    task: tokio::task::JoinHandle<()>,
}

impl HubServer {
    pub async fn start() -> Self {
        let hub = Hub::default();
        let app = Router::new()
            .route(
                "/{org}/{repo}/resolve/main/{*file}",
                axum::routing::any(resolve),
            )
            .route(
                "/api/models/{org}/{repo}/tree/main",
                axum::routing::get(tree),
            )
            .route("/cdn/{name}", axum::routing::get(cdn))
            .with_state(hub.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, hub, task }
    }

    /// Serves `served` as `file` of `repo`.
    pub fn add(&self, repo: &str, file: &str, served: Served) {
        let mut files = self.hub.files.lock().expect("files");
        files.insert(format!("{repo}/{file}"), served);
    }

    /// The `Range` headers the storage was asked with ("" for none), in order.
    pub fn ranges(&self) -> Vec<String> {
        self.hub.ranges.lock().expect("ranges").clone()
    }

    /// Storage requests that carried an `Authorization` header (a token leaked past the Hub).
    pub fn storage_tokens(&self) -> usize {
        *self.hub.storage_tokens.lock().expect("tokens")
    }
}

impl Drop for HubServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The name a file is stored under: its path with the slashes replaced.
fn storage_name(key: &str) -> String {
    key.replace('/', "--")
}

/// Whether a request may see `served`: it needs no token, or the request brings it.
fn allowed(served: &Served, headers: &HeaderMap) -> bool {
    served.token.as_ref().is_none_or(|token| {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            == Some(format!("Bearer {token}").as_str())
    })
}

fn restricted() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        "Access to this repo is restricted",
    )
        .into_response()
}

/// The repo's files as the Hub lists them.
async fn tree(
    State(hub): State<Hub>,
    Path((org, repo)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let prefix = format!("{org}/{repo}/");
    let files = hub.files.lock().expect("files").clone();
    let mut listed: Vec<(&String, &Served)> = files
        .iter()
        .filter(|(key, _)| key.starts_with(&prefix))
        .collect();
    if listed.is_empty() {
        return (StatusCode::NOT_FOUND, "Repository not found").into_response();
    }
    if listed.iter().any(|(_, s)| !allowed(s, &headers)) {
        return restricted();
    }
    listed.sort_by_key(|(key, _)| key.as_str());
    let entries: Vec<serde_json::Value> = listed
        .iter()
        .map(|(key, served)| {
            let size = served.bytes.len();
            let mut entry = serde_json::json!({
                "type": "file",
                "oid": git_id(&served.bytes),
                "size": size,
                "path": &key[prefix.len()..],
            });
            if !served.small {
                entry["lfs"] =
                    serde_json::json!({"oid": served.sha256, "size": size, "pointerSize": 134});
            }
            entry
        })
        .collect();
    axum::Json(entries).into_response()
}

/// A file's git blob id, as the Hub gives small files for their `ETag`.
fn git_id(bytes: &[u8]) -> String {
    use sha1::Digest;
    let mut hasher = sha1::Sha1::new();
    hasher.update(format!("blob {}\0", bytes.len()));
    hasher.update(bytes);
    format!("{:x}", hasher.finalize())
}

async fn resolve(
    State(hub): State<Hub>,
    method: Method,
    Path((org, repo, file)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let key = format!("{org}/{repo}/{file}");
    let Some(served) = hub.files.lock().expect("files").get(&key).cloned() else {
        return (StatusCode::NOT_FOUND, "Entry not found").into_response();
    };
    if !allowed(&served, &headers) {
        return restricted();
    }
    let size = served.claimed_size.unwrap_or(served.bytes.len() as u64);
    if served.small {
        // The Hub serves a git file itself: 200, its git id as the ETag.
        let response = Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_LENGTH, size.to_string())
            .header(header::ETAG, format!("\"{}\"", git_id(&served.bytes)));
        let body = if method == Method::HEAD {
            Body::empty()
        } else {
            Body::from(served.bytes.to_vec())
        };
        return response.body(body).expect("response");
    }
    Response::builder()
        .status(StatusCode::FOUND)
        .header(header::LOCATION, format!("/cdn/{}", storage_name(&key)))
        .header("x-linked-etag", format!("\"{}\"", served.sha256))
        .header("x-linked-size", size.to_string())
        .header(header::ETAG, format!("\"{}\"", served.sha256))
        .body(Body::empty())
        .expect("response")
}

async fn cdn(State(hub): State<Hub>, Path(name): Path<String>, headers: HeaderMap) -> Response {
    if headers.contains_key(header::AUTHORIZATION) {
        *hub.storage_tokens.lock().expect("tokens") += 1;
    }
    let served = {
        let files = hub.files.lock().expect("files");
        files
            .iter()
            .find(|(key, _)| storage_name(key) == name)
            .map(|(_, s)| s.clone())
    };
    let Some(served) = served else {
        return (StatusCode::NOT_FOUND, "no such object").into_response();
    };
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    hub.ranges.lock().expect("ranges").push(range.clone());
    let total = served.bytes.len() as u64;
    let start: u64 = range
        .strip_prefix("bytes=")
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
        .min(total);
    let cut = {
        let mut dropped = hub.dropped.lock().expect("dropped");
        match served.drop_once_at {
            Some(at) if !*dropped && at > start => {
                *dropped = true;
                Some(at)
            }
            _ => None,
        }
    };
    let bytes = Arc::clone(&served.bytes);
    let chunk = 256 * 1024;
    let pace = served.pace;
    let end = total;
    let stream = futures::stream::unfold(start, move |at| {
        let bytes = Arc::clone(&bytes);
        async move {
            if at >= end {
                return None;
            }
            if let Some(cut) = cut {
                if at >= cut {
                    // A dropped connection: the body ends in an error.
                    return Some((Err(std::io::Error::other("connection dropped")), end));
                }
            }
            if let Some(pace) = pace {
                tokio::time::sleep(pace).await;
            }
            let stop = (at + chunk).min(end).min(cut.unwrap_or(end).max(at + 1));
            let piece = bytes[at as usize..stop as usize].to_vec();
            Some((Ok::<_, std::io::Error>(piece), stop))
        }
    })
    .boxed();
    let mut response = Response::builder()
        .header(header::CONTENT_LENGTH, (total - start).to_string())
        .header(header::ETAG, format!("\"{}\"", served.sha256))
        .header(header::ACCEPT_RANGES, "bytes");
    response = if start > 0 {
        response.status(StatusCode::PARTIAL_CONTENT).header(
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{total}", total - 1),
        )
    } else {
        response.status(StatusCode::OK)
    };
    response.body(Body::from_stream(stream)).expect("response")
}
