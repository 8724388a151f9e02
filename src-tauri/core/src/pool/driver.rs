//! The task that drives the pool: it waits for the next input, lets the [`State`] decide, and
//! performs the effects. It decides nothing itself.
//!
//! One loop owns the pool, as Ollama's scheduler loop owns its runners: requests for a model,
//! finished loads, released requests, unloads, timers and pressure reports all arrive here, so
//! there is no lock held across a multi-second load and no race between two requests that both
//! want the same model loaded. Every deadline (idle timeouts, a flush's grace, a stop's last
//! wait) sits in one `DelayQueue` polled in the same `select!`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::time::{delay_queue, DelayQueue};

use super::state::{Effect, Input, Now, Report, State, Timer, TimerKind};
use super::{millis, Command, PoolEvent, UnloadReason, UnloadReport};
use crate::engine::{Engine, EngineError, Footprint, LoadOptions, LoadedModel};
use crate::memory::{process_rss, release_free_memory};
use crate::pressure::PressureReport;
use crate::protect::{OnChange, ProtectedModel, Protection, Protector};
use crate::vocab::Publish;

/// How long shutdown waits for models to unload before exiting anyway.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(10);

/// What the effects need from outside the pool.
pub(super) struct Driver {
    pub engine: Arc<dyn Engine>,
    pub options: LoadOptions,
    pub protector: Option<Protector>,
    pub publish: Publish<PoolEvent>,
    /// Where loads and unloads report back (leases hold a sender too).
    pub reports: mpsc::UnboundedSender<Report>,
}

/// The inputs' sources.
pub(super) struct Inbox {
    pub commands: mpsc::Receiver<Command>,
    /// Kept apart from the commands (and unbounded) so that a report is never stuck behind a
    /// full queue of requests.
    pub reports: mpsc::UnboundedReceiver<Report>,
    pub pressure: mpsc::Receiver<PressureReport>,
}

/// Runs the pool until it is shut down, or every handle to it is gone.
pub(super) async fn run(mut state: State, driver: Driver, mut inbox: Inbox) {
    let mut timers = Timers::default();
    loop {
        let input = tokio::select! {
            // What already happened (a request ended, a load finished) before what is asked
            // next: a client that got its answer and then asks for the status must see its
            // request as finished. Pressure before requests: a request that arrives with the
            // tier at critical must meet the tier, not the one before it.
            biased;
            Some(report) = inbox.reports.recv() => Input::Report(report),
            Some(timer) = timers.next(), if !timers.is_empty() => Input::Timer(timer),
            Some(report) = inbox.pressure.recv() => Input::Pressure(report),
            command = inbox.commands.recv() => match command {
                Some(Command::Shutdown { reply }) => {
                    shutdown(&mut state, &driver, &mut inbox, &mut timers).await;
                    let _ = reply.send(());
                    return;
                }
                Some(command) => Input::Command(command),
                None => {
                    shutdown(&mut state, &driver, &mut inbox, &mut timers).await;
                    return;
                }
            },
        };
        let effects = state.handle(input, Now::current());
        driver.perform(effects, &mut timers);
    }
}

/// Stops every model and keeps serving the pool's own reports and timers until all are freed
/// or [`SHUTDOWN_WAIT`] has passed.
async fn shutdown(state: &mut State, driver: &Driver, inbox: &mut Inbox, timers: &mut Timers) {
    let effects = state.handle(Input::Shutdown, Now::current());
    driver.perform(effects, timers);
    let deadline = Instant::now() + SHUTDOWN_WAIT;
    while !state.is_empty() {
        let input = tokio::select! {
            Some(report) = inbox.reports.recv() => Input::Report(report),
            Some(timer) = timers.next(), if !timers.is_empty() => Input::Timer(timer),
            () = tokio::time::sleep_until(deadline) => {
                tracing::warn!(left = ?state.model_ids(), "shutdown: models still loading or unloading; exiting anyway");
                return;
            }
        };
        let effects = state.handle(input, Now::current());
        driver.perform(effects, timers);
    }
}

impl Driver {
    fn perform(&self, effects: Vec<Effect>, timers: &mut Timers) {
        for effect in effects {
            match effect {
                Effect::Publish(event) => (self.publish)(event),
                Effect::Load { id, path, serial } => self.load(id, path, serial),
                Effect::EndRequests { model, reason } => model.stop(&reason),
                Effect::Free {
                    id,
                    model,
                    reason,
                    footprint,
                } => self.free(id, model, reason, footprint),
                Effect::Discard(model) => {
                    tokio::task::spawn_blocking(move || {
                        drop(model);
                        release_free_memory();
                    });
                }
                Effect::SetTimer { timer, at } => timers.set(timer, at),
                Effect::ClearTimer { id, kind } => timers.clear(&id, kind),
            }
        }
    }

    fn load(&self, id: String, path: PathBuf, serial: u64) {
        let engine = Arc::clone(&self.engine);
        let options = self.options.for_model(&id);
        let protector = self.protector.clone();
        let done = self.reports.clone();
        let on_change: OnChange = {
            let (reports, id) = (self.reports.clone(), id.clone());
            Box::new(move || {
                let _ = reports.send(Report::FileChanged {
                    id: id.clone(),
                    serial,
                });
            })
        };
        tokio::task::spawn_blocking(move || {
            let started = StdInstant::now();
            // A panic in the engine must still answer the waiters, not leave them hanging.
            let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                load_protected(&*engine, protector.as_ref(), &path, options, on_change)
            }))
            .unwrap_or_else(|_| {
                Err(EngineError::Internal(
                    "the engine panicked while loading".into(),
                ))
            });
            let load_ms = millis(started.elapsed());
            let (result, protection) = match loaded {
                Ok((model, protection)) => (Ok(model), protection),
                Err(e) => (Err(e), None),
            };
            // The pool is gone (shutdown) when this fails: the model is freed here, on this
            // blocking thread, as the unsent report drops.
            let _ = done.send(Report::Loaded {
                id,
                result,
                load_ms,
                protection,
            });
        });
    }

    /// Drops the pool's handle on a blocking thread (the last handle's drop joins the model's
    /// worker thread and frees its memory; glibc keeps freed chunks until trimmed) and measures
    /// what came back.
    fn free(
        &self,
        id: String,
        model: Arc<dyn LoadedModel>,
        reason: UnloadReason,
        footprint: Footprint,
    ) {
        let done = self.reports.clone();
        tokio::spawn(async move {
            let started = StdInstant::now();
            let rss_before = process_rss();
            model.keep_conversations(reason.keeps_conversations());
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
            let _ = done.send(Report::Unloaded(UnloadReport {
                model: id,
                reason,
                footprint,
                rss_before,
                rss_after,
                reclaimed,
                reclaimed_percent,
                duration_ms: millis(started.elapsed()),
                since_pressure_ms: None,
                pressure: None,
            }));
        });
    }
}

/// Loads `path` with its file protected first (see `protect`): the model keeps the protection
/// until it is dropped. Without a protector, the file is loaded as it is.
fn load_protected(
    engine: &dyn Engine,
    protector: Option<&Protector>,
    path: &Path,
    mut options: LoadOptions,
    on_change: OnChange,
) -> Result<(Box<dyn LoadedModel>, Option<Protection>), EngineError> {
    let Some(protector) = protector else {
        return Ok((engine.load(path, &options)?, None));
    };
    // Weights read into memory need nothing to keep the file from changing under them: when
    // the settings say so, or the engine always reads them (MLX, folders and GGUF files alike).
    if !options.map_weights || !engine.keeps_file_mapped(path, &options) {
        return Ok((engine.load(path, &options)?, Some(Protection::InMemory)));
    }
    let file = protector
        .protect(path, on_change)
        .map_err(|e| EngineError::BadModelFile {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
    let protection = file.protection();
    options.map_weights = protection.maps_weights();
    tracing::debug!(path = %path.display(), ?protection, "model file protected");
    let model = engine.load(file.load_from(), &options)?;
    Ok((Box::new(ProtectedModel::new(model, file)), Some(protection)))
}

/// Every timer of the pool, at most one per model and kind.
#[derive(Default)]
struct Timers {
    queue: DelayQueue<Timer>,
    keys: HashMap<(String, TimerKind), delay_queue::Key>,
}

impl Timers {
    fn set(&mut self, timer: Timer, at: Instant) {
        self.clear(&timer.id, timer.kind);
        let slot = (timer.id.clone(), timer.kind);
        let key = self.queue.insert_at(timer, at);
        self.keys.insert(slot, key);
    }

    fn clear(&mut self, id: &str, kind: TimerKind) {
        if let Some(key) = self.keys.remove(&(id.to_string(), kind)) {
            self.queue.remove(&key);
        }
    }

    fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// The next timer to go off. Only to be awaited while there is one: an empty queue
    /// answers `None` at once.
    async fn next(&mut self) -> Option<Timer> {
        let expired = self.queue.next().await?;
        let timer = expired.into_inner();
        self.keys.remove(&(timer.id.clone(), timer.kind));
        Some(timer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::fake::{FakeEngine, FakeProbe};
    use crate::pool::{Pool, PoolConfig};
    use crate::vocab::{IdleTimeout, Tier};
    use std::sync::Mutex;

    fn config(idle: IdleTimeout) -> PoolConfig {
        crate::pool::fake::config(1_000, idle)
    }

    /// A pool on the fake engine and probe, and what the tests watch it through.
    struct Running {
        pool: Pool,
        engine: Arc<FakeEngine>,
        /// Every event it published.
        events: Arc<Mutex<Vec<PoolEvent>>>,
        pressure: mpsc::Sender<PressureReport>,
    }

    fn start(config: PoolConfig) -> Running {
        let engine = Arc::new(FakeEngine::default());
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&events);
        let (pressure_tx, pressure) = mpsc::channel(4);
        let pool = Pool::start(
            engine.clone(),
            config,
            Arc::new(FakeProbe::roomy()),
            crate::metrics::Metrics::default(),
            Arc::new(move |e| sink.lock().expect("events").push(e)),
            pressure,
        );
        Running {
            pool,
            engine,
            events,
            pressure: pressure_tx,
        }
    }

    fn kinds(events: &Mutex<Vec<PoolEvent>>) -> Vec<String> {
        events
            .lock()
            .expect("events")
            .iter()
            .map(|e| serde_json::to_value(e).expect("json")["type"].to_string())
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_model_unloads_when_its_timeout_runs_out_and_not_before() {
        let Running {
            pool,
            engine,
            events,
            ..
        } = start(config(IdleTimeout::After(Duration::from_secs(600))));
        let lease = pool
            .acquire(engine.file("m", 100), None)
            .await
            .expect("lease");
        // Busy for an hour: no timer runs while the request does.
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert_eq!(pool.status().await.expect("status").models.len(), 1);
        drop(lease);
        tokio::time::sleep(Duration::from_secs(599)).await;
        assert_eq!(pool.status().await.expect("status").models.len(), 1);
        tokio::time::sleep(Duration::from_secs(2)).await;
        // The unload happens on a blocking thread; give it its moment.
        for _ in 0..100 {
            if pool.status().await.expect("status").models.is_empty() {
                break;
            }
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(pool.status().await.expect("status").models.is_empty());
        assert!(kinds(&events).contains(&"\"unloaded\"".to_string()));
        assert_eq!(engine.dropped(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_requests_and_frees_every_model_pinned_ones_too() {
        let mut config = config(IdleTimeout::Never);
        config.limits.pinned.insert("pinned".into());
        let Running {
            pool,
            engine,
            events,
            ..
        } = start(config);
        pool.load(engine.file("pinned", 100)).await.expect("load");
        let lease = pool
            .acquire(engine.file("busy", 100), None)
            .await
            .expect("lease");
        let shutdown = tokio::spawn({
            let pool = pool.clone();
            async move { pool.shutdown().await }
        });
        // The busy model's request is told to end; the client lets go.
        for _ in 0..100 {
            if !engine.stops().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(engine.stops(), ["busy"]);
        drop(lease);
        shutdown.await.expect("shutdown");
        assert_eq!(engine.dropped(), 2);
        let unloaded = kinds(&events)
            .iter()
            .filter(|k| *k == "\"unloaded\"")
            .count();
        assert_eq!(unloaded, 2);
        assert!(matches!(
            pool.status().await,
            Err(crate::pool::PoolError::ShuttingDown)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn pressure_reports_arrive_on_their_own_channel() {
        let Running {
            pool,
            engine,
            pressure,
            ..
        } = start(config(IdleTimeout::Never));
        pool.load(engine.file("m", 100)).await.expect("load");
        pressure
            .send(crate::pool::fake::pressure(Tier::Critical))
            .await
            .expect("send");
        let refused = pool.acquire(engine.file("m", 100), None).await;
        assert!(
            matches!(refused, Err(crate::pool::PoolError::LowMemory { .. })),
            "a request at critical waits outside"
        );
    }
}
