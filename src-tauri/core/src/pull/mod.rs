//! Getting models: a GGUF file pulled from a Hugging Face repo into Headroom's own model folder.
//!
//! A pull is written to `<models>/.partial/<name>.part` (a hidden folder the catalog does not
//! read), resumed from there after a dropped connection or a later pull of the same file,
//! checked against the Hub's sha256, and only then renamed into the model folder: there is never
//! a half file among the models. Disk space is checked first. Progress goes out as `pull`
//! events, at most four a second; Cancel deletes the partial file.

pub mod hub;
pub mod space;
mod transfer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::vocab::Publish;
use hub::HubFile;
pub use transfer::TransferError;

/// Where a pull is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PullState {
    Downloading,
    Done,
    Failed,
    Cancelled,
}

/// A pull as the API and its events show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PullStatus {
    /// The model id the file has once pulled.
    pub model: String,
    pub repo: String,
    pub file: String,
    pub state: PullState,
    pub received: u64,
    /// 0 until the Hub has said.
    pub total: u64,
    pub bytes_per_second: f64,
    pub seconds_left: Option<f64>,
    pub error: Option<String>,
}

/// The `pull` event: a pull started, moved, or ended.
#[derive(Debug, Clone, Serialize)]
pub struct PullEvent {
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(flatten)]
    pub status: PullStatus,
}

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error(transparent)]
    Name(#[from] hub::HubError),
    #[error("'{0}' is already being pulled")]
    Running(String),
    #[error("model '{0}' is already in the model folder")]
    Exists(String),
    #[error("no pull of '{0}' is running")]
    NotRunning(String),
}

struct Entry {
    status: PullStatus,
    cancel: CancellationToken,
}

/// The pulls of this run: running ones, and ended ones until the next pull of the same model.
#[derive(Clone)]
pub struct Pulls {
    folder: PathBuf,
    endpoint: String,
    token: Option<String>,
    entries: Arc<Mutex<BTreeMap<String, Entry>>>,
    publish: Publish<PullEvent>,
}

impl Pulls {
    /// Pulls into `folder` (Headroom's own model folder) from `endpoint` (`HF_ENDPOINT`), with
    /// `token` (`HF_TOKEN`) for gated repos.
    pub fn new(
        folder: PathBuf,
        endpoint: String,
        token: Option<String>,
        publish: Publish<PullEvent>,
    ) -> Self {
        Self {
            folder,
            endpoint,
            token,
            entries: Arc::default(),
            publish,
        }
    }

    /// The endpoint and token as huggingface_hub reads them from the environment.
    pub fn from_env(folder: PathBuf, publish: Publish<PullEvent>) -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let endpoint = var("HF_ENDPOINT").unwrap_or_else(|| hub::DEFAULT_ENDPOINT.to_string());
        let token = var("HF_TOKEN").or_else(|| var("HUGGING_FACE_HUB_TOKEN"));
        Self::new(folder, endpoint, token, publish)
    }

    pub fn folder(&self) -> &Path {
        &self.folder
    }

    /// Starts pulling `file` of `repo`; returns at once, the pull going on in a task.
    pub fn start(&self, repo: &str, file: &str) -> Result<PullStatus, PullError> {
        let file = HubFile::new(repo, file)?;
        let model = file.model_id().to_string();
        if self.folder.join(file.local_name()).exists() {
            return Err(PullError::Exists(model));
        }
        let cancel = CancellationToken::new();
        let status = PullStatus {
            model: model.clone(),
            repo: file.repo.clone(),
            file: file.file.clone(),
            state: PullState::Downloading,
            received: 0,
            total: 0,
            bytes_per_second: 0.0,
            seconds_left: None,
            error: None,
        };
        {
            let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            if entries
                .get(&model)
                .is_some_and(|e| e.status.state == PullState::Downloading)
            {
                return Err(PullError::Running(model));
            }
            entries.insert(
                model.clone(),
                Entry {
                    status: status.clone(),
                    cancel: cancel.clone(),
                },
            );
        }
        self.announce(&model);
        let pulls = self.clone();
        tokio::spawn(async move {
            let result = pulls.run(&file, &cancel).await;
            pulls.finish(&file, result);
        });
        Ok(status)
    }

    /// Cancels a running pull; its partial file is deleted.
    pub fn cancel(&self, model: &str) -> Result<(), PullError> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match entries.get(model) {
            Some(entry) if entry.status.state == PullState::Downloading => {
                entry.cancel.cancel();
                Ok(())
            }
            _ => Err(PullError::NotRunning(model.to_string())),
        }
    }

    pub fn list(&self) -> Vec<PullStatus> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.values().map(|e| e.status.clone()).collect()
    }

    pub fn status(&self, model: &str) -> Option<PullStatus> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.get(model).map(|e| e.status.clone())
    }

    /// Waits for the pull of `model` to end; its last status.
    pub async fn wait(&self, model: &str) -> Option<PullStatus> {
        loop {
            let status = self.status(model)?;
            if status.state != PullState::Downloading {
                return Some(status);
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    fn part_path(&self, file: &HubFile) -> PathBuf {
        self.folder
            .join(".partial")
            .join(format!("{}.part", file.local_name()))
    }

    async fn run(&self, file: &HubFile, cancel: &CancellationToken) -> Result<(), TransferError> {
        let url = file.url(&self.endpoint);
        let remote = tokio::select! {
            () = cancel.cancelled() => return Err(TransferError::Cancelled),
            remote = transfer::inspect(&url, self.token.as_deref()) => remote?,
        };
        let part = self.part_path(file);
        if let Some(dir) = part.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        let held = tokio::fs::metadata(&part).await.map_or(0, |m| m.len());
        let needed = remote.size.saturating_sub(held);
        if let Some(available) = space::available(&self.folder) {
            if space::missing(needed, available, space::RESERVE).is_some() {
                return Err(TransferError::Space {
                    needed,
                    available,
                    reserve: space::RESERVE,
                });
            }
        }
        self.update(file.model_id(), |s| s.total = remote.size);
        let model = file.model_id().to_string();
        let mut meter = Meter::new(held);
        let result = transfer::fetch(&remote, &part, cancel, |received| {
            if let Some((speed, announce)) = meter.step(received) {
                self.update(&model, |s| {
                    s.received = received;
                    s.bytes_per_second = speed;
                    s.seconds_left =
                        (speed > 0.0).then(|| remote.size.saturating_sub(received) as f64 / speed);
                });
                if announce {
                    self.announce(&model);
                }
            }
        })
        .await;
        if let Err(TransferError::Cancelled) = result {
            let _ = tokio::fs::remove_file(&part).await;
        }
        result?;
        let target = self.folder.join(file.local_name());
        if tokio::fs::metadata(&target).await.is_ok() {
            let _ = tokio::fs::remove_file(&part).await;
            return Err(TransferError::Refused(format!(
                "{} appeared in the model folder meanwhile; the pulled copy is not kept",
                target.display()
            )));
        }
        tokio::fs::rename(&part, &target).await?;
        self.update(&model, |s| s.received = remote.size);
        Ok(())
    }

    fn finish(&self, file: &HubFile, result: Result<(), TransferError>) {
        let model = file.model_id().to_string();
        match &result {
            Ok(()) => tracing::info!(%model, "pulled {file}"),
            Err(e) => tracing::warn!(%model, "pull of {file} ended: {e}"),
        }
        self.update(&model, |s| {
            s.seconds_left = None;
            match result {
                Ok(()) => s.state = PullState::Done,
                Err(TransferError::Cancelled) => s.state = PullState::Cancelled,
                Err(e) => {
                    s.state = PullState::Failed;
                    s.error = Some(e.to_string());
                }
            }
        });
        self.announce(&model);
    }

    fn update(&self, model: &str, change: impl FnOnce(&mut PullStatus)) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = entries.get_mut(model) {
            change(&mut entry.status);
        }
    }

    fn announce(&self, model: &str) {
        if let Some(status) = self.status(model) {
            (self.publish)(PullEvent {
                kind: "pull",
                status,
            });
        }
    }
}

/// The download's speed, over the last few seconds, and when to say so.
struct Meter {
    started: Instant,
    samples: Vec<(Instant, u64)>,
    last_update: Option<Instant>,
    last_announce: Option<Instant>,
}

/// Updates to the status at most this often, events less often.
const UPDATE: std::time::Duration = std::time::Duration::from_millis(100);
const ANNOUNCE: std::time::Duration = std::time::Duration::from_millis(250);
const SPEED_WINDOW: std::time::Duration = std::time::Duration::from_secs(3);

impl Meter {
    fn new(held: u64) -> Self {
        let now = Instant::now();
        Self {
            started: now,
            samples: vec![(now, held)],
            last_update: None,
            last_announce: None,
        }
    }

    /// `received` bytes held now: the speed and whether to announce it, if it is time to.
    fn step(&mut self, received: u64) -> Option<(f64, bool)> {
        let now = Instant::now();
        if self.last_update.is_some_and(|t| now - t < UPDATE) {
            return None;
        }
        self.last_update = Some(now);
        self.samples.push((now, received));
        self.samples.retain(|(t, _)| now - *t <= SPEED_WINDOW);
        let (t0, b0) = self.samples.first().copied().unwrap_or((self.started, 0));
        let elapsed = (now - t0).as_secs_f64();
        let speed = if elapsed > 0.0 {
            received.saturating_sub(b0) as f64 / elapsed
        } else {
            0.0
        };
        let announce = self.last_announce.is_none_or(|t| now - t >= ANNOUNCE);
        if announce {
            self.last_announce = Some(now);
        }
        Some((speed, announce))
    }
}
