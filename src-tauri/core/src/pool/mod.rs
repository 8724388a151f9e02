//! The model pool: which models are in memory, loading them once, and unloading them.
//!
//! One task owns the pool's state, as Ollama's scheduler loop owns its runners: requests for a
//! model, finished loads, status queries and shutdown all arrive as messages, so there is no lock
//! to hold across a multi-second load and no race between two requests that both want the same
//! model loaded. Every change is broadcast as a [`PoolEvent`] for the UI and `/api/events`.

mod actor;
mod events;

use std::sync::Arc;

use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::engine::{Engine, Footprint, GenerationStats, LoadOptions, LoadedModel};
use crate::models::ModelFile;

pub use events::PoolEvent;

/// A cheap handle to the pool task.
#[derive(Clone)]
pub struct Pool {
    commands: mpsc::Sender<Command>,
    events: broadcast::Sender<PoolEvent>,
}

/// Why a model could not be had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PoolError {
    /// The file exists but the engine could not load it.
    #[error("model '{model}' could not be loaded: {reason}")]
    LoadFailed { model: String, reason: String },
    #[error("the server is shutting down")]
    ShuttingDown,
}

/// A loaded model as the status API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct LoadedStatus {
    pub id: String,
    pub state: ModelState,
    pub path: String,
    pub footprint: Option<Footprint>,
    pub load_ms: Option<u64>,
    pub stats: Option<GenerationStats>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelState {
    Loading,
    Ready,
}

/// The pool at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct PoolStatus {
    pub models: Vec<LoadedStatus>,
    /// How many times each model has been loaded since start, by id.
    pub loads: std::collections::BTreeMap<String, u64>,
}

enum Command {
    Acquire {
        file: ModelFile,
        reply: oneshot::Sender<Result<Arc<dyn LoadedModel>, PoolError>>,
    },
    Status {
        reply: oneshot::Sender<PoolStatus>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

/// Messages waiting for the pool task; beyond this, senders wait their turn.
const COMMAND_QUEUE: usize = 256;
/// Events a slow subscriber may fall behind by before it misses some (and is told so).
const EVENT_BACKLOG: usize = 1024;

impl Pool {
    /// Starts the pool task on the current Tokio runtime.
    pub fn start(engine: Arc<dyn Engine>, options: LoadOptions) -> Self {
        let (commands, inbox) = mpsc::channel(COMMAND_QUEUE);
        let (events, _) = broadcast::channel(EVENT_BACKLOG);
        let pool = Self { commands, events };
        tokio::spawn(actor::run(
            actor::Actor::new(engine, options, pool.clone()),
            inbox,
        ));
        pool
    }

    /// The model, loading it first if it is not in memory. Concurrent callers for the same
    /// model share one load. The returned handle keeps the model alive while a request runs.
    pub async fn acquire(&self, file: ModelFile) -> Result<Arc<dyn LoadedModel>, PoolError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Acquire { file, reply }).await?;
        answer.await.map_err(|_| PoolError::ShuttingDown)?
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

    pub fn subscribe(&self) -> broadcast::Receiver<PoolEvent> {
        self.events.subscribe()
    }

    fn publish(&self, event: PoolEvent) {
        tracing::debug!(?event, "pool event");
        // No subscribers is fine: nobody is watching.
        let _ = self.events.send(event);
    }

    async fn send(&self, command: Command) -> Result<(), PoolError> {
        self.commands
            .send(command)
            .await
            .map_err(|_| PoolError::ShuttingDown)
    }
}
