//! Getting models from the Hugging Face Hub into Headroom's own model folder: a GGUF file, or
//! an MLX repo as a folder of its model files.
//!
//! A pull is staged under `<models>/.partial/` (a hidden folder the catalog does not read):
//! `<name>.gguf.part` for a file, `<name>/` for an MLX folder. It is resumed from there after
//! a dropped connection or a later pull of the same model, each file is checked against the
//! Hub's sha256, and only then is it renamed into the model folder: there is never a half model
//! among the models. Disk space is checked first; a disk that fills up all the same ends the
//! pull and gives the staged bytes back. Progress goes out as `pull` events, at most four a
//! second; Cancel deletes what was staged. At most [`MAX_RUNNING`] pulls run at once.

pub mod hub;
pub mod record;
pub mod repo;
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
use repo::Contents;
pub use transfer::TransferError;

/// Pulls that may run at once: enough to fill a home connection, few enough that a script
/// gone wrong cannot open hundreds of downloads.
pub const MAX_RUNNING: usize = 3;

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
    /// The model id the pull has once done.
    pub model: String,
    pub repo: String,
    /// The GGUF file pulled; None for an MLX repo, pulled whole.
    pub file: Option<String>,
    /// Files fetched, with those still to fetch.
    pub files: usize,
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
    #[error("cannot list the files of '{repo}': {error}")]
    Listing { repo: String, error: TransferError },
    #[error("'{repo}' holds GGUF files, not one model: name the file to pull, one of {}", .files.join(", "))]
    ChooseFile { repo: String, files: Vec<String> },
    #[error(
        "'{0}' holds neither GGUF files nor an MLX model (config.json and .safetensors weights)"
    )]
    NotAModel(String),
    #[error("'{0}' is already being pulled")]
    Running(String),
    #[error("model '{0}' is already in the model folder")]
    Exists(String),
    #[error("{MAX_RUNNING} pulls are running already; wait for one to end or cancel one")]
    TooMany,
    #[error("no pull of '{0}' is running")]
    NotRunning(String),
}

/// Where the token for gated repos comes from, asked at each pull so a token set in
/// Preferences applies at once.
pub type TokenSource = Arc<dyn Fn() -> Option<String> + Send + Sync>;

struct Entry {
    status: PullStatus,
    cancel: CancellationToken,
}

/// One file of a pull, and where it is staged.
struct Piece {
    file: HubFile,
    part: PathBuf,
    /// What the repo's listing said of it, for a Hub that leaves a header out.
    listed: Option<repo::TreeEntry>,
}

/// What a pull fetches, where it is staged, and where it goes when whole.
struct Plan {
    model: String,
    repo: String,
    file: Option<String>,
    pieces: Vec<Piece>,
    staged: PathBuf,
    target: PathBuf,
    /// The name an Ollama client pulls it by, recorded with its origin.
    ollama_name: Option<String>,
}

/// The pulls of this run: running ones, and ended ones until the next pull of the same model.
#[derive(Clone)]
pub struct Pulls {
    folder: PathBuf,
    endpoint: String,
    token: TokenSource,
    entries: Arc<Mutex<BTreeMap<String, Entry>>>,
    /// Held while `.pulled.json` is read and rewritten, so two pulls ending at once both count.
    record: Arc<Mutex<()>>,
    publish: Publish<PullEvent>,
}

impl Pulls {
    /// Pulls into `folder` (Headroom's own model folder) from `endpoint` (see
    /// [`hub::endpoint`]), with the token `token` gives for gated repos.
    pub fn new(
        folder: PathBuf,
        endpoint: String,
        token: TokenSource,
        publish: Publish<PullEvent>,
    ) -> Self {
        Self {
            folder,
            endpoint,
            token,
            entries: Arc::default(),
            record: Arc::default(),
            publish,
        }
    }

    pub fn folder(&self) -> &Path {
        &self.folder
    }

    /// Starts pulling `file` of `repo`, or the whole of an MLX repo when `file` is None; returns
    /// once the pull is under way (for a repo, once its listing is read), the pull going on in a
    /// task.
    pub async fn start(&self, repo: &str, file: Option<&str>) -> Result<PullStatus, PullError> {
        self.start_as(repo, file, None).await
    }

    /// [`Pulls::start`], for an Ollama client that pulls by `ollama_name`: that name then goes
    /// on naming the model.
    pub async fn start_as(
        &self,
        repo: &str,
        file: Option<&str>,
        ollama_name: Option<&str>,
    ) -> Result<PullStatus, PullError> {
        let mut plan = match file {
            Some(file) => self.plan_file(HubFile::new(repo, file)?),
            None => self.plan_repo(repo).await?,
        };
        plan.ollama_name = ollama_name.map(str::to_string);
        if tokio::fs::symlink_metadata(&plan.target).await.is_ok() {
            return Err(PullError::Exists(plan.model));
        }
        let cancel = CancellationToken::new();
        let status = PullStatus {
            model: plan.model.clone(),
            repo: plan.repo.clone(),
            file: plan.file.clone(),
            files: plan.pieces.len(),
            state: PullState::Downloading,
            received: 0,
            total: 0,
            bytes_per_second: 0.0,
            seconds_left: None,
            error: None,
        };
        {
            let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            let running = |e: &Entry| e.status.state == PullState::Downloading;
            if entries.get(&plan.model).is_some_and(running) {
                return Err(PullError::Running(plan.model));
            }
            if entries.values().filter(|e| running(e)).count() >= MAX_RUNNING {
                return Err(PullError::TooMany);
            }
            entries.insert(
                plan.model.clone(),
                Entry {
                    status: status.clone(),
                    cancel: cancel.clone(),
                },
            );
        }
        self.announce(&plan.model);
        let pulls = self.clone();
        tokio::spawn(async move {
            let result = pulls.run(&plan, &cancel).await;
            pulls.finish(&plan, result).await;
        });
        Ok(status)
    }

    /// Cancels a running pull; what it staged is deleted.
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

    fn staging(&self) -> PathBuf {
        self.folder.join(".partial")
    }

    /// A GGUF file: staged as `.partial/<name>.part`, its id the file's name without `.gguf`.
    fn plan_file(&self, file: HubFile) -> Plan {
        let staged = self.staging().join(format!("{}.part", file.local_name()));
        Plan {
            model: file.model_id().to_string(),
            repo: file.repo.clone(),
            file: Some(file.file.clone()),
            target: self.folder.join(file.local_name()),
            pieces: vec![Piece {
                file,
                part: staged.clone(),
                listed: None,
            }],
            staged,
            ollama_name: None,
        }
    }

    /// What `repo` holds, from its listing on the Hub.
    pub async fn contents(&self, name: &str) -> Result<Contents, PullError> {
        hub::check_repo(name)?;
        let token = (self.token)();
        let entries = repo::list(&self.endpoint, name, token.as_deref())
            .await
            .map_err(|error| PullError::Listing {
                repo: name.to_string(),
                error,
            })?;
        Ok(repo::contents(name, &entries)?)
    }

    /// Forgets where model `id` came from, once it is deleted.
    pub fn forget(&self, id: &str) {
        let _held = self.record.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = record::set(&self.folder, id, None) {
            tracing::warn!(%id, "cannot update the record of pulled models: {e}");
        }
    }

    /// Lets `ollama_name` name model `id`, already in the folder, from `repo` (and `file`).
    pub fn name(&self, id: &str, repo: &str, file: Option<&str>, ollama_name: &str) {
        let origin = record::Origin {
            repo: repo.to_string(),
            file: file.map(str::to_string),
            ollama_name: Some(ollama_name.to_string()),
        };
        let _held = self.record.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = record::set(&self.folder, id, Some(origin)) {
            tracing::warn!(%id, "cannot update the record of pulled models: {e}");
        }
    }

    /// Where each model pulled into the folder came from, by id.
    pub fn origins(&self) -> std::collections::BTreeMap<String, record::Origin> {
        record::read(&self.folder)
    }

    /// The model an Ollama client pulled by `name`, if one was.
    pub fn pulled_as(&self, name: &str) -> Option<String> {
        record::by_ollama_name(&self.folder, name)
    }

    /// A whole repo: read its listing, and pull it if it is an MLX model.
    async fn plan_repo(&self, name: &str) -> Result<Plan, PullError> {
        let files = match self.contents(name).await? {
            Contents::Mlx(files) => files,
            Contents::Gguf(files) => {
                return Err(PullError::ChooseFile {
                    repo: name.to_string(),
                    files: repo::paths(&files),
                })
            }
            Contents::Neither => return Err(PullError::NotAModel(name.to_string())),
        };
        let folder = repo::folder_name(name);
        // Staged under the whole repo's name: two orgs' repos of one name do not mix.
        let staged = self.staging().join(name.replace('/', "--"));
        Ok(Plan {
            model: folder.to_string(),
            repo: name.to_string(),
            file: None,
            target: self.folder.join(folder),
            pieces: files
                .into_iter()
                .map(|(file, listed)| Piece {
                    part: staged.join(&file.file),
                    file,
                    listed: Some(listed),
                })
                .collect(),
            staged,
            ollama_name: None,
        })
    }

    async fn run(&self, plan: &Plan, cancel: &CancellationToken) -> Result<(), TransferError> {
        let token = (self.token)();
        let mut remotes = Vec::with_capacity(plan.pieces.len());
        for piece in &plan.pieces {
            let url = piece.file.url(&self.endpoint);
            let listed = piece.listed.as_ref();
            let mut remote = tokio::select! {
                () = cancel.cancelled() => {
                    remove(&plan.staged).await;
                    return Err(TransferError::Cancelled);
                }
                remote = transfer::inspect(&url, token.as_deref(), listed.map(|l| l.size)) => remote?,
            };
            if remote.sha256.is_none() {
                remote.sha256 = listed.and_then(repo::TreeEntry::sha256);
            }
            remotes.push(remote);
        }
        let total: u64 = remotes.iter().map(|r| r.size).sum();
        let mut held = 0;
        for (piece, remote) in plan.pieces.iter().zip(&remotes) {
            let part = tokio::fs::metadata(&piece.part)
                .await
                .map_or(0, |m| m.len());
            held += part.min(remote.size);
        }
        let needed = total.saturating_sub(held);
        tokio::fs::create_dir_all(self.staging()).await?;
        if let Some(available) = space::available(&self.folder) {
            if space::missing(needed, available, space::RESERVE).is_some() {
                return Err(TransferError::Space {
                    needed,
                    available,
                    reserve: space::RESERVE,
                });
            }
        }
        self.update(&plan.model, |s| s.total = total);
        let mut meter = Meter::new(held);
        let mut before = 0;
        for (piece, remote) in plan.pieces.iter().zip(&remotes) {
            if let Some(dir) = piece.part.parent() {
                tokio::fs::create_dir_all(dir).await?;
            }
            if remote.sha256.is_none() {
                // A small file with nothing to check it by but its length: fetched afresh, so
                // a file left by an older revision is not taken for it.
                let _ = tokio::fs::remove_file(&piece.part).await;
            }
            // The token goes along only where the Hub serves the file itself (a small file),
            // never where it redirected to (its storage).
            let token = token
                .as_deref()
                .filter(|_| remote.location == piece.file.url(&self.endpoint));
            let result = transfer::fetch(remote, &piece.part, token, cancel, |received| {
                let received = before + received;
                if let Some((speed, announce)) = meter.step(received) {
                    self.update(&plan.model, |s| {
                        s.received = received;
                        s.bytes_per_second = speed;
                        s.seconds_left =
                            (speed > 0.0).then(|| total.saturating_sub(received) as f64 / speed);
                    });
                    if announce {
                        self.announce(&plan.model);
                    }
                }
            })
            .await;
            if let Err(e @ (TransferError::Cancelled | TransferError::DiskFull { .. })) = result {
                // Cancelled, or the disk is full: the staged bytes go back to the disk.
                remove(&plan.staged).await;
                return Err(e);
            }
            result?;
            before += remote.size;
        }
        if tokio::fs::symlink_metadata(&plan.target).await.is_ok() {
            remove(&plan.staged).await;
            return Err(TransferError::Refused(format!(
                "{} appeared in the model folder meanwhile; the pulled copy is not kept",
                plan.target.display()
            )));
        }
        tokio::fs::rename(&plan.staged, &plan.target).await?;
        self.update(&plan.model, |s| s.received = total);
        let origin = record::Origin {
            repo: plan.repo.clone(),
            file: plan.file.clone(),
            ollama_name: plan.ollama_name.clone(),
        };
        let _held = self.record.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = record::set(&self.folder, &plan.model, Some(origin)) {
            // The model is whole and served; only its Ollama name is lost.
            tracing::warn!(model = %plan.model, "cannot record where the model came from: {e}");
        }
        Ok(())
    }

    async fn finish(&self, plan: &Plan, result: Result<(), TransferError>) {
        let model = &plan.model;
        let what = match &plan.file {
            Some(file) => format!("{}/{file}", plan.repo),
            None => plan.repo.clone(),
        };
        match &result {
            Ok(()) => tracing::info!(%model, "pulled {what}"),
            Err(e) => tracing::warn!(%model, "pull of {what} ended: {e}"),
        }
        self.update(model, |s| {
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
        self.announce(model);
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

/// Deletes what a pull staged: a file, or an MLX folder.
async fn remove(staged: &Path) {
    let removed = match tokio::fs::symlink_metadata(staged).await {
        Ok(meta) if meta.is_dir() => tokio::fs::remove_dir_all(staged).await,
        Ok(_) => tokio::fs::remove_file(staged).await,
        Err(_) => Ok(()),
    };
    if let Err(e) = removed {
        tracing::warn!("cannot delete {}: {e}", staged.display());
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
