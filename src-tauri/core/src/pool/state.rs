//! The pool's decisions, and nothing else: one input and the time in, the effects out.
//!
//! A model moves `Loading → Ready → Unloading → gone`. A load may first wait for the models it
//! evicts to finish unloading; an unload of a model with requests in flight first waits for
//! them (flush) or ends them (stop, shutdown). Everything slow or outside the pool (loading,
//! freeing memory, timers, telling the world) is an [`Effect`] the driver performs; what comes
//! of it returns as an [`Input`]. So every rule here is tested by feeding inputs and reading
//! effects, with no runtime, no clock and no model (see `state/tests.rs`).
//!
//! Replies to callers are sent from here: a reply changes nothing in the pool, and the caller
//! who asked is the one waiting for it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::admission::{self, Ask, Decision, Hold, Holder};
use super::{
    millis, Command, Fit, Lease, ModelState, ModelStatus, PoolConfig, PoolError, PoolEvent,
    PoolLimits, PoolStatus, PressureCause, UnloadReason, UnloadReport,
};
use crate::engine::{EngineError, Footprint, LoadedModel};
use crate::memory::{MemoryProbe, SystemMemory};
use crate::metrics::Metrics;
use crate::models::ModelFile;
use crate::pressure::PressureReport;
use crate::protect::Protection;
use crate::vocab::{memory_size, unix_ms, IdleTimeout, Tier};

/// How long a flush lets running requests finish before it ends them.
pub(super) const FLUSH_GRACE: Duration = Duration::from_secs(30);
/// How long a stopped model waits for its ended requests to let go of it. A client that stops
/// reading without hanging up keeps its response (and its lease) alive; the unload goes ahead
/// without it, and the memory comes back when that connection finally closes.
pub(super) const STOP_GRACE: Duration = Duration::from_secs(5);
/// Less than this share of a model's footprint coming back on unload is worth a warning.
const RECLAIM_WARNING: f64 = 90.0;

/// The time of an input: the monotonic clock for deadlines and ages (tokio's, so tests can
/// pause it), the wall clock for what the status API shows.
#[derive(Debug, Clone, Copy)]
pub(super) struct Now {
    pub at: Instant,
    pub wall: SystemTime,
}

impl Now {
    pub fn current() -> Self {
        Self {
            at: Instant::now(),
            wall: SystemTime::now(),
        }
    }
}

/// What the pool's own helpers report back to it.
pub(super) enum Report {
    Loaded {
        id: String,
        result: Result<Box<dyn LoadedModel>, EngineError>,
        load_ms: u64,
        protection: Option<Protection>,
    },
    /// Another program is about to change the file of this load of the model.
    FileChanged { id: String, serial: u64 },
    /// A lease was dropped: its request is over.
    Released { id: String, serial: u64 },
    /// A model's memory was freed and measured.
    Unloaded(UnloadReport),
}

/// Everything the pool acts on.
pub(super) enum Input {
    /// A caller's request (all but shutdown, which the driver handles).
    Command(Command),
    Report(Report),
    /// The pressure monitor's latest look.
    Pressure(PressureReport),
    /// A timer set by [`Effect::SetTimer`] went off.
    Timer(Timer),
    /// Stop taking work, end every request, unload every model.
    Shutdown,
}

/// A deadline for one load of one model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Timer {
    pub id: String,
    /// Which load: a timer of an earlier load of the same model is ignored.
    pub serial: u64,
    pub kind: TimerKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum TimerKind {
    /// The idle timeout ran out.
    Idle,
    /// A flush's grace period is over: end the requests still running.
    Grace,
    /// Ended requests had their time to let go: unload without them.
    Force,
}

/// What the driver does for the pool, in order.
pub(super) enum Effect {
    Publish(PoolEvent),
    /// Load the file on a blocking thread, then report [`Report::Loaded`].
    Load {
        id: String,
        path: PathBuf,
        serial: u64,
    },
    /// End the model's running and queued generations, telling each client why.
    EndRequests {
        model: Arc<dyn LoadedModel>,
        reason: String,
    },
    /// Drop the pool's handle of the model off the async threads, measure what came back,
    /// then report [`Report::Unloaded`].
    Free {
        id: String,
        model: Arc<dyn LoadedModel>,
        reason: UnloadReason,
        footprint: Footprint,
    },
    /// Drop a model nobody wants any more (loaded during shutdown), without a report.
    Discard(Box<dyn LoadedModel>),
    /// Sets the model's timer of this kind, replacing the one it had.
    SetTimer {
        timer: Timer,
        at: Instant,
    },
    ClearTimer {
        id: String,
        kind: TimerKind,
    },
}

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

impl Entry {
    fn name(&self) -> &'static str {
        match self {
            Self::Loading(_) => "loading",
            Self::Ready(r) if r.drain.is_some() => "draining",
            Self::Ready(_) => "ready",
            Self::Unloading(_) => "unloading",
        }
    }
}

struct Loading {
    file: ModelFile,
    /// The serial the model will have once loaded.
    serial: u64,
    /// Its file began changing while it loaded: the loaded model is not kept.
    file_changed: bool,
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
    protection: Option<Protection>,
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
    /// The file as the latest of them found it, and its estimate: what the fresh load reads.
    next: Option<(ModelFile, Footprint)>,
}

struct Unloading {
    file: ModelFile,
    /// The file the waiters' fresh load reads (the same path, perhaps new contents), and its
    /// estimate.
    next: (ModelFile, Footprint),
    estimate: Footprint,
    footprint: Footprint,
    waiters: Vec<Waiter>,
}

/// The pool's state. Only [`State::handle`] changes it.
pub(super) struct State {
    config: PoolConfig,
    probe: Arc<dyn MemoryProbe>,
    metrics: Metrics,
    /// Where leases report their release.
    reports: mpsc::UnboundedSender<Report>,
    models: HashMap<String, Entry>,
    loads: BTreeMap<String, u64>,
    /// The last load's serial.
    serial: u64,
    /// The latest pressure tier; loads are refused from critical up.
    tier: Tier,
    /// The monitor's latest look found memory running out sooner than an unload takes (another
    /// app allocating fast): busy models are unloaded too, and nothing loads meanwhile.
    urgent: bool,
    /// When the monitor saw the pressure that is unloading these models.
    pressure_seen: HashMap<String, (Instant, PressureCause)>,
    shutting_down: bool,
    /// Who waits for the report of each model's unload.
    unload_waiters: HashMap<String, Vec<oneshot::Sender<UnloadReport>>>,
    /// The time of the input being handled.
    now: Now,
    /// The effects of the input being handled.
    effects: Vec<Effect>,
}

impl State {
    pub(super) fn new(
        config: PoolConfig,
        probe: Arc<dyn MemoryProbe>,
        metrics: Metrics,
        reports: mpsc::UnboundedSender<Report>,
    ) -> Self {
        Self {
            config,
            probe,
            metrics,
            reports,
            models: HashMap::new(),
            loads: BTreeMap::new(),
            serial: 0,
            tier: Tier::Normal,
            urgent: false,
            pressure_seen: HashMap::new(),
            shutting_down: false,
            unload_waiters: HashMap::new(),
            now: Now::current(),
            effects: Vec::new(),
        }
    }

    /// Decides what `input` calls for at `now`.
    pub(super) fn handle(&mut self, input: Input, now: Now) -> Vec<Effect> {
        self.now = now;
        match input {
            Input::Command(command) => self.on_command(command),
            Input::Report(Report::Loaded {
                id,
                result,
                load_ms,
                protection,
            }) => self.on_loaded(id, result, load_ms, protection),
            Input::Report(Report::FileChanged { id, serial }) => self.on_file_changed(&id, serial),
            Input::Report(Report::Released { id, serial }) => self.on_released(&id, serial),
            Input::Report(Report::Unloaded(report)) => self.on_unloaded(report),
            Input::Pressure(report) => self.on_pressure(report),
            Input::Timer(timer) => self.on_timer(timer),
            Input::Shutdown => self.shutdown(),
        }
        std::mem::take(&mut self.effects)
    }

    /// No model is loading, loaded or unloading.
    pub(super) fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    /// The models still in the pool, for the shutdown's last word.
    pub(super) fn model_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.models.keys().cloned().collect();
        ids.sort();
        ids
    }

    fn effect(&mut self, effect: Effect) {
        self.effects.push(effect);
    }

    fn publish(&mut self, event: PoolEvent) {
        self.effect(Effect::Publish(event));
    }

    /// A message that meets a model in another state than it was meant for (a timer of an
    /// earlier load, a lease released after a stop) changes nothing; the log says what it met.
    fn ignored(&self, what: &str, id: &str) {
        let state = self.models.get(id).map_or("gone", Entry::name);
        tracing::debug!(model = %id, state, "{what}: ignored, the model has moved on");
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
                let answer = self.stop(&id);
                let _ = reply.send(answer);
            }
            Command::Flush { reply } => {
                let answer = self.flush();
                let _ = reply.send(answer);
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
            Command::Reconfigure { limits, reply } => {
                self.reconfigure(limits);
                let _ = reply.send(());
            }
            // The driver takes shutdown: it waits for the unloads.
            Command::Shutdown { reply } => drop(reply),
        }
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
        if matches!(waiter, Waiter::Request(..)) {
            if let Some(message) = self.closed_by_pressure(&file.id, "take new requests") {
                return self.refuse(&file.id, PoolError::LowMemory { message }, waiter);
            }
        }
        // The file on disk is no longer the one loaded (renamed over, or rewritten under weights
        // read into memory): the model goes once its requests end, and this waiter gets the new
        // file. (A rewrite under mapped weights unloads at once; see `on_file_changed`.)
        if let Some(Entry::Ready(ready)) = self.models.get(&file.id) {
            let (loaded, now) = (ready.file.version, file.version);
            if ready.drain.is_none() && loaded.is_known() && now.is_known() && loaded != now {
                tracing::info!(model = %file.id, "the model's file was replaced since it loaded: reloading it");
                self.begin_unload(&file.id, UnloadReason::FileReplaced);
            }
        }
        match self.models.get_mut(&file.id) {
            Some(Entry::Ready(ready)) => match &mut ready.drain {
                Some(drain) => {
                    drain.waiters.push(waiter);
                    drain.next = Some((file, estimate));
                }
                None => self.grant(&file.id, waiter),
            },
            Some(Entry::Loading(loading)) => loading.waiters.push(waiter),
            Some(Entry::Unloading(unloading)) => {
                unloading.waiters.push(waiter);
                unloading.next = (file, estimate);
            }
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
                ready.expires = None;
                ready.keep_alive = keep_alive;
                ready.in_flight += 1;
                let in_flight = ready.in_flight;
                let lease = Lease::new(
                    Arc::clone(&ready.model),
                    id.to_string(),
                    ready.serial,
                    self.reports.clone(),
                );
                // A caller that gave up drops the lease inside the error, which releases it.
                let _ = reply.send(Ok(lease));
                self.effect(Effect::ClearTimer {
                    id: id.to_string(),
                    kind: TimerKind::Idle,
                });
                self.publish(PoolEvent::RequestStarted {
                    model: id.to_string(),
                    in_flight,
                });
            }
            Waiter::Load(reply) => {
                let status = self
                    .models
                    .get(id)
                    .map(|entry| model_status(id, entry, &self.config.limits))
                    .ok_or_else(|| PoolError::NotLoaded(id.to_string()));
                let _ = reply.send(status);
            }
        }
    }

    /// Decides whether `file` may load, evicts what must make room, and starts the load.
    fn admit(&mut self, file: ModelFile, estimate: Footprint, waiter: Waiter) {
        let id = file.id.clone();
        let evict = match self.admission(&id, estimate) {
            Ok(evict) => evict,
            Err(error) => return self.refuse(&id, error, waiter),
        };
        self.evict(&evict, Some(&id));
        self.publish(PoolEvent::Loading {
            model: id.clone(),
            estimate,
        });
        let start_now = evict.is_empty();
        self.serial += 1;
        self.models.insert(
            id.clone(),
            Entry::Loading(Loading {
                file,
                serial: self.serial,
                file_changed: false,
                estimate,
                waiters: vec![waiter],
                waiting_for: evict.into_iter().collect(),
            }),
        );
        if start_now {
            self.start_load(&id);
        }
    }

    /// Whether a model of `estimate` may load now: the idle models to evict first, or why not.
    fn admission(&self, id: &str, estimate: Footprint) -> Result<Vec<String>, PoolError> {
        if let Some(message) = self.closed_by_pressure(id, "be loaded") {
            return Err(PoolError::LowMemory { message });
        }
        let system = self.probe.system();
        if let Some(message) = self.under_floor(id, system) {
            return Err(PoolError::LowMemory { message });
        }
        let ask = Ask {
            model: id,
            need: estimate.total,
            limit: self.config.limits.limit,
            margin: self.config.limits.margins.for_tier(self.tier),
            system,
        };
        match admission::decide(&ask, &self.holders()) {
            Decision::Admit { evict } => Ok(evict),
            Decision::Refuse { message, retry } => {
                Err(PoolError::InsufficientMemory { message, retry })
            }
        }
    }

    /// Unloads idle models to make room: for `for_model`, or for a lowered limit (`None`).
    fn evict(&mut self, victims: &[String], for_model: Option<&str>) {
        for victim in victims {
            tracing::info!(model = %victim, for_model = ?for_model, limit = self.config.limits.limit, "evicting the least recently used idle model");
            self.metrics.model_evicted();
            self.publish(PoolEvent::Evicted {
                model: victim.clone(),
                for_model: for_model.map(String::from),
            });
            self.begin_unload(victim, UnloadReason::Evicted);
        }
    }

    fn refuse(&mut self, id: &str, error: PoolError, waiter: Waiter) {
        tracing::warn!(model = %id, error = %error, "refused");
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
                    Entry::Loading(l) => (l.estimate.total, self.now.at, Hold::Loading),
                    Entry::Unloading(u) => (u.footprint.total, self.now.at, Hold::Changing),
                    Entry::Ready(r) => {
                        let hold = if r.drain.is_some() {
                            Hold::Changing
                        } else if self.config.limits.pinned.contains(id) {
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

    /// At critical pressure and above the pool neither loads nor takes new requests: why, in
    /// words, when that is so. `what` is what is refused ("be loaded", "take new requests").
    fn closed_by_pressure(&self, id: &str, what: &str) -> Option<String> {
        if self.urgent && self.tier < Tier::Critical {
            return Some(format!(
                "'{id}' cannot {what} now: another app is taking memory fast and it is running out; Headroom is giving memory back. Retry shortly"
            ));
        }
        (self.tier >= Tier::Critical).then(|| {
            format!(
                "'{id}' cannot {what} now: memory pressure is {}; Headroom is freeing memory. Retry shortly, or close apps",
                self.tier
            )
        })
    }

    /// Below the memory floor no load starts, whatever its size.
    fn under_floor(&self, id: &str, system: Option<SystemMemory>) -> Option<String> {
        let system = system?;
        let floor = self.config.limits.floor;
        (system.available < floor).then(|| {
            format!(
                "cannot load '{id}' now: only {} of memory is available, under the {} floor (memory_floor); retry when memory is freed, or close apps",
                memory_size(system.available),
                memory_size(floor)
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
        match self.admission(id, estimate) {
            Ok(evict) => Fit {
                fits: true,
                would_evict: evict,
                reason: None,
            },
            Err(error) => Fit {
                fits: false,
                would_evict: Vec::new(),
                reason: Some(error.to_string()),
            },
        }
    }

    fn start_load(&mut self, id: &str) {
        let Some(Entry::Loading(loading)) = self.models.get(id) else {
            return;
        };
        tracing::info!(model = %id, path = %loading.file.path.display(), estimate = loading.estimate.total, "loading model");
        let (path, serial) = (loading.file.path.clone(), loading.serial);
        self.effect(Effect::Load {
            id: id.to_string(),
            path,
            serial,
        });
    }

    fn on_loaded(
        &mut self,
        id: String,
        result: Result<Box<dyn LoadedModel>, EngineError>,
        load_ms: u64,
        protection: Option<Protection>,
    ) {
        let loading = match self.models.remove(&id) {
            Some(Entry::Loading(loading)) if !self.shutting_down => loading,
            other => {
                // Shutting down, nobody wants it (its waiters were told); or a load that
                // is not this model's.
                if let Some(entry) = other.filter(|e| !matches!(e, Entry::Loading(_))) {
                    self.models.insert(id.clone(), entry);
                }
                self.ignored("load finished", &id);
                if let Ok(model) = result {
                    self.effect(Effect::Discard(model));
                }
                return;
            }
        };
        let result = match result {
            Ok(model) if loading.file_changed => {
                self.effect(Effect::Discard(model));
                Err(EngineError::BadModelFile {
                    path: loading.file.path.display().to_string(),
                    reason: "another program changed the file while it loaded; retry once the new file is complete".into(),
                })
            }
            other => other,
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
        self.models.insert(
            id.clone(),
            Entry::Ready(Box::new(Ready {
                file: loading.file,
                model,
                serial: loading.serial,
                estimate: loading.estimate,
                load_ms,
                protection,
                loaded_at: self.now.wall,
                last_used: self.now.at,
                last_used_at: self.now.wall,
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
        let now = self.now;
        let Some(Entry::Ready(ready)) = self.models.get_mut(id) else {
            return self.ignored("request finished", id);
        };
        if ready.serial != serial {
            return self.ignored("request of an earlier load finished", id);
        }
        ready.in_flight = ready.in_flight.saturating_sub(1);
        ready.last_used = now.at;
        ready.last_used_at = now.wall;
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
        let limits = &self.config.limits;
        if limits.pinned.contains(id) {
            return IdleTimeout::Never;
        }
        ready
            .keep_alive
            .or_else(|| limits.idle_timeouts.get(id).copied())
            .unwrap_or(limits.idle_timeout)
    }

    /// Starts the idle countdown of a model no request is using.
    fn start_idle_timer(&mut self, id: &str) {
        let Some(Entry::Ready(ready)) = self.models.get(id) else {
            return;
        };
        if ready.in_flight > 0 || ready.drain.is_some() {
            return;
        }
        let (serial, last_used, last_used_at) = (ready.serial, ready.last_used, ready.last_used_at);
        let expires = match self.idle_timeout(id, ready) {
            IdleTimeout::Never => {
                self.effect(Effect::ClearTimer {
                    id: id.to_string(),
                    kind: TimerKind::Idle,
                });
                None
            }
            IdleTimeout::After(after) if after.is_zero() => {
                return self.begin_unload(id, UnloadReason::Idle);
            }
            IdleTimeout::After(after) => {
                // From the last use, so a changed timeout moves the deadline it would have had.
                self.effect(Effect::SetTimer {
                    timer: Timer {
                        id: id.to_string(),
                        serial,
                        kind: TimerKind::Idle,
                    },
                    at: last_used + after,
                });
                Some(last_used_at + after)
            }
        };
        if let Some(Entry::Ready(ready)) = self.models.get_mut(id) {
            ready.expires = expires;
        }
    }

    fn on_timer(&mut self, timer: Timer) {
        let Timer { id, serial, kind } = timer;
        let current = match self.models.get(&id) {
            Some(Entry::Ready(ready)) if ready.serial == serial => ready,
            _ => return self.ignored("timer", &id),
        };
        match kind {
            TimerKind::Idle => {
                // A request may have started since the timer was set.
                if current.in_flight > 0 || current.drain.is_some() {
                    return self.ignored("idle timer", &id);
                }
                if self.config.limits.pinned.contains(&id) {
                    return self.ignored("idle timer of a pinned model", &id);
                }
                tracing::info!(model = %id, "idle timeout: unloading");
                self.begin_unload(&id, UnloadReason::Idle);
            }
            TimerKind::Grace | TimerKind::Force
                if current.drain.is_none() || current.in_flight == 0 =>
            {
                self.ignored("drain deadline", &id)
            }
            TimerKind::Grace => {
                let why = current
                    .drain
                    .as_ref()
                    .map_or("flush", |d| d.reason.as_str());
                tracing::info!(model = %id, reason = why, "requests still running after the grace period; ending them");
                let model = Arc::clone(&current.model);
                self.effect(Effect::EndRequests {
                    model,
                    reason: format!(
                        "the model was unloaded ({why}) after waiting {} s for this request",
                        FLUSH_GRACE.as_secs()
                    ),
                });
                self.set_drain_timer(&id, serial, TimerKind::Force, STOP_GRACE);
            }
            TimerKind::Force => {
                tracing::warn!(
                    model = %id,
                    in_flight = current.in_flight,
                    "ended requests still hold the model (clients neither read nor hang up); unloading without them"
                );
                self.finish_unload(&id);
            }
        }
    }

    fn set_drain_timer(&mut self, id: &str, serial: u64, kind: TimerKind, after: Duration) {
        self.effect(Effect::SetTimer {
            timer: Timer {
                id: id.to_string(),
                serial,
                kind,
            },
            at: self.now.at + after,
        });
    }

    // ----- letting a model go -----

    /// An explicit stop: 404 when not loaded, 409 when pinned or still loading.
    fn stop(&mut self, id: &str) -> Result<oneshot::Receiver<UnloadReport>, PoolError> {
        match self.models.get(id) {
            None => return Err(PoolError::NotLoaded(id.to_string())),
            Some(Entry::Loading(_)) => return Err(PoolError::StillLoading(id.to_string())),
            Some(Entry::Ready(_)) if self.config.limits.pinned.contains(id) => {
                return Err(PoolError::Pinned {
                    model: id.to_string(),
                    source_name: self.config.config_source.clone(),
                })
            }
            Some(Entry::Ready(_)) => self.begin_unload(id, UnloadReason::Requested),
            Some(Entry::Unloading(_)) => {}
        }
        Ok(self.unload_report_for(id))
    }

    /// Every unpinned model, letting their requests finish first.
    fn flush(&mut self) -> Vec<oneshot::Receiver<UnloadReport>> {
        let mut ids: Vec<String> = self
            .models
            .iter()
            .filter(|(id, entry)| match entry {
                Entry::Ready(_) => !self.config.limits.pinned.contains(*id),
                Entry::Unloading(_) => true,
                Entry::Loading(_) => false,
            })
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        ids.iter()
            .map(|id| {
                self.begin_unload(id, UnloadReason::Flush);
                self.unload_report_for(id)
            })
            .collect()
    }

    fn unload_report_for(&mut self, id: &str) -> oneshot::Receiver<UnloadReport> {
        let (tx, rx) = oneshot::channel();
        self.unload_waiters
            .entry(id.to_string())
            .or_default()
            .push(tx);
        rx
    }

    /// Marks a ready model for unloading. With no request in flight it goes now; otherwise a
    /// stop ends its requests at once (each gets an error event naming why) and a flush or an
    /// idle unload gives them [`FLUSH_GRACE`] to finish.
    fn begin_unload(&mut self, id: &str, reason: UnloadReason) {
        let Some(Entry::Ready(ready)) = self.models.get_mut(id) else {
            return;
        };
        let in_flight = ready.in_flight;
        let serial = ready.serial;
        ready.expires = None;
        // These wait for running requests (up to FLUSH_GRACE); the others end them now.
        let graceful = |r: UnloadReason| {
            matches!(
                r,
                UnloadReason::Flush | UnloadReason::Idle | UnloadReason::FileReplaced
            )
        };
        let ends_requests = !graceful(reason);
        match &mut ready.drain {
            // A stop during a flush's (or an idle unload's) grace period still means "now".
            Some(drain) if graceful(drain.reason) && ends_requests => {
                drain.reason = reason;
            }
            Some(_) => return,
            None => {
                ready.drain = Some(Drain {
                    reason,
                    waiters: Vec::new(),
                    next: None,
                })
            }
        }
        let model = Arc::clone(&ready.model);
        self.effect(Effect::ClearTimer {
            id: id.to_string(),
            kind: TimerKind::Idle,
        });
        if in_flight > 0 {
            if ends_requests {
                self.effect(Effect::EndRequests {
                    model,
                    reason: reason.ended_request(id),
                });
                self.set_drain_timer(id, serial, TimerKind::Force, STOP_GRACE);
            } else {
                self.set_drain_timer(id, serial, TimerKind::Grace, FLUSH_GRACE);
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

    /// No request holds the model any more: hand it to the driver to free and measure.
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
        let (reason, waiters, next) = drain
            .map_or((UnloadReason::Requested, Vec::new(), None), |d| {
                (d.reason, d.waiters, d.next)
            });
        let footprint = model.footprint();
        self.models.insert(
            id.to_string(),
            Entry::Unloading(Unloading {
                next: next.unwrap_or_else(|| (file.clone(), estimate)),
                file,
                estimate,
                footprint,
                waiters,
            }),
        );
        self.effect(Effect::Free {
            id: id.to_string(),
            model,
            reason,
            footprint,
        });
    }

    fn on_unloaded(&mut self, mut report: UnloadReport) {
        let id = report.model.clone();
        let Some(Entry::Unloading(unloading)) = self.models.remove(&id) else {
            return self.ignored("unload finished", &id);
        };
        if let Some((seen, cause)) = self.pressure_seen.remove(&id) {
            report.since_pressure_ms = Some(millis(self.now.at.saturating_duration_since(seen)));
            report.pressure = Some(cause);
        }
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
        for tx in self.unload_waiters.remove(&id).unwrap_or_default() {
            let _ = tx.send(report.clone());
        }
        // Loads that waited for this model's room.
        let mut ready_to_start: Vec<String> = self
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
        ready_to_start.sort();
        for other in ready_to_start {
            self.start_load(&other);
        }
        // Requests that arrived while it unloaded get it loaded again.
        for waiter in unloading.waiters {
            let (file, estimate) = unloading.next.clone();
            self.want(file, estimate, waiter);
        }
    }

    /// Another program is rewriting the model's file: its pages are about to go, so the model
    /// unloads now, pinned or busy, its requests ended with the reason. (The writer waits until
    /// the model is gone; see `protect`.) A model still loading is dropped when it is loaded.
    fn on_file_changed(&mut self, id: &str, serial: u64) {
        match self.models.get_mut(id) {
            Some(Entry::Ready(ready)) if ready.serial == serial => {
                tracing::warn!(model = %id, in_flight = ready.in_flight, "the model file is changing on disk: unloading the model");
                self.begin_unload(id, UnloadReason::FileChanged);
            }
            Some(Entry::Loading(loading)) if loading.serial == serial => {
                tracing::warn!(model = %id, "the model file is changing on disk while it loads");
                loading.file_changed = true;
            }
            _ => self.ignored("file change", id),
        }
    }

    /// New limits and timeouts, in force at once: idle deadlines move, and a lower limit
    /// evicts idle models now.
    fn reconfigure(&mut self, limits: PoolLimits) {
        self.config.limits = limits;
        let mut ready: Vec<String> = self
            .models
            .iter()
            .filter(|(_, e)| matches!(e, Entry::Ready(_)))
            .map(|(id, _)| id.clone())
            .collect();
        ready.sort();
        for id in &ready {
            self.start_idle_timer(id);
        }
        let evict = admission::over_limit(self.config.limits.limit, &self.holders());
        self.evict(&evict, None);
    }

    /// Unloads what the pressure tier calls for. Constrained: idle models beyond the most
    /// recently used one. Critical: the least recently used idle model, one per look (the
    /// monitor looks ten times a second while the tier holds). Emergency, or memory running out
    /// sooner than an unload takes (`urgent`, whatever the tier): every unpinned model, ending
    /// its requests. Busy models are left alone otherwise; pinned ones always.
    fn on_pressure(&mut self, report: PressureReport) {
        self.tier = report.tier;
        self.urgent = report.urgent;
        let pinned = &self.config.limits.pinned;
        let mut idle: Vec<(Instant, String)> = self
            .models
            .iter()
            .filter_map(|(id, entry)| match entry {
                Entry::Ready(r)
                    if r.drain.is_none() && r.in_flight == 0 && !pinned.contains(id) =>
                {
                    Some((r.last_used, id.clone()))
                }
                _ => None,
            })
            .collect();
        idle.sort();
        let victims: Vec<String> = match report.tier {
            _ if report.urgent => self.unpinned_ready(),
            Tier::Normal | Tier::Elevated => Vec::new(),
            Tier::Constrained => {
                // Keep the most recently used one.
                idle.pop();
                idle.into_iter().map(|(_, id)| id).collect()
            }
            Tier::Critical => idle.into_iter().take(1).map(|(_, id)| id).collect(),
            Tier::Emergency => self.unpinned_ready(),
        };
        let seen = Instant::from_std(report.seen);
        for id in victims {
            tracing::warn!(
                model = %id, tier = %report.tier, wake = report.wake.as_str(),
                used_percent = report.used_percent, available = report.available,
                growth_bytes_per_s = ?report.growth.map(f64::round),
                seconds_left = ?report.seconds_left, urgent = report.urgent,
                "memory pressure: unloading"
            );
            self.pressure_seen
                .insert(id.clone(), (seen, PressureCause::from(&report)));
            self.begin_unload(&id, UnloadReason::Pressure);
        }
    }

    /// Every loaded model not pinned, busy or not, in id order.
    fn unpinned_ready(&self) -> Vec<String> {
        let pinned = &self.config.limits.pinned;
        let mut all: Vec<String> = self
            .models
            .iter()
            .filter(|(id, e)| matches!(e, Entry::Ready(_)) && !pinned.contains(*id))
            .map(|(id, _)| id.clone())
            .collect();
        all.sort();
        all
    }

    // ----- reporting -----

    fn status(&self) -> PoolStatus {
        let mut models: Vec<ModelStatus> = self
            .models
            .iter()
            .map(|(id, entry)| model_status(id, entry, &self.config.limits))
            .collect();
        models.sort_by(|a, b| a.id.cmp(&b.id));
        let used = models
            .iter()
            .map(|m| m.memory.unwrap_or(m.estimate).total)
            .sum();
        let limits = &self.config.limits;
        PoolStatus {
            limit: limits.limit,
            used,
            margin: limits.margins.for_tier(self.tier),
            margins: limits.margins,
            tier: self.tier,
            floor: limits.floor,
            models,
            loads: self.loads.clone(),
        }
    }

    /// Every waiter is told, every model is stopped and unloaded the usual way (measured, with
    /// events); the driver keeps feeding the pool its reports until all are freed.
    fn shutdown(&mut self) {
        self.shutting_down = true;
        let mut ids: Vec<String> = self.models.keys().cloned().collect();
        ids.sort();
        for id in &ids {
            let waiters = match self.models.get_mut(id) {
                Some(Entry::Loading(loading)) => std::mem::take(&mut loading.waiters),
                Some(Entry::Unloading(unloading)) => std::mem::take(&mut unloading.waiters),
                Some(Entry::Ready(ready)) => ready
                    .drain
                    .as_mut()
                    .map(|drain| std::mem::take(&mut drain.waiters))
                    .unwrap_or_default(),
                None => Vec::new(),
            };
            for waiter in waiters {
                waiter.fail(PoolError::ShuttingDown);
            }
            self.begin_unload(id, UnloadReason::Shutdown);
        }
    }
}

fn model_status(id: &str, entry: &Entry, limits: &PoolLimits) -> ModelStatus {
    let pinned = limits.pinned.contains(id);
    let absent =
        |path: &PathBuf, state, estimate: Footprint, memory: Option<Footprint>| ModelStatus {
            id: id.to_string(),
            path: path.display().to_string(),
            engine: None,
            state,
            pinned,
            memory,
            estimate,
            estimate_error_percent: memory.and_then(|m| error_percent(estimate, m)),
            in_flight: 0,
            load_ms: None,
            protection: None,
            loaded_at: None,
            last_used: None,
            expires_at: None,
            stats: None,
        };
    match entry {
        Entry::Loading(l) => absent(&l.file.path, ModelState::Loading, l.estimate, None),
        Entry::Unloading(u) => absent(
            &u.file.path,
            ModelState::Unloading,
            u.estimate,
            Some(u.footprint),
        ),
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
                engine: Some(r.model.engine()),
                state,
                pinned,
                memory: Some(memory),
                estimate: r.estimate,
                estimate_error_percent: error_percent(r.estimate, memory),
                in_flight: r.in_flight,
                load_ms: Some(r.load_ms),
                protection: r.protection,
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

#[cfg(test)]
mod tests;
