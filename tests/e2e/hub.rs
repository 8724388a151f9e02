//! A local stand-in for the Hugging Face Hub, with its URL layout and headers: `HEAD`/`GET
//! /<org>/<repo>/resolve/main/<file>` answers 302 to its storage (`/cdn/<name>`) with
//! `X-Linked-Etag` (the sha256, quoted), `X-Linked-Size` and `ETag`; the storage serves the
//! bytes with `Content-Length` and honours `Range: bytes=N-` with 206. It can drop the
//! connection once partway, send bytes slowly, name a wrong sha256, claim a huge size, or ask
//! for a token. Every request's `Range` is recorded.

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
    /// Answer 401, as a gated repo does without a token.
    pub gated: bool,
}

#[derive(Clone, Default)]
struct Hub {
    files: Arc<Mutex<HashMap<String, Served>>>,
    ranges: Arc<Mutex<Vec<String>>>,
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

async fn resolve(
    State(hub): State<Hub>,
    method: Method,
    Path((org, repo, file)): Path<(String, String, String)>,
) -> Response {
    let key = format!("{org}/{repo}/{file}");
    let Some(served) = hub.files.lock().expect("files").get(&key).cloned() else {
        return (StatusCode::NOT_FOUND, "Entry not found").into_response();
    };
    if served.gated {
        return (
            StatusCode::UNAUTHORIZED,
            "Access to this repo is restricted",
        )
            .into_response();
    }
    let size = served.claimed_size.unwrap_or(served.bytes.len() as u64);
    let _ = method;
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
