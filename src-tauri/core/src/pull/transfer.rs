//! One file over HTTP into a partial file: resumed where it stopped (HTTP `Range`), after a
//! dropped connection or a later start, and checked against the sha256 the Hub names for it
//! (`X-Linked-Etag`) before it counts as done.

use std::path::Path;
use std::time::Duration;

use reqwest::header::{HeaderMap, AUTHORIZATION, CONTENT_LENGTH, ETAG, LOCATION, RANGE};
use reqwest::StatusCode;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::hub::sha256_of_etag;

/// Times a dropped connection is resumed before the pull fails.
const RETRIES: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("{0}")]
    Refused(String),
    /// The Hub answered with an error status.
    #[error("{message}")]
    Hub { status: u16, message: String },
    #[error("cannot reach {url}: {error}")]
    Unreachable { url: String, error: String },
    #[error("the connection dropped {RETRIES} times in a row; the part fetched is kept, and the next pull resumes it: {0}")]
    Dropped(String),
    #[error("the file's sha256 is {got}, not {expected} as the Hub says: it is not kept")]
    Checksum { expected: String, got: String },
    #[error("the file is {got} bytes, not {expected} as the Hub says: it is not kept")]
    Size { expected: u64, got: u64 },
    #[error("not enough disk space: the download needs {missing} more bytes ({needed} to write and {reserve} to leave free, {available} available)", missing = .needed + .reserve - .available)]
    Space {
        needed: u64,
        available: u64,
        reserve: u64,
    },
    #[error("the disk filled up during the download with {left} bytes still to write; what was downloaded is deleted to give the space back")]
    DiskFull { left: u64 },
    #[error("cannot write the download: {0}")]
    Io(#[from] std::io::Error),
    #[error("cancelled")]
    Cancelled,
}

/// What the Hub says of a file before it is fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    /// Where its bytes are (the Hub's redirect to its storage, or the URL itself).
    pub location: String,
    pub size: u64,
    pub sha256: Option<String>,
}

/// Asks `url` what it is, without fetching it; `listed` is its size as the repo's listing gave
/// it, for an answer that leaves the size out. A token goes only to the Hub itself, never to
/// the storage it redirects to.
pub async fn inspect(
    url: &str,
    token: Option<&str>,
    listed: Option<u64>,
) -> Result<Remote, TransferError> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(15))
        .build()
        .map_err(|e| TransferError::Unreachable {
            url: url.into(),
            error: e.to_string(),
        })?;
    let mut request = client.head(url);
    if let Some(token) = token {
        request = request.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    let response = request
        .send()
        .await
        .map_err(|e| TransferError::Unreachable {
            url: url.into(),
            error: e.to_string(),
        })?;
    let status = response.status();
    let headers = response.headers();
    let text = |h: &HeaderMap, name: &str| {
        h.get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    match status {
        s if s.is_redirection() => {
            let to = text(headers, LOCATION.as_str())
                .ok_or_else(|| TransferError::Refused(format!("{url} redirects nowhere")))?;
            let location = reqwest::Url::parse(url)
                .and_then(|base| base.join(&to))
                .map_err(|e| {
                    TransferError::Refused(format!("{url} redirects to a bad address: {e}"))
                })?
                .to_string();
            let size = text(headers, "x-linked-size")
                .and_then(|s| s.parse().ok())
                .or(listed)
                .ok_or_else(|| {
                    TransferError::Refused(format!("{url} gives no size (X-Linked-Size)"))
                })?;
            let etag = text(headers, "x-linked-etag").or_else(|| text(headers, ETAG.as_str()));
            Ok(Remote {
                location,
                size,
                sha256: etag.as_deref().and_then(sha256_of_etag),
            })
        }
        StatusCode::OK => {
            let size = text(headers, CONTENT_LENGTH.as_str())
                .and_then(|s| s.parse().ok())
                .or(listed)
                .ok_or_else(|| TransferError::Refused(format!("{url} gives no size")))?;
            let etag = text(headers, "x-linked-etag").or_else(|| text(headers, ETAG.as_str()));
            Ok(Remote {
                location: url.to_string(),
                size,
                sha256: etag.as_deref().and_then(sha256_of_etag),
            })
        }
        status => Err(refusal(url, status)),
    }
}

/// Why the Hub refused `url`, in words a user can act on.
pub(super) fn refusal(url: &str, status: StatusCode) -> TransferError {
    let message = match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => format!(
            "{url} needs access: the repo is gated or private; accept its terms on the Hub and set a Hugging Face token in Preferences (or HF_TOKEN) (status {status})"
        ),
        StatusCode::NOT_FOUND => format!("{url} was not found on the Hub"),
        _ => format!("{url} answered {status}"),
    };
    TransferError::Hub {
        status: status.as_u16(),
        message,
    }
}

/// Fetches `remote` into `part`, from the bytes `part` already holds; `progress` hears the
/// bytes held after each write. On success `part` holds the whole, checked file. `token` is
/// sent as is: the caller passes it only when the Hub serves the file itself (a small file),
/// never for the storage it redirects to; reqwest drops it on a redirect to another host.
pub async fn fetch(
    remote: &Remote,
    part: &Path,
    token: Option<&str>,
    cancel: &CancellationToken,
    mut progress: impl FnMut(u64),
) -> Result<(), TransferError> {
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(15))
        // A stalled connection counts as dropped, and is resumed.
        .read_timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| TransferError::Unreachable {
            url: remote.location.clone(),
            error: e.to_string(),
        })?;
    let mut hasher = Sha256::new();
    let mut held = hash_existing(part, &mut hasher).await?;
    if held > remote.size {
        // Not a beginning of this file: start again.
        tokio::fs::remove_file(part).await?;
        hasher = Sha256::new();
        held = 0;
    }
    progress(held);
    let mut failures = 0;
    while held < remote.size {
        let mut request = client.get(&remote.location);
        if let Some(token) = token {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        if held > 0 {
            request = request.header(RANGE, format!("bytes={held}-"));
        }
        let sent = tokio::select! {
            () = cancel.cancelled() => return Err(TransferError::Cancelled),
            sent = request.send() => sent,
        };
        let mut response = match sent {
            Ok(response) => response,
            Err(e) => {
                failures += 1;
                if failures > RETRIES {
                    return Err(TransferError::Dropped(e.to_string()));
                }
                tokio::time::sleep(Duration::from_millis(250 * u64::from(failures))).await;
                continue;
            }
        };
        match response.status() {
            StatusCode::PARTIAL_CONTENT => {}
            // The server sends the whole file whatever was asked: start from its first byte.
            StatusCode::OK if held > 0 => {
                tokio::fs::remove_file(part).await?;
                hasher = Sha256::new();
                held = 0;
            }
            StatusCode::OK => {}
            status => {
                return Err(TransferError::Refused(format!(
                    "{} answered {status}",
                    remote.location
                )))
            }
        }
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(part)
            .await?;
        loop {
            let chunk = tokio::select! {
                () = cancel.cancelled() => {
                    file.flush()
                        .await
                        .map_err(|e| write_error(e, remote.size - held))?;
                    return Err(TransferError::Cancelled);
                }
                chunk = response.chunk() => chunk,
            };
            match chunk {
                Ok(Some(bytes)) => {
                    let room = remote.size - held;
                    let bytes =
                        &bytes[..bytes.len().min(usize::try_from(room).unwrap_or(usize::MAX))];
                    file.write_all(bytes)
                        .await
                        .map_err(|e| write_error(e, remote.size - held))?;
                    hasher.update(bytes);
                    held += bytes.len() as u64;
                    failures = 0;
                    progress(held);
                    if held == remote.size {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    failures += 1;
                    tracing::info!(
                        received = held,
                        failures,
                        "the download's connection dropped: {e}"
                    );
                    if failures > RETRIES {
                        file.flush()
                            .await
                            .map_err(|e| write_error(e, remote.size - held))?;
                        return Err(TransferError::Dropped(e.to_string()));
                    }
                    break;
                }
            }
        }
        file.flush()
            .await
            .map_err(|e| write_error(e, remote.size - held))?;
        file.sync_all()
            .await
            .map_err(|e| write_error(e, remote.size - held))?;
        if held < remote.size && failures > 0 {
            tokio::time::sleep(Duration::from_millis(250 * u64::from(failures))).await;
        } else if held < remote.size {
            // The body ended early without an error: as a drop.
            failures += 1;
            if failures > RETRIES {
                return Err(TransferError::Dropped(
                    "the server ended the body early".into(),
                ));
            }
        }
    }
    let got = tokio::fs::metadata(part).await?.len();
    if got != remote.size {
        tokio::fs::remove_file(part).await?;
        return Err(TransferError::Size {
            expected: remote.size,
            got,
        });
    }
    if let Some(expected) = &remote.sha256 {
        let got = format!("{:x}", hasher.finalize());
        if &got != expected {
            tokio::fs::remove_file(part).await?;
            return Err(TransferError::Checksum {
                expected: expected.clone(),
                got,
            });
        }
    }
    Ok(())
}

/// A failed write as the user should hear of it: a full disk by that name, with the bytes
/// still to write (`left`).
fn write_error(e: std::io::Error, left: u64) -> TransferError {
    if e.kind() == std::io::ErrorKind::StorageFull {
        TransferError::DiskFull { left }
    } else {
        e.into()
    }
}

/// Feeds what `part` already holds to `hasher`; its length (0 if there is none).
async fn hash_existing(part: &Path, hasher: &mut Sha256) -> Result<u64, TransferError> {
    let mut file = match tokio::fs::File::open(part).await {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    let mut buffer = vec![0u8; 1 << 20];
    let mut held = 0u64;
    loop {
        let n = file.read(&mut buffer).await?;
        if n == 0 {
            return Ok(held);
        }
        hasher.update(&buffer[..n]);
        held += n as u64;
    }
}
