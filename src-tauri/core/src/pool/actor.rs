//! The task that owns the pool's state.
//!
//! A model moves `Loading → Ready → Unloading → gone`. A load may first wait for the models it
//! evicts to finish unloading; an unload of a model with requests in flight first waits for
//! them (flush) or ends them (stop, shutdown). Slow work (loading, freeing memory) runs on
//! other threads and reports back on the internal channel, so this loop only ever decides.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{broadcast, mpsc, oneshot};

use super::admission::{self, Ask, Decision, Hold, Holder};
use super::idle::IdleTimers;
use super::{
    millis, Command, Fit, Lease, LiveConfig, ModelState, ModelStatus, PoolConfig, PoolError,
    PoolEvent, PoolStatus, UnloadReason, UnloadReport,
};
use crate::config::{human, IdleTimeout};
use crate::engine::{Engine, EngineError, Footprint, LoadedModel};
use crate::memory::{process_rss, release_free_memory, MemoryProbe, SystemMemory};
use crate::metrics::Metrics;
use crate::models::ModelFile;
use crate::pressure::{PressureReport, Tier};

/// How long a flush lets running requests finish before it ends them.
pub(super) const FLUSH_GRACE: Duration = Duration::from_secs(30);
/// Less than this share of a model's footprint coming back on unload is worth a warning.
const RECLAIM_WARNING: f64 = 90.0;

/// What the pool's own helpers report back.
pub(super) enum Internal {
    Loaded {
        id: String,
        result: Result<Box<dyn LoadedModel>, EngineError>,
        load_ms: u64,
    },
    /// A lease was dropped: its request is over.
    Released {
        id: String,
        serial: u64,
    },
    Unloaded(UnloadReport),
    /// The idle timer of this load of the model ran out.
    IdleExpired {
        id: String,
        serial: u64,
    },
    /// A draining model's requests had their time: `Grace` (flush) ends them, `Force` stops
    /// waiting for requests whose clients neither read nor hang up.
    Deadline {
        id: String,
        serial: u64,
        kind: DeadlineKind,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DeadlineKind {
    Grace,
    Force,
}

/// How long a stopped model waits for its ended requests to let go of it. A client that stops
/// reading without hanging up keeps its response (and its lease) alive; the unload goes ahead
/// without it, and the memory comes back when that connection finally closes.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// How long shutdown waits for models to unload before exiting anyway.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(10);

/// Someone waiting for a model to become ready.
enum Waiter {
    /// A request, with its own idle timeout if it asked for one (`keep_alive`, `ttl`).
    Request(
        oneshot::Sender<Result<Lease, PoolError>>,
        Option<IdleTimeout>,
    ),
    Load(oneshot::Sender<Result<ModelStatus, PoolError>>),
}

impl Waiter {
    fn fail(self, error: PoolError) {
        match self {
            Self::Request(tx, _) => drop(tx.send(Err(error))),
            Self::Load(tx) => drop(tx.send(Err(error))),
        }
    }
}

enum Entry {
    Loading(Loading),
    Ready(Box<Ready>),
    Unloading(Unloading),
}

struct Loading {
    file: ModelFile,
    estimate: Footprint,
    waiters: Vec<Waiter>,
    /// Evicted models that must finish unloading before this load starts.
    waiting_for: BTreeSet<String>,
}

struct Ready {
    file: ModelFile,
    model: Arc<dyn LoadedModel>,
    /// Which load this is: leases and timers of an earlier load of the same model carry an
    /// older serial and are ignored.
    serial: u64,
    estimate: Footprint,
    load_ms: u64,
    loaded_at: SystemTime,
    last_used: Instant,
    last_used_at: SystemTime,
    in_flight: u32,
    /// The idle timeout the latest request asked for, overriding the configured ones.
    keep_alive: Option<IdleTimeout>,
    /// When the idle timer unloads it, while idle.
    expires: Option<SystemTime>,
    /// Set once an unload is decided; the model takes no new requests from then on.
    drain: Option<Drain>,
}

struct Drain {
    reason: UnloadReason,
    /// Requests that arrived meanwhile; they are served by a fresh load afterwards.
    waiters: Vec<Waiter>,
}

struct Unloading {
    file: ModelFile,
    estimate: Footprint,
    footprint: Footprint,
    waiters: Vec<Waiter>,
}

pub(super) struct Actor {
    engine: Arc<dyn Engine>,
    config: PoolConfig,
    probe: Arc<dyn MemoryProbe>,
    metrics: Metrics,
    events: broadcast::Sender<PoolEvent>,
    models: HashMap<String, Entry>,
    loads: BTreeMap<String, u64>,
    /// The last load's serial.
    serial: u64,
    /// The latest pressure tier; loads are refused from critical up.
    tier: Tier,
    /// When the monitor saw the pressure that is unloading these models.
    pressure_seen: HashMap<String, Instant>,
    timers: IdleTimers,
    shutting_down: bool,
    /// Who waits for the report of each model's unload.
    reports: HashMap<String, Vec<oneshot::Sender<UnloadReport>>>,
    /// Loads, releases and unloads report back here; kept apart from the public inbox (and
    /// unbounded) so that a report is never stuck behind a full queue of requests.
    internal_tx: mpsc::UnboundedSender<Internal>,
    internal_rx: mpsc::UnboundedReceiver<Internal>,
}

impl Actor {
    pub(super) fn new(
        engine: Arc<dyn Engine>,
        config: PoolConfig,
        probe: Arc<dyn MemoryProbe>,
        metrics: Metrics,
        events: broadcast::Sender<PoolEvent>,
    ) -> Self {
        let (internal_tx, internal_rx) = mpsc::unbounded_channel();
        Self {
            engine,
            config,
            probe,
            metrics,
            events,
            models: HashMap::new(),
            loads: BTreeMap::new(),
            serial: 0,
            tier: Tier::Normal,
            pressure_seen: HashMap::new(),
            timers: IdleTimers::start(internal_tx.clone()),
            shutting_down: false,
            reports: HashMap::new(),
            internal_tx,
            internal_rx,
        }
    }

    pub(super) async fn run(mut self, mut inbox: mpsc::Receiver<Command>) {
        loop {
            tokio::select! {
                // What already happened (a request ended, a load finished) before what is
                // asked next: a client that got its answer and then asks for the status must
                // see its request as finished.
                biased;
                Some(message) = self.internal_rx.recv() => self.on_internal(message),
                command = inbox.recv() => match command {
                    Some(Command::Shutdown { reply }) => {
                        self.shutdown().await;
                        let _ = reply.send(());
                        return;
                    }
                    Some(command) => self.on_command(command),
                    None => {
                        self.shutdown().await;
                        return;
                    }
                },
            }
        }
    }

    fn publish(&self, event: PoolEvent) {
        tracing::debug!(?event, "pool event");
        // No subscribers is fine: nobody is watching.
        let _ = self.events.send(event);
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Acquire {
                file,
                estimate,
                keep_alive,
                reply,
            } => self.want(file, estimate, Waiter::Request(reply, keep_alive)),
            Command::Load {
                file,
                estimate,
                reply,
            } => self.want(file, estimate, Waiter::Load(reply)),
            Command::Unload { id, reply } => {
                let _ = reply.send(self.stop(&id));
            }
            Command::Flush { reply } => {
                let _ = reply.send(self.flush());
            }
            Command::Fit {
                id,
                estimate,
                reply,
            } => {
                let _ = reply.send(self.fit(&id, estimate));
            }
            Command::Status { reply } => {
                let _ = reply.send(self.status());
            }
            Command::Reconfigure { live, reply } => {
                self.reconfigure(live);
                let _ = reply.send(());
            }
            Command::Pressure { report } => self.on_pressure(report),
            // Handled by the loop: it needs to await.
            Command::Shutdown { reply } => drop(reply),
        }
    }

    fn on_internal(&mut self, message: Internal) {
        match message {
            Internal::Loaded {
                id,
                result,
                load_ms,
            } => self.on_loaded(id, result, load_ms),
            Internal::Released { id, serial } => self.on_released(&id, serial),
            Internal::Unloaded(report) => self.on_unloaded(report),
            Internal::Deadline { id, serial, kind } => self.on_deadline(&id, serial, kind),
            Internal::IdleExpired { id, serial } => self.on_idle_expired(&id, serial),
        }
    }

    fn on_deadline(&mut self, id: &str, serial: u64, kind: DeadlineKind) {
        let Some(Entry::Ready(ready)) = self.models.get(id) else {
            return;
        };
        if ready.serial != serial || ready.drain.is_none() || ready.in_flight == 0 {
            return;
        }
        match kind {
            DeadlineKind::Grace => {
                tracing::info!(model = %id, "flush: requests still running after the grace period; ending them");
                ready.model.stop(&format!(
                    "the model was unloaded (flush) after waiting {} s for this request",
                    FLUSH_GRACE.as_secs()
                ));
                self.schedule(id, serial, DeadlineKind::Force, STOP_GRACE);
            }
            DeadlineKind::Force => {
                tracing::warn!(
                    model = %id,
                    in_flight = ready.in_flight,
                    "ended requests still hold the model (clients neither read nor hang up); unloading without them"
                );
                self.finish_unload(id);
            }
        }
    }

    fn schedule(&self, id: &str, serial: u64, kind: DeadlineKind, after: Duration) {
        let done = self.internal_tx.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let _ = done.send(Internal::Deadline { id, serial, kind });
        });
    }

    // ----- getting a model -----

    /// A request or a load wants `file`.
    fn want(&mut self, file: ModelFile, estimate: Footprint, waiter: Waiter) {
        if self.shutting_down {
            return waiter.fail(PoolError::ShuttingDown);
        }
        // At critical and above, new requests wait outside while the pool frees memory: even
        // on a loaded model a request grows the compute buffers and holds the model busy, out
        // of reach of the unloads that would relieve the machine.
        if self.tier >= Tier::Critical && matches!(waiter, Waiter::Request(..)) {
            let tier = format!("{:?}", self.tier).to_lowercase();
            let message = format!(
                "'{}' is not taking new requests while memory pressure is {tier}: Headroom is freeing memory; retry shortly, or close apps",
                file.id
            );
            return self.refuse(&file.id, PoolError::LowMemory { message }, waiter);
        }
        match self.models.get_mut(&file.id) {
            Some(Entry::Ready(ready)) => match &mut ready.drain {
                Some(drain) => drain.waiters.push(waiter),
                None => self.grant(&file.id, waiter),
            },
            Some(Entry::Loading(loading)) => loading.waiters.push(waiter),
            Some(Entry::Unloading(unloading)) => unloading.waiters.push(waiter),
            None => self.admit(file, estimate, waiter),
        }
    }

    /// Hands a ready model to a waiter.
    fn grant(&mut self, id: &str, waiter: Waiter) {
        match waiter {
            Waiter::Request(reply, keep_alive) => {
                let Some(Entry::Ready(ready)) = self.models.get_mut(id) else {
                    let _ = reply.send(Err(PoolError::NotLoaded(id.to_string())));
                    return;
                };
                // Busy: no idle deadline until the last request ends. Then the latest
                // request's timeout applies, or the configured one if it gave none (as
                // Ollama treats keep_alive).
                self.timers.clear(id);
                ready.expires = None;
                ready.keep_alive = keep_alive;
                ready.in_flight += 1;
                let in_flight = ready.in_flight;
                let lease = Lease::new(
                    Arc::clone(&ready.model),
                    id.to_string(),
                    ready.serial,
                    self.internal_tx.clone(),
                );
                // A caller that gave up drops the lease inside the error, which releases it.
                let _ = reply.send(Ok(lease));
                self.publish(PoolEvent::RequestStarted {
                    model: id.to_string(),
                    in_flight,
                });
            }
            Waiter::Load(reply) => {
                let status = self
                    .models
                    .get(id)
                    .map(|entry| model_status(id, entry, &self.config))
                    .ok_or_else(|| PoolError::NotLoaded(id.to_string()));
                let _ = reply.send(status);
            }
        }
    }

    /// Decides whether `file` may load, evicts what must make room, and starts the load.
    fn admit(&mut self, file: ModelFile, estimate: Footprint, waiter: Waiter) {
        let id = file.id.clone();
        let system = self.probe.system();
        if let Some(message) = self.closed_to_loads(&id, system) {
            return self.refuse(&id, PoolError::LowMemory { message }, waiter);
        }
        let decision = admission::decide(
            &Ask {
                model: &id,
                need: estimate.total,
                limit: self.config.limit,
                margin: self.config.margins.for_tier(self.tier),
                system,
            },
            &self.holders(),
        );
        let evict = match decision {
            Decision::Admit { evict } => evict,
            Decision::Refuse { message, retry } => {
                return self.refuse(
                    &id,
                    PoolError::InsufficientMemory { message, retry },
                    waiter,
                )
            }
        };
        for victim in &evict {
            tracing::info!(model = %victim, for_model = %id, "evicting the least recently used idle model");
            self.metrics.model_evicted();
            self.publish(PoolEvent::Evicted {
                model: victim.clone(),
                for_model: Some(id.clone()),
            });
            self.begin_unload(victim, UnloadReason::Evicted);
        }
        let waiting_for: BTreeSet<String> = evict.into_iter().collect();
        self.publish(PoolEvent::Loading {
            model: id.clone(),
            estimate,
        });
        let start_now = waiting_for.is_empty();
        self.models.insert(
            id.clone(),
            Entry::Loading(Loading {
                file,
                estimate,
                waiters: vec![waiter],
                waiting_for,
            }),
        );
        if start_now {
            self.start_load(&id);
        }
    }

    fn refuse(&self, id: &str, error: PoolError, waiter: Waiter) {
        tracing::warn!(model = %id, error = %error, "load refused");
        self.metrics.refused(error.code());
        self.publish(PoolEvent::Refused {
            model: id.to_string(),
            code: error.code().to_string(),
            message: error.to_string(),
        });
        waiter.fail(error);
    }

    /// Every model holding memory, as admission sees it.
    fn holders(&self) -> Vec<Holder> {
        self.models
            .iter()
            .map(|(id, entry)| {
                let (bytes, last_used, hold) = match entry {
                    Entry::Loading(l) => (l.estimate.total, Instant::now(), Hold::Loading),
                    Entry::Unloading(u) => (u.footprint.total, Instant::now(), Hold::Changing),
                    Entry::Ready(r) => {
                        let hold = if r.drain.is_some() {
                            Hold::Changing
                        } else if self.config.pinned.contains(id) {
                            Hold::Pinned
                        } else if r.in_flight > 0 {
                            Hold::Busy {
                                in_flight: r.in_flight,
                            }
                        } else {
                            Hold::Idle
                        };
                        (r.model.footprint().total, r.last_used, hold)
                    }
                };
                Holder {
                    id: id.clone(),
                    bytes,
                    last_used,
                    hold,
                }
            })
            .collect()
    }

    /// Why no load may start now, whatever its size: memory pressure at critical or above, or
    /// available memory under the floor.
    fn closed_to_loads(&self, id: &str, system: Option<SystemMemory>) -> Option<String> {
        if self.tier >= Tier::Critical {
            let tier = format!("{:?}", self.tier).to_lowercase();
            return Some(format!(
                "cannot load '{id}' now: memory pressure is {tier}; retry when it eases, or close apps"
            ));
        }
        let system = system?;
        (system.available < self.config.floor).then(|| {
            format!(
                "cannot load '{id}' now: only {} of memory is available, under the {} floor (memory_floor); retry when memory is freed, or close apps",
                human(system.available),
                human(self.config.floor)
            )
        })
    }

    fn fit(&self, id: &str, estimate: Footprint) -> Fit {
        // Already loaded or on its way: nothing more to make room for.
        if matches!(
            self.models.get(id),
            Some(Entry::Ready(_) | Entry::Loading(_))
        ) {
            return Fit {
                fits: true,
                would_evict: Vec::new(),
                reason: None,
            };
        }
        let system = self.probe.system();
        if let Some(reason) = self.closed_to_loads(id, system) {
            return Fit {
                fits: false,
                would_evict: Vec::new(),
                reason: Some(reason),
            };
        }
        let decision = admission::decide(
            &Ask {
                model: id,
                need: estimate.total,
                limit: self.config.limit,
                margin: self.config.margins.for_tier(self.tier),
                system,
            },
            &self.holders(),
        );
        match decision {
            Decision::Admit { evict } => Fit {
                fits: true,
                would_evict: evict,
                reason: None,
            },
            Decision::Refuse { message, .. } => Fit {
                fits: false,
                would_evict: Vec::new(),
                reason: Some(message),
            },
        }
    }

    fn start_load(&mut self, id: &str) {
        let Some(Entry::Loading(loading)) = self.models.get(id) else {
            return;
        };
        tracing::info!(model = %id, path = %loading.file.path.display(), estimate = loading.estimate.total, "loading model");
        let engine = Arc::clone(&self.engine);
        let options = self.config.load.clone();
        let path = loading.file.path.clone();
        let id = id.to_string();
        let done = self.internal_tx.clone();
        tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            // A panic in the engine must still answer the waiters, not leave them hanging.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                engine.load(&path, &options)
            }))
            .unwrap_or_else(|_| {
                Err(EngineError::Internal(
                    "the engine panicked while loading".into(),
                ))
            });
            let load_ms = millis(started.elapsed());
            if let Err(unsent) = done.send(Internal::Loaded {
                id,
                result,
                load_ms,
            }) {
                // The pool is gone (shutdown): free the model here, on this blocking thread.
                drop(unsent);
            }
        });
    }

    fn on_loaded(
        &mut self,
        id: String,
        result: Result<Box<dyn LoadedModel>, EngineError>,
        load_ms: u64,
    ) {
        let loading = match self.models.remove(&id) {
            Some(Entry::Loading(loading)) if !self.shutting_down => loading,
            _ => {
                // Shutting down: nobody wants it. Free it off the async threads.
                if let Ok(model) = result {
                    tokio::task::spawn_blocking(move || {
                        drop(model);
                        release_free_memory();
                    });
                }
                return;
            }
        };
        let model: Arc<dyn LoadedModel> = match result {
            Ok(model) => Arc::from(model),
            Err(e) => {
                let reason = e.to_string();
                tracing::warn!(model = %id, error = %reason, "model failed to load");
                self.metrics.load_failed(&id);
                self.publish(PoolEvent::LoadFailed {
                    model: id.clone(),
                    error: reason.clone(),
                });
                for waiter in loading.waiters {
                    waiter.fail(PoolError::LoadFailed {
                        model: id.clone(),
                        reason: reason.clone(),
                    });
                }
                return;
            }
        };
        let memory = model.footprint();
        tracing::info!(
            model = %id,
            load_ms,
            weights = memory.weights,
            kv = memory.kv,
            compute = memory.compute,
            total = memory.total,
            estimate = loading.estimate.total,
            "model loaded"
        );
        *self.loads.entry(id.clone()).or_default() += 1;
        self.metrics.model_loaded(&id);
        self.publish(PoolEvent::Loaded {
            model: id.clone(),
            memory,
            estimate: loading.estimate,
            load_ms,
        });
        let now = SystemTime::now();
        self.serial += 1;
        self.models.insert(
            id.clone(),
            Entry::Ready(Box::new(Ready {
                file: loading.file,
                model,
                serial: self.serial,
                estimate: loading.estimate,
                load_ms,
                loaded_at: now,
                last_used: Instant::now(),
                last_used_at: now,
                in_flight: 0,
                keep_alive: None,
                expires: None,
                drain: None,
            })),
        );
        for waiter in loading.waiters {
            self.grant(&id, waiter);
        }
        self.start_idle_timer(&id);
    }

    fn on_released(&mut self, id: &str, serial: u64) {
        let Some(Entry::Ready(ready)) = self.models.get_mut(id) else {
            return;
        };
        if ready.serial != serial {
            return;
        }
        ready.in_flight = ready.in_flight.saturating_sub(1);
        ready.last_used = Instant::now();
        ready.last_used_at = SystemTime::now();
        let in_flight = ready.in_flight;
        let drained = in_flight == 0 && ready.drain.is_some();
        self.publish(PoolEvent::RequestFinished {
            model: id.to_string(),
            in_flight,
        });
        if drained {
            self.finish_unload(id);
        } else if in_flight == 0 {
            self.start_idle_timer(id);
        }
    }

    /// The model's idle timeout: the last request's, else its own setting, else the global one.
    /// Pinned models have none.
    fn idle_timeout(&self, id: &str, ready: &Ready) -> IdleTimeout {
        if self.config.pinned.contains(id) {
            return IdleTimeout::Never;
        }
        ready
            .keep_alive
            .or_else(|| self.config.idle_timeouts.get(id).copied())
            .unwrap_or(self.config.idle_timeout)
    }

    /// Starts the idle countdown of a model no request is using.
    fn start_idle_timer(&mut self, id: &str) {
        let Some(Entry::Ready(ready)) = self.models.get(id) else {
            return;
        };
        if ready.in_flight > 0 || ready.drain.is_some() {
            return;
        }
        match self.idle_timeout(id, ready) {
            IdleTimeout::Never => {
                self.timers.clear(id);
                if let Some(Entry::Ready(ready)) = self.models.get_mut(id) {
                    ready.expires = None;
                }
            }
            IdleTimeout::After(after) if after.is_zero() => {
                self.begin_unload(id, UnloadReason::Idle);
            }
            IdleTimeout::After(after) => {
                // From the last use, so a changed timeout moves the deadline it would have had.
                let serial = ready.serial;
                let at = tokio::time::Instant::from_std(ready.last_used) + after;
                let expires = ready.last_used_at + after;
                self.timers.set(id, serial, at);
                if let Some(Entry::Ready(ready)) = self.models.get_mut(id) {
                    ready.expires = Some(expires);
                }
            }
        }
    }

    fn on_idle_expired(&mut self, id: &str, serial: u64) {
        let Some(Entry::Ready(ready)) = self.models.get(id) else {
            return;
        };
        // A request may have started (or the model been reloaded) since the timer fired.
        if ready.serial != serial || ready.in_flight > 0 || ready.drain.is_some() {
            return;
        }
        if self.config.pinned.contains(id) {
            return;
        }
        tracing::info!(model = %id, "idle timeout: unloading");
        self.begin_unload(id, UnloadReason::Idle);
    }

    // ----- letting a model go -----

    /// An explicit stop: 404 when not loaded, 409 when pinned.
    fn stop(&mut self, id: &str) -> Result<oneshot::Receiver<UnloadReport>, PoolError> {
        match self.models.get(id) {
            None => return Err(PoolError::NotLoaded(id.to_string())),
            Some(Entry::Loading(_)) => return Err(PoolError::StillLoading(id.to_string())),
            Some(Entry::Ready(_)) if self.config.pinned.contains(id) => {
                return Err(PoolError::Pinned {
                    model: id.to_string(),
                    source_name: self.config.config_source.clone(),
                })
            }
            Some(Entry::Ready(_)) => self.begin_unload(id, UnloadReason::Requested),
            Some(Entry::Unloading(_)) => {}
        }
        Ok(self.report_for(id))
    }

    /// Every unpinned model, letting their requests finish first.
    fn flush(&mut self) -> Vec<oneshot::Receiver<UnloadReport>> {
        let ids: Vec<String> = self
            .models
            .iter()
            .filter(|(id, entry)| match entry {
                Entry::Ready(_) => !self.config.pinned.contains(*id),
                Entry::Unloading(_) => true,
                Entry::Loading(_) => false,
            })
            .map(|(id, _)| id.clone())
            .collect();
        ids.iter()
            .map(|id| {
                self.begin_unload(id, UnloadReason::Flush);
                self.report_for(id)
            })
            .collect()
    }

    fn report_for(&mut self, id: &str) -> oneshot::Receiver<UnloadReport> {
        let (tx, rx) = oneshot::channel();
        self.reports.entry(id.to_string()).or_default().push(tx);
        rx
    }

    /// Marks a ready model for unloading. With no request in flight it goes now; otherwise a
    /// stop ends its requests at once (each gets an error event naming why) and a flush gives
    /// them [`FLUSH_GRACE`] to finish.
    fn begin_unload(&mut self, id: &str, reason: UnloadReason) {
        let Some(Entry::Ready(ready)) = self.models.get_mut(id) else {
            return;
        };
        let in_flight = ready.in_flight;
        let serial = ready.serial;
        ready.expires = None;
        self.timers.clear(id);
        let ends_requests = !matches!(reason, UnloadReason::Flush | UnloadReason::Idle);
        match &mut ready.drain {
            // A stop during a flush's grace period still means "now".
            Some(drain) if drain.reason == UnloadReason::Flush && ends_requests => {
                drain.reason = reason;
            }
            Some(_) => return,
            None => {
                ready.drain = Some(Drain {
                    reason,
                    waiters: Vec::new(),
                })
            }
        }
        if in_flight > 0 {
            if ends_requests {
                ready.model.stop(&format!(
                    "the model '{id}' was stopped ({}) while this request ran",
                    reason.as_str()
                ));
                self.schedule(id, serial, DeadlineKind::Force, STOP_GRACE);
            } else {
                self.schedule(id, serial, DeadlineKind::Grace, FLUSH_GRACE);
            }
        }
        self.publish(PoolEvent::Unloading {
            model: id.to_string(),
            reason,
            in_flight,
        });
        if in_flight == 0 {
            self.finish_unload(id);
        }
    }

    /// No request holds the model any more: free it on a blocking thread and measure.
    fn finish_unload(&mut self, id: &str) {
        let Some(Entry::Ready(ready)) = self.models.remove(id) else {
            return;
        };
        let Ready {
            file,
            model,
            estimate,
            drain,
            ..
        } = *ready;
        let (reason, waiters) = drain.map_or((UnloadReason::Requested, Vec::new()), |d| {
            (d.reason, d.waiters)
        });
        let footprint = model.footprint();
        self.models.insert(
            id.to_string(),
            Entry::Unloading(Unloading {
                file,
                estimate,
                footprint,
                waiters,
            }),
        );
        let done = self.internal_tx.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            let started = Instant::now();
            let rss_before = process_rss();
            // The last handle's drop joins the model's worker thread and frees its memory;
            // glibc keeps freed chunks until trimmed.
            let _ = tokio::task::spawn_blocking(move || {
                drop(model);
                release_free_memory();
            })
            .await;
            let rss_after = process_rss();
            let reclaimed = rss_before.zip(rss_after).map(|(b, a)| b.saturating_sub(a));
            let reclaimed_percent = reclaimed
                .filter(|_| footprint.total > 0)
                .map(|r| r as f64 * 100.0 / footprint.total as f64);
            let _ = done.send(Internal::Unloaded(UnloadReport {
                model: id,
                reason,
                footprint,
                rss_before,
                rss_after,
                reclaimed,
                reclaimed_percent,
                duration_ms: millis(started.elapsed()),
                since_pressure_ms: None,
            }));
        });
    }

    fn on_unloaded(&mut self, mut report: UnloadReport) {
        let id = report.model.clone();
        report.since_pressure_ms = self
            .pressure_seen
            .remove(&id)
            .map(|seen| millis(seen.elapsed()));
        let Some(Entry::Unloading(unloading)) = self.models.remove(&id) else {
            return;
        };
        match report.reclaimed_percent {
            Some(percent) if percent < RECLAIM_WARNING => tracing::warn!(
                model = %id, reason = report.reason.as_str(), reclaimed = ?report.reclaimed,
                footprint = report.footprint.total, percent,
                "model unloaded, but less than 90% of its memory came back"
            ),
            _ => tracing::info!(
                model = %id, reason = report.reason.as_str(), reclaimed = ?report.reclaimed,
                footprint = report.footprint.total, percent = ?report.reclaimed_percent,
                duration_ms = report.duration_ms, since_pressure_ms = ?report.since_pressure_ms,
                "model unloaded"
            ),
        }
        self.metrics.model_unloaded(report.reason.as_str());
        self.publish(PoolEvent::Unloaded(report.clone()));
        for tx in self.reports.remove(&id).unwrap_or_default() {
            let _ = tx.send(report.clone());
        }
        // Loads that waited for this model's room.
        let ready_to_start: Vec<String> = self
            .models
            .iter_mut()
            .filter_map(|(other, entry)| match entry {
                Entry::Loading(l) => {
                    let was_waiting = l.waiting_for.remove(&id);
                    (was_waiting && l.waiting_for.is_empty()).then(|| other.clone())
                }
                _ => None,
            })
            .collect();
        for other in ready_to_start {
            self.start_load(&other);
        }
        // Requests that arrived while it unloaded get it loaded again.
        for waiter in unloading.waiters {
            self.want(unloading.file.clone(), unloading.estimate, waiter);
        }
    }

    /// New limits and timeouts, in force at once: idle deadlines move, and a lower limit
    /// evicts idle models now.
    fn reconfigure(&mut self, live: LiveConfig) {
        self.config.limit = live.limit;
        self.config.margins = live.margins;
        self.config.floor = live.floor;
        self.config.pinned = live.pinned;
        self.config.idle_timeout = live.idle_timeout;
        self.config.idle_timeouts = live.idle_timeouts;
        self.publish(PoolEvent::SettingsChanged {
            changed: live.changed,
            restart_required: live.restart_required,
        });
        let ready: Vec<String> = self
            .models
            .iter()
            .filter(|(_, e)| matches!(e, Entry::Ready(_)))
            .map(|(id, _)| id.clone())
            .collect();
        for id in &ready {
            self.start_idle_timer(id);
        }
        let decision = admission::decide(
            &Ask {
                model: "(none)",
                need: 0,
                limit: self.config.limit,
                margin: 0,
                system: None,
            },
            &self.holders(),
        );
        let evict = match decision {
            Decision::Admit { evict } => evict,
            Decision::Refuse { message, .. } => {
                tracing::warn!("the pool is over its new limit and cannot shrink now: {message}");
                Vec::new()
            }
        };
        for victim in evict {
            tracing::info!(model = %victim, limit = self.config.limit, "evicting: the pool limit was lowered");
            self.metrics.model_evicted();
            self.publish(PoolEvent::Evicted {
                model: victim.clone(),
                for_model: None,
            });
            self.begin_unload(&victim, UnloadReason::Evicted);
        }
    }

    /// Unloads what the pressure tier calls for. Constrained: idle models beyond the most
    /// recently used one. Critical: the least recently used idle model, one per look (the
    /// monitor looks every second while the tier holds). Emergency: every unpinned model, ending
    /// its requests. Busy models are left alone below emergency; pinned ones always.
    fn on_pressure(&mut self, report: PressureReport) {
        let changed = report.tier != self.tier;
        self.tier = report.tier;
        if changed {
            self.publish(PoolEvent::Pressure {
                tier: report.tier,
                previous: report.previous,
                wake: report.wake,
                used_percent: (report.used_percent * 10.0).round() / 10.0,
                available: report.available,
                stall_some_avg10: report.stall_some,
            });
        }
        let mut idle: Vec<(Instant, String)> = self
            .models
            .iter()
            .filter_map(|(id, entry)| match entry {
                Entry::Ready(r)
                    if r.drain.is_none()
                        && r.in_flight == 0
                        && !self.config.pinned.contains(id) =>
                {
                    Some((r.last_used, id.clone()))
                }
                _ => None,
            })
            .collect();
        idle.sort();
        let victims: Vec<String> = match report.tier {
            Tier::Normal | Tier::Elevated => Vec::new(),
            Tier::Constrained => {
                // Keep the most recently used one.
                idle.pop();
                idle.into_iter().map(|(_, id)| id).collect()
            }
            Tier::Critical => idle.into_iter().take(1).map(|(_, id)| id).collect(),
            Tier::Emergency => self
                .models
                .iter()
                .filter(|(id, e)| matches!(e, Entry::Ready(_)) && !self.config.pinned.contains(*id))
                .map(|(id, _)| id.clone())
                .collect(),
        };
        for id in victims {
            tracing::warn!(model = %id, tier = ?report.tier, used_percent = report.used_percent, "memory pressure: unloading");
            self.pressure_seen.insert(id.clone(), report.seen);
            self.begin_unload(&id, UnloadReason::Pressure);
        }
    }

    // ----- reporting -----

    fn status(&self) -> PoolStatus {
        let mut models: Vec<ModelStatus> = self
            .models
            .iter()
            .map(|(id, entry)| model_status(id, entry, &self.config))
            .collect();
        models.sort_by(|a, b| a.id.cmp(&b.id));
        let used = models
            .iter()
            .map(|m| m.memory.unwrap_or(m.estimate).total)
            .sum();
        PoolStatus {
            limit: self.config.limit,
            used,
            margin: self.config.margins.for_tier(self.tier),
            margins: self.config.margins,
            tier: self.tier,
            floor: self.config.floor,
            models,
            loads: self.loads.clone(),
        }
    }

    /// Shutdown: every waiter is told, every model is stopped and unloaded the usual way
    /// (measured, with events), and the loop keeps serving the pool's own reports until all
    /// are freed or [`SHUTDOWN_WAIT`] has passed.
    async fn shutdown(&mut self) {
        self.shutting_down = true;
        let ids: Vec<String> = self.models.keys().cloned().collect();
        for id in &ids {
            match self.models.get_mut(id) {
                Some(Entry::Loading(loading)) => {
                    for waiter in std::mem::take(&mut loading.waiters) {
                        waiter.fail(PoolError::ShuttingDown);
                    }
                }
                Some(Entry::Unloading(unloading)) => {
                    for waiter in std::mem::take(&mut unloading.waiters) {
                        waiter.fail(PoolError::ShuttingDown);
                    }
                }
                Some(Entry::Ready(ready)) => {
                    if let Some(drain) = &mut ready.drain {
                        for waiter in std::mem::take(&mut drain.waiters) {
                            waiter.fail(PoolError::ShuttingDown);
                        }
                    }
                }
                None => {}
            }
            self.begin_unload(id, UnloadReason::Shutdown);
        }
        let deadline = tokio::time::Instant::now() + SHUTDOWN_WAIT;
        while !self.models.is_empty() {
            match tokio::time::timeout_at(deadline, self.internal_rx.recv()).await {
                Ok(Some(message)) => self.on_internal(message),
                Ok(None) => break,
                Err(_) => {
                    let left: Vec<&String> = self.models.keys().collect();
                    tracing::warn!(
                        ?left,
                        "shutdown: models still loading or unloading; exiting anyway"
                    );
                    break;
                }
            }
        }
    }
}

fn model_status(id: &str, entry: &Entry, config: &PoolConfig) -> ModelStatus {
    let pinned = config.pinned.contains(id);
    match entry {
        Entry::Loading(l) => ModelStatus {
            id: id.to_string(),
            path: l.file.path.display().to_string(),
            state: ModelState::Loading,
            pinned,
            memory: None,
            estimate: l.estimate,
            estimate_error_percent: None,
            in_flight: 0,
            load_ms: None,
            loaded_at: None,
            last_used: None,
            expires_at: None,
            stats: None,
        },
        Entry::Unloading(u) => ModelStatus {
            id: id.to_string(),
            path: u.file.path.display().to_string(),
            state: ModelState::Unloading,
            pinned,
            memory: Some(u.footprint),
            estimate: u.estimate,
            estimate_error_percent: error_percent(u.estimate, u.footprint),
            in_flight: 0,
            load_ms: None,
            loaded_at: None,
            last_used: None,
            expires_at: None,
            stats: None,
        },
        Entry::Ready(r) => {
            let memory = r.model.footprint();
            let state = if r.drain.is_some() {
                ModelState::Unloading
            } else if r.in_flight > 0 {
                ModelState::Busy
            } else {
                ModelState::Ready
            };
            ModelStatus {
                id: id.to_string(),
                path: r.file.path.display().to_string(),
                state,
                pinned,
                memory: Some(memory),
                estimate: r.estimate,
                estimate_error_percent: error_percent(r.estimate, memory),
                in_flight: r.in_flight,
                load_ms: Some(r.load_ms),
                loaded_at: Some(unix_ms(r.loaded_at)),
                last_used: Some(unix_ms(r.last_used_at)),
                expires_at: r.expires.map(unix_ms),
                stats: Some(r.model.stats()),
            }
        }
    }
}

fn error_percent(estimate: Footprint, measured: Footprint) -> Option<f64> {
    (measured.total > 0)
        .then(|| (estimate.total as f64 - measured.total as f64) * 100.0 / measured.total as f64)
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(millis)
        .unwrap_or_default()
}
