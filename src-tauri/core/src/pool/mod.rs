//! The model pool: which models are in memory, what they hold, and deciding what may load.
//!
//! Three parts, each in its own file:
//! - [`state`]: the decisions, a pure state machine (input and time in, effects out), tested
//!   with a fake engine and a fake probe;
//! - [`driver`]: the one task that owns the state, feeds it inputs (commands, reports of
//!   loads and unloads, timers, the pressure monitor's looks) and performs its effects;
//! - this handle, which callers clone: it does the slow parts that need no state (reading a
//!   model's header for its estimate, waiting for unloads to finish) outside the task, so the
//!   task never blocks.
//!
//! Every change is published as a [`PoolEvent`] for the UI and `/api/events`.

mod admission;
mod driver;
mod events;
#[cfg(test)]
mod fake;
mod lease;
mod state;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::engine::{Engine, Footprint, GenerationStats, LoadOptions};
use crate::memory::{process_rss, MemoryProbe};
use crate::metrics::Metrics;
use crate::models::ModelFile;
use crate::pressure::PressureReport;
use crate::protect::{Protection, Protector};
use crate::vocab::{IdleTimeout, Publish, Tier, TierMargins};

pub use events::{PoolEvent, PressureCause, UnloadReason, UnloadReport};
pub use lease::Lease;

/// How the pool loads models and how much memory it may use.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub load: LoadOptions,
    /// Where the pinned list comes from, for messages ("unpin it in ...").
    pub config_source: String,
    pub limits: PoolLimits,
    /// Keeps loaded models' files from changing under them; `None` loads files as they are
    /// (the pool's own tests, whose models are not files).
    pub protector: Option<Protector>,
}

/// The part of the configuration that changes live (`PUT /api/settings`).
#[derive(Debug, Clone)]
pub struct PoolLimits {
    /// The most all models together may hold, in bytes.
    pub limit: u64,
    /// Memory a load must leave available to the rest of the machine, by pressure tier.
    pub margins: TierMargins,
    /// Below this much available memory, loads are refused.
    pub floor: u64,
    /// Never unloaded by eviction, idle expiry or pressure; stopped only with the server.
    pub pinned: BTreeSet<String>,
    /// How long a model stays loaded after its last request, unless a request or its own
    /// setting says otherwise.
    pub idle_timeout: IdleTimeout,
    pub idle_timeouts: BTreeMap<String, IdleTimeout>,
}

/// A cheap handle to the pool task.
#[derive(Clone)]
pub struct Pool {
    commands: mpsc::Sender<Command>,
    engine: Arc<dyn Engine>,
    config: Arc<PoolConfig>,
    estimates: Arc<Mutex<HashMap<PathBuf, CachedEstimate>>>,
}

/// An estimate is good while the file is unchanged.
#[derive(Clone, Copy)]
struct CachedEstimate {
    len: u64,
    modified: Option<SystemTime>,
    footprint: Footprint,
}

/// Why a model could not be had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PoolError {
    /// The file exists but is not a model the engine can load.
    #[error("model '{model}' could not be loaded: {reason}")]
    LoadFailed { model: String, reason: String },
    /// It does not fit under the pool limit or the machine's margin, even after evicting.
    #[error("{message}")]
    InsufficientMemory { message: String, retry: bool },
    /// Available memory is under the floor: no new loads until it recovers.
    #[error("{message}")]
    LowMemory { message: String },
    #[error("model '{0}' is not loaded")]
    NotLoaded(String),
    #[error("model '{0}' is still loading; stop it once it has loaded")]
    StillLoading(String),
    #[error("model '{model}' is pinned: it stays loaded while it is pinned; unpin it (Pinned models in Preferences, or `pinned` in {source_name}) to let it be stopped; that applies at once")]
    Pinned { model: String, source_name: String },
    #[error("the server is shutting down")]
    ShuttingDown,
}

impl PoolError {
    /// The API's error code for it.
    pub fn code(&self) -> &'static str {
        match self {
            Self::LoadFailed { .. } => "model_load_failed",
            Self::InsufficientMemory { .. } => "insufficient_memory",
            Self::LowMemory { .. } => "low_memory",
            Self::NotLoaded(_) => "model_not_loaded",
            Self::StillLoading(_) => "model_loading",
            Self::Pinned { .. } => "model_pinned",
            Self::ShuttingDown => "shutting_down",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelState {
    /// Waiting for evicted models to unload, or loading.
    Loading,
    /// Loaded, no request running.
    Ready,
    /// Serving `in_flight` requests.
    Busy,
    Unloading,
}

/// One model in the pool as the status API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ModelStatus {
    pub id: String,
    pub path: String,
    /// The engine serving it, once loaded ("llama.cpp", "MLX").
    pub engine: Option<&'static str>,
    pub state: ModelState,
    pub pinned: bool,
    /// Measured, once loaded.
    pub memory: Option<Footprint>,
    /// From the file's header, before the load.
    pub estimate: Footprint,
    /// (estimate − measured) / measured × 100, once loaded.
    pub estimate_error_percent: Option<f64>,
    pub in_flight: u32,
    pub load_ms: Option<u64>,
    /// How its file is kept from changing under it, once loaded (`null`: not protected).
    pub protection: Option<Protection>,
    /// Unix milliseconds.
    pub loaded_at: Option<u64>,
    pub last_used: Option<u64>,
    /// When the idle timer unloads it (unix milliseconds); `None`: no timer.
    pub expires_at: Option<u64>,
    pub stats: Option<GenerationStats>,
}

/// The pool at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct PoolStatus {
    pub limit: u64,
    /// What the models hold: measured for loaded ones, estimated for loading ones.
    pub used: u64,
    /// The margin in force at the current tier, and the margin at each tier.
    pub margin: u64,
    pub margins: TierMargins,
    /// The latest pressure tier the monitor reported.
    pub tier: Tier,
    pub floor: u64,
    pub models: Vec<ModelStatus>,
    /// How many times each model has been loaded since start, by id.
    pub loads: BTreeMap<String, u64>,
}

/// Whether a model would load now.
#[derive(Debug, Clone, Serialize)]
pub struct Fit {
    pub fits: bool,
    /// Idle models that would be unloaded to make room.
    pub would_evict: Vec<String>,
    /// Why not, when it does not fit.
    pub reason: Option<String>,
}

/// What `flush` did.
#[derive(Debug, Clone, Serialize)]
pub struct FlushReport {
    pub unloaded: Vec<UnloadReport>,
    pub rss_before: Option<u64>,
    pub rss_after: Option<u64>,
    pub released: Option<u64>,
    pub duration_ms: u64,
}

enum Command {
    /// A request wants the model: a lease, loading it first if needed.
    Acquire {
        file: ModelFile,
        estimate: Footprint,
        keep_alive: Option<IdleTimeout>,
        reply: oneshot::Sender<Result<Lease, PoolError>>,
    },
    /// Load without a request (`POST /api/memory/models/{id}/load`, pinning).
    Load {
        file: ModelFile,
        estimate: Footprint,
        reply: oneshot::Sender<Result<ModelStatus, PoolError>>,
    },
    /// Answers with a receiver for the unload's report.
    Unload {
        id: String,
        reply: oneshot::Sender<Result<oneshot::Receiver<UnloadReport>, PoolError>>,
    },
    Flush {
        reply: oneshot::Sender<Vec<oneshot::Receiver<UnloadReport>>>,
    },
    Fit {
        id: String,
        estimate: Footprint,
        reply: oneshot::Sender<Fit>,
    },
    Status {
        reply: oneshot::Sender<PoolStatus>,
    },
    Reconfigure {
        limits: PoolLimits,
        reply: oneshot::Sender<()>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

/// Messages waiting for the pool task; beyond this, senders wait their turn.
const COMMAND_QUEUE: usize = 256;

impl Pool {
    /// Starts the pool task on the current Tokio runtime. It publishes every change through
    /// `publish`, and acts on the pressure monitor's looks as they arrive on `pressure`.
    pub fn start(
        engine: Arc<dyn Engine>,
        config: PoolConfig,
        probe: Arc<dyn MemoryProbe>,
        metrics: Metrics,
        publish: Publish<PoolEvent>,
        pressure: mpsc::Receiver<PressureReport>,
    ) -> Self {
        let (commands, commands_rx) = mpsc::channel(COMMAND_QUEUE);
        let (reports, reports_rx) = mpsc::unbounded_channel();
        let config = Arc::new(config);
        let pool = Self {
            commands,
            engine: Arc::clone(&engine),
            config: Arc::clone(&config),
            estimates: Arc::default(),
        };
        let state = state::State::new((*config).clone(), probe, metrics, reports.clone());
        let driver = driver::Driver {
            engine,
            options: config.load.clone(),
            protector: config.protector.clone(),
            publish,
            reports,
        };
        let inbox = driver::Inbox {
            commands: commands_rx,
            reports: reports_rx,
            pressure,
        };
        tokio::spawn(driver::run(state, driver, inbox));
        pool
    }

    /// The model for one request, loading it first if it is not in memory (concurrent
    /// callers share one load). The lease keeps it loaded until the request ends.
    ///
    /// `keep_alive`, when given, is how long the model stays loaded after this request;
    /// otherwise the configured timeout applies.
    pub async fn acquire(
        &self,
        file: ModelFile,
        keep_alive: Option<IdleTimeout>,
    ) -> Result<Lease, PoolError> {
        let estimate = self.estimate(&file).await?;
        let (reply, answer) = oneshot::channel();
        self.send(Command::Acquire {
            file,
            estimate,
            keep_alive,
            reply,
        })
        .await?;
        answer.await.map_err(|_| PoolError::ShuttingDown)?
    }

    /// Loads the model (with admission) and answers once it is ready.
    pub async fn load(&self, file: ModelFile) -> Result<ModelStatus, PoolError> {
        let estimate = self.estimate(&file).await?;
        let (reply, answer) = oneshot::channel();
        self.send(Command::Load {
            file,
            estimate,
            reply,
        })
        .await?;
        answer.await.map_err(|_| PoolError::ShuttingDown)?
    }

    /// Stops the model: its requests end with an error now, then it is unloaded and its
    /// memory measured.
    pub async fn unload(&self, id: &str) -> Result<UnloadReport, PoolError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Unload {
            id: id.to_string(),
            reply,
        })
        .await?;
        let report = answer.await.map_err(|_| PoolError::ShuttingDown)??;
        report.await.map_err(|_| PoolError::ShuttingDown)
    }

    /// Unloads every unpinned model, letting running requests finish first (up to
    /// [`state::FLUSH_GRACE`], then they are ended).
    pub async fn flush(&self) -> Result<FlushReport, PoolError> {
        let started = Instant::now();
        let rss_before = process_rss();
        let (reply, answer) = oneshot::channel();
        self.send(Command::Flush { reply }).await?;
        let pending = answer.await.map_err(|_| PoolError::ShuttingDown)?;
        let mut unloaded = Vec::with_capacity(pending.len());
        for report in pending {
            if let Ok(report) = report.await {
                unloaded.push(report);
            }
        }
        let rss_after = process_rss();
        Ok(FlushReport {
            unloaded,
            rss_before,
            rss_after,
            released: rss_before.zip(rss_after).map(|(b, a)| b.saturating_sub(a)),
            duration_ms: millis(started.elapsed()),
        })
    }

    /// Whether `file` would load now, and what it would evict.
    pub async fn fit(&self, file: &ModelFile) -> Result<(Footprint, Fit), PoolError> {
        let estimate = self.estimate(file).await?;
        let (reply, answer) = oneshot::channel();
        self.send(Command::Fit {
            id: file.id.clone(),
            estimate,
            reply,
        })
        .await?;
        let fit = answer.await.map_err(|_| PoolError::ShuttingDown)?;
        Ok((estimate, fit))
    }

    /// Applies new limits and timeouts now.
    pub async fn reconfigure(&self, limits: PoolLimits) -> Result<(), PoolError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Reconfigure { limits, reply }).await?;
        answer.await.map_err(|_| PoolError::ShuttingDown)
    }

    pub async fn status(&self) -> Result<PoolStatus, PoolError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Status { reply }).await?;
        answer.await.map_err(|_| PoolError::ShuttingDown)
    }

    /// Ends every generation, unloads every model and waits until their memory is freed.
    pub async fn shutdown(&self) {
        let (reply, answer) = oneshot::channel();
        if self.send(Command::Shutdown { reply }).await.is_ok() {
            let _ = answer.await;
        }
    }

    /// The model's estimated footprint, from its header (cached while the file is unchanged).
    /// The engine that would serve `file` ("llama.cpp", "MLX").
    pub fn engine_for(&self, file: &ModelFile) -> &'static str {
        self.engine
            .engine_for(&file.path, &self.config.load.for_model(&file.id))
    }

    /// A file that is not a readable model fails here, before anything is loaded.
    pub async fn estimate(&self, file: &ModelFile) -> Result<Footprint, PoolError> {
        let meta = tokio::fs::metadata(&file.path).await.ok();
        let len = meta.as_ref().map_or(0, |m| m.len());
        let modified = meta.and_then(|m| m.modified().ok());
        if let Some(hit) = self
            .estimates
            .lock()
            .ok()
            .and_then(|cache| cache.get(&file.path).copied())
        {
            if hit.len == len && hit.modified == modified {
                return Ok(hit.footprint);
            }
        }
        let engine = Arc::clone(&self.engine);
        let path = file.path.clone();
        let options = self.config.load.for_model(&file.id);
        let footprint = tokio::task::spawn_blocking(move || engine.estimate(&path, &options))
            .await
            .map_err(|e| PoolError::LoadFailed {
                model: file.id.clone(),
                reason: e.to_string(),
            })?
            .map_err(|e| PoolError::LoadFailed {
                model: file.id.clone(),
                reason: e.to_string(),
            })?;
        if let Ok(mut cache) = self.estimates.lock() {
            cache.insert(
                file.path.clone(),
                CachedEstimate {
                    len,
                    modified,
                    footprint,
                },
            );
        }
        Ok(footprint)
    }

    async fn send(&self, command: Command) -> Result<(), PoolError> {
        self.commands
            .send(command)
            .await
            .map_err(|_| PoolError::ShuttingDown)
    }
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
