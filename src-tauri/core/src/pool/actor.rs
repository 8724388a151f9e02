//! The task that owns the pool's state.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use super::{Command, LoadedStatus, ModelState, Pool, PoolError, PoolEvent, PoolStatus};
use crate::engine::{Engine, EngineError, LoadOptions, LoadedModel};
use crate::memory::{process_rss, release_free_memory};
use crate::models::ModelFile;

type Reply = oneshot::Sender<Result<Arc<dyn LoadedModel>, PoolError>>;

enum Entry {
    /// A load is running on a blocking thread; these callers wait for it.
    Loading {
        file: ModelFile,
        waiters: Vec<Reply>,
    },
    Ready {
        file: ModelFile,
        model: Arc<dyn LoadedModel>,
        load_ms: u64,
    },
}

pub(super) struct Actor {
    engine: Arc<dyn Engine>,
    options: LoadOptions,
    /// For publishing events.
    pool: Pool,
    models: HashMap<String, Entry>,
    loads: BTreeMap<String, u64>,
    /// Loads report back here; kept separate from the public inbox so a finished load is never
    /// stuck behind a full queue of requests.
    loaded_tx: mpsc::UnboundedSender<Loaded>,
    loaded_rx: mpsc::UnboundedReceiver<Loaded>,
}

struct Loaded {
    id: String,
    result: Result<Box<dyn LoadedModel>, EngineError>,
    load_ms: u64,
}

impl Actor {
    pub(super) fn new(engine: Arc<dyn Engine>, options: LoadOptions, pool: Pool) -> Self {
        let (loaded_tx, loaded_rx) = mpsc::unbounded_channel();
        Self {
            engine,
            options,
            pool,
            models: HashMap::new(),
            loads: BTreeMap::new(),
            loaded_tx,
            loaded_rx,
        }
    }
}

pub(super) async fn run(mut actor: Actor, mut inbox: mpsc::Receiver<Command>) {
    loop {
        tokio::select! {
            Some(loaded) = actor.loaded_rx.recv() => actor.on_loaded(loaded),
            command = inbox.recv() => match command {
                Some(Command::Acquire { file, reply }) => actor.acquire(file, reply),
                Some(Command::Status { reply }) => {
                    let _ = reply.send(actor.status());
                }
                Some(Command::Shutdown { reply }) => {
                    actor.unload_all().await;
                    let _ = reply.send(());
                    return;
                }
                None => {
                    actor.unload_all().await;
                    return;
                }
            },
        }
    }
}

impl Actor {
    fn acquire(&mut self, file: ModelFile, reply: Reply) {
        match self.models.get_mut(&file.id) {
            Some(Entry::Ready { model, .. }) => {
                let _ = reply.send(Ok(Arc::clone(model)));
            }
            Some(Entry::Loading { waiters, .. }) => waiters.push(reply),
            None => {
                let id = file.id.clone();
                self.start_load(&file);
                self.models.insert(
                    id,
                    Entry::Loading {
                        file,
                        waiters: vec![reply],
                    },
                );
            }
        }
    }

    fn start_load(&mut self, file: &ModelFile) {
        tracing::info!(model = %file.id, path = %file.path.display(), "loading model");
        self.pool.publish(PoolEvent::Loading {
            model: file.id.clone(),
        });
        let engine = Arc::clone(&self.engine);
        let options = self.options.clone();
        let path = file.path.clone();
        let id = file.id.clone();
        let done = self.loaded_tx.clone();
        tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let result = engine.load(&path, &options);
            let load_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            // The actor is gone only at shutdown; the model is dropped here then.
            let _ = done.send(Loaded {
                id,
                result,
                load_ms,
            });
        });
    }

    fn on_loaded(&mut self, loaded: Loaded) {
        let Some(Entry::Loading { file, waiters }) = self.models.remove(&loaded.id) else {
            return;
        };
        match loaded.result {
            Ok(model) => {
                let model: Arc<dyn LoadedModel> = Arc::from(model);
                let footprint = model.footprint();
                tracing::info!(
                    model = %file.id,
                    load_ms = loaded.load_ms,
                    weights = footprint.weights,
                    context = footprint.context,
                    "model loaded"
                );
                *self.loads.entry(file.id.clone()).or_default() += 1;
                for waiter in waiters {
                    let _ = waiter.send(Ok(Arc::clone(&model)));
                }
                self.pool.publish(PoolEvent::Loaded {
                    model: file.id.clone(),
                    footprint,
                    load_ms: loaded.load_ms,
                });
                self.models.insert(
                    file.id.clone(),
                    Entry::Ready {
                        file,
                        model,
                        load_ms: loaded.load_ms,
                    },
                );
            }
            Err(e) => {
                let reason = e.to_string();
                tracing::warn!(model = %file.id, error = %reason, "model failed to load");
                for waiter in waiters {
                    let _ = waiter.send(Err(PoolError::LoadFailed {
                        model: file.id.clone(),
                        reason: reason.clone(),
                    }));
                }
                self.pool.publish(PoolEvent::LoadFailed {
                    model: file.id,
                    error: reason,
                });
            }
        }
    }

    fn status(&self) -> PoolStatus {
        let mut models: Vec<LoadedStatus> = self
            .models
            .iter()
            .map(|(id, entry)| match entry {
                Entry::Loading { file, .. } => LoadedStatus {
                    id: id.clone(),
                    state: ModelState::Loading,
                    path: file.path.display().to_string(),
                    footprint: None,
                    load_ms: None,
                    stats: None,
                },
                Entry::Ready {
                    file,
                    model,
                    load_ms,
                } => LoadedStatus {
                    id: id.clone(),
                    state: ModelState::Ready,
                    path: file.path.display().to_string(),
                    footprint: Some(model.footprint()),
                    load_ms: Some(*load_ms),
                    stats: Some(model.stats()),
                },
            })
            .collect();
        models.sort_by(|a, b| a.id.cmp(&b.id));
        PoolStatus {
            models,
            loads: self.loads.clone(),
        }
    }

    /// Shutdown: stop every generation, then free each model and wait for it.
    async fn unload_all(&mut self) {
        // Loads still running finish on their thread and are dropped when they report.
        for (id, entry) in self.models.drain() {
            match entry {
                Entry::Loading { waiters, .. } => {
                    for waiter in waiters {
                        let _ = waiter.send(Err(PoolError::ShuttingDown));
                    }
                }
                Entry::Ready { model, .. } => {
                    model.shutdown();
                    let before = process_rss();
                    // Requests still holding the model release it as their streams end; the
                    // last handle's drop joins the worker thread, so do it off the runtime.
                    let _ = tokio::task::spawn_blocking(move || {
                        drop(model);
                        release_free_memory();
                    })
                    .await;
                    let after = process_rss();
                    tracing::info!(model = %id, ?before, ?after, "model unloaded");
                    self.pool.publish(PoolEvent::Unloaded {
                        model: id,
                        rss_before: before,
                        rss_after: after,
                    });
                }
            }
        }
    }
}
