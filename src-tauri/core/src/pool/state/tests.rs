//! The pool's rules, input by input: a harness plays the driver (it performs loads and frees
//! when a test says so, keeps the timers, moves the clock) over a fake engine and probe.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::*;
use crate::engine::Engine;
use crate::pool::fake::{self, FakeEngine, FakeProbe, MB};
use crate::pool::{Command, PoolConfig};

const MINUTE: Duration = Duration::from_secs(60);

type LeaseReply = oneshot::Receiver<Result<Lease, PoolError>>;

struct Harness {
    state: State,
    engine: Arc<FakeEngine>,
    probe: Arc<FakeProbe>,
    /// Leases report their release here; the harness hands it to the state.
    released: mpsc::UnboundedReceiver<Report>,
    now: Now,
    /// Every event published, in order.
    events: Vec<PoolEvent>,
    timers: HashMap<(String, TimerKind), (Timer, Instant)>,
    /// Loads and frees asked for and not yet done.
    loads: Vec<(String, PathBuf, u64)>,
    /// The serial of each model's latest load.
    serials: HashMap<String, u64>,
    frees: Vec<(String, Arc<dyn LoadedModel>, UnloadReason, Footprint)>,
    /// Requests ended by the pool, by model.
    ended: Vec<String>,
    models: HashMap<String, ModelFile>,
}

impl Harness {
    fn new(config: PoolConfig) -> Self {
        let engine = Arc::new(FakeEngine::default());
        let probe = Arc::new(FakeProbe::roomy());
        let (reports, released) = mpsc::unbounded_channel();
        let state = State::new(
            config,
            probe.clone(),
            crate::metrics::Metrics::default(),
            reports,
        );
        Self {
            state,
            engine,
            probe,
            released,
            now: Now::current(),
            events: Vec::new(),
            timers: HashMap::new(),
            loads: Vec::new(),
            serials: HashMap::new(),
            frees: Vec::new(),
            ended: Vec::new(),
            models: HashMap::new(),
        }
    }

    /// A pool of 1,000 MB whose models stay 10 minutes after their last request.
    fn standard() -> Self {
        Self::new(fake::config(1_000, IdleTimeout::After(10 * MINUTE)))
    }

    fn input(&mut self, input: Input) {
        for effect in self.state.handle(input, self.now) {
            match effect {
                Effect::Publish(event) => self.events.push(event),
                Effect::Load { id, path, serial } => {
                    self.serials.insert(id.clone(), serial);
                    self.loads.push((id, path, serial));
                }
                Effect::EndRequests { model, reason } => {
                    model.stop(&reason);
                    self.ended = self.engine.stops();
                }
                Effect::Free {
                    id,
                    model,
                    reason,
                    footprint,
                } => self.frees.push((id, model, reason, footprint)),
                Effect::Discard(model) => drop(model),
                Effect::SetTimer { timer, at } => {
                    self.timers
                        .insert((timer.id.clone(), timer.kind), (timer, at));
                }
                Effect::ClearTimer { id, kind } => {
                    self.timers.remove(&(id, kind));
                }
            }
        }
    }

    fn command(&mut self, command: Command) {
        self.input(Input::Command(command));
    }

    fn file(&mut self, id: &str, mb: u64) -> ModelFile {
        let file = self
            .models
            .entry(id.to_string())
            .or_insert_with(|| self.engine.file(id, mb))
            .clone();
        file
    }

    fn acquire_with(&mut self, id: &str, mb: u64, keep_alive: Option<IdleTimeout>) -> LeaseReply {
        let file = self.file(id, mb);
        let (reply, answer) = oneshot::channel();
        self.command(Command::Acquire {
            estimate: Footprint::new(mb * MB, 0, 0),
            file,
            keep_alive,
            reply,
        });
        answer
    }

    fn acquire(&mut self, id: &str, mb: u64) -> LeaseReply {
        self.acquire_with(id, mb, None)
    }

    /// A request that gets its model now (loading it if need be).
    fn lease(&mut self, id: &str, mb: u64) -> Lease {
        let mut answer = self.acquire(id, mb);
        self.finish_loads();
        match answer.try_recv() {
            Ok(Ok(lease)) => lease,
            Ok(Err(e)) => panic!("no lease for {id}: {e}"),
            Err(e) => panic!("no answer for {id}: {e}"),
        }
    }

    fn load(&mut self, id: &str, mb: u64) -> oneshot::Receiver<Result<ModelStatus, PoolError>> {
        let file = self.file(id, mb);
        let (reply, answer) = oneshot::channel();
        self.command(Command::Load {
            estimate: Footprint::new(mb * MB, 0, 0),
            file,
            reply,
        });
        answer
    }

    /// Loads `id` and leaves it idle.
    fn loaded(&mut self, id: &str, mb: u64) {
        let mut answer = self.load(id, mb);
        self.finish_loads();
        assert!(matches!(answer.try_recv(), Ok(Ok(_))), "{id} did not load");
    }

    /// Does the loads asked for so far, as the driver would.
    fn finish_loads(&mut self) {
        for (id, path, _) in std::mem::take(&mut self.loads) {
            let result = self
                .engine
                .load(&path, &fake::config(1, IdleTimeout::Never).load);
            self.input(Input::Report(Report::Loaded {
                id,
                result,
                load_ms: 7,
                protection: Some(Protection::Lease),
            }));
        }
    }

    /// Frees the models let go so far, every byte coming back.
    fn finish_frees(&mut self) {
        for (id, model, reason, footprint) in std::mem::take(&mut self.frees) {
            drop(model);
            self.input(Input::Report(Report::Unloaded(UnloadReport {
                model: id,
                reason,
                footprint,
                rss_before: Some(footprint.total),
                rss_after: Some(0),
                reclaimed: Some(footprint.total),
                reclaimed_percent: Some(100.0),
                duration_ms: 1,
                since_pressure_ms: None,
                pressure: None,
            })));
        }
    }

    /// A request ends: its lease is dropped and the pool hears of it.
    fn release(&mut self, lease: Lease) {
        drop(lease);
        while let Ok(report) = self.released.try_recv() {
            self.input(Input::Report(report));
        }
    }

    /// Moves the clock, firing the timers that fall due on the way, in order.
    fn advance(&mut self, by: Duration) {
        let until = self.now.at + by;
        loop {
            let due = self
                .timers
                .values()
                .filter(|(_, at)| *at <= until)
                .min_by_key(|(_, at)| *at)
                .cloned();
            let Some((timer, at)) = due else { break };
            self.timers.remove(&(timer.id.clone(), timer.kind));
            self.set_time(at);
            self.input(Input::Timer(timer));
        }
        self.set_time(until);
    }

    fn set_time(&mut self, at: Instant) {
        let elapsed = at.saturating_duration_since(self.now.at);
        self.now = Now {
            at,
            wall: self.now.wall + elapsed,
        };
    }

    /// Another program starts writing the file of the model's latest load.
    fn file_changed(&mut self, id: &str) {
        let serial = self.serials[id];
        self.input(Input::Report(Report::FileChanged {
            id: id.to_string(),
            serial,
        }));
    }

    fn pressure(&mut self, tier: Tier) {
        self.input(Input::Pressure(fake::pressure(tier)));
    }

    fn stop(&mut self, id: &str) -> Result<oneshot::Receiver<UnloadReport>, PoolError> {
        let (reply, mut answer) = oneshot::channel();
        self.command(Command::Unload {
            id: id.to_string(),
            reply,
        });
        answer.try_recv().expect("stop answers at once")
    }

    fn flush(&mut self) -> Vec<oneshot::Receiver<UnloadReport>> {
        let (reply, mut answer) = oneshot::channel();
        self.command(Command::Flush { reply });
        answer.try_recv().expect("flush answers at once")
    }

    fn status(&mut self) -> PoolStatus {
        let (reply, mut answer) = oneshot::channel();
        self.command(Command::Status { reply });
        answer.try_recv().expect("status answers at once")
    }

    /// Each model in the pool and its state.
    fn models(&mut self) -> Vec<(String, ModelState)> {
        self.status()
            .models
            .into_iter()
            .map(|m| (m.id, m.state))
            .collect()
    }

    /// The events since the last call, as `/api/events` names them (with the model).
    fn take_events(&mut self) -> Vec<String> {
        std::mem::take(&mut self.events)
            .into_iter()
            .map(|e| {
                let json = serde_json::to_value(&e).expect("json");
                let kind = json["type"].as_str().unwrap_or_default().to_string();
                match json["model"].as_str() {
                    Some(model) => format!("{kind} {model}"),
                    None => kind,
                }
            })
            .collect()
    }

    fn idle_deadline(&self, id: &str) -> Option<Instant> {
        self.timers
            .get(&(id.to_string(), TimerKind::Idle))
            .map(|(_, at)| *at)
    }
}

fn refused(answer: &mut LeaseReply) -> PoolError {
    match answer.try_recv() {
        Ok(Err(e)) => e,
        Ok(Ok(_)) => panic!("granted"),
        Err(e) => panic!("no answer: {e}"),
    }
}

fn ready(id: &str) -> (String, ModelState) {
    (id.to_string(), ModelState::Ready)
}

// ----- loading -----

#[test]
fn concurrent_requests_for_one_model_share_one_load() {
    let mut h = Harness::standard();
    let mut first = h.acquire("a", 100);
    let mut second = h.acquire("a", 100);
    assert_eq!(h.loads.len(), 1, "one load for both");
    assert!(
        first.try_recv().is_err(),
        "nobody is served before the load ends"
    );
    h.finish_loads();
    let (Ok(Ok(one)), Ok(Ok(two))) = (first.try_recv(), second.try_recv()) else {
        panic!("both requests get the model");
    };
    assert_eq!(
        h.take_events(),
        [
            "loading a",
            "loaded a",
            "request_started a",
            "request_started a"
        ]
    );
    assert_eq!(h.status().models[0].in_flight, 2);
    h.release(one);
    h.release(two);
    assert_eq!(h.models(), [ready("a")]);
    assert_eq!(h.status().loads.get("a"), Some(&1));
}

#[test]
fn a_file_that_does_not_load_fails_every_waiter_and_leaves_nothing_behind() {
    let mut h = Harness::standard();
    let file = h.engine.broken_file("bad");
    h.models.insert("bad".into(), file);
    let mut request = h.acquire("bad", 1);
    let mut load = h.load("bad", 1);
    h.finish_loads();
    assert!(matches!(
        refused(&mut request),
        PoolError::LoadFailed { .. }
    ));
    assert!(matches!(
        load.try_recv(),
        Ok(Err(PoolError::LoadFailed { .. }))
    ));
    assert_eq!(h.take_events(), ["loading bad", "load_failed bad"]);
    assert!(h.state.is_empty());
    // The next request tries again.
    let _again = h.acquire("bad", 1);
    assert_eq!(h.loads.len(), 1);
}

// ----- admission and eviction -----

#[test]
fn eviction_takes_the_least_recently_used_idle_model_and_loads_after_it_is_freed() {
    let mut h = Harness::standard();
    h.loaded("a", 400);
    h.advance(MINUTE);
    h.loaded("b", 400);
    h.advance(MINUTE);
    // "a" is used again: "b" is now the least recently used.
    let lease = h.lease("a", 400);
    h.release(lease);
    h.take_events();
    let mut c = h.acquire("c", 400);
    assert_eq!(
        h.take_events(),
        ["evicted b", "unloading b", "loading c"],
        "only as much is evicted as the new model needs"
    );
    assert!(h.loads.is_empty(), "c waits for b's memory to come back");
    h.finish_frees();
    assert_eq!(h.loads.len(), 1);
    h.finish_loads();
    assert!(matches!(c.try_recv(), Ok(Ok(_))));
    assert_eq!(h.models(), [ready("a"), ("c".into(), ModelState::Busy)]);
}

#[test]
fn pinned_and_busy_models_are_never_evicted_and_the_refusal_names_them() {
    let mut config = fake::config(1_000, IdleTimeout::After(10 * MINUTE));
    config.limits.pinned.insert("pinned".into());
    let mut h = Harness::new(config);
    h.loaded("pinned", 400);
    let busy = h.lease("busy", 400);
    h.take_events();
    let mut c = h.acquire("c", 400);
    let PoolError::InsufficientMemory { message, retry } = refused(&mut c) else {
        panic!("refused for another reason");
    };
    assert!(retry, "the busy model frees up later");
    assert!(message.contains("'pinned' (400 MB, pinned)"), "{message}");
    assert!(
        message.contains("'busy' (400 MB, busy with 1 request)"),
        "{message}"
    );
    assert_eq!(h.take_events(), ["refused c"]);
    assert_eq!(h.models().len(), 2);
    assert!(h.frees.is_empty());
    // Once the request is over, "busy" is idle and makes room.
    h.release(busy);
    let _c = h.acquire("c", 400);
    assert!(h.take_events().contains(&"evicted busy".to_string()));
}

#[test]
fn loads_are_refused_under_the_memory_floor() {
    let mut h = Harness::standard();
    h.probe.set_available(500 * MB);
    let mut a = h.acquire("a", 100);
    let PoolError::LowMemory { message } = refused(&mut a) else {
        panic!("refused for another reason");
    };
    assert!(message.contains("memory_floor"), "{message}");
    assert!(h.loads.is_empty());
}

#[test]
fn fit_says_what_a_load_would_evict_and_does_nothing() {
    let mut h = Harness::standard();
    h.loaded("a", 600);
    h.take_events();
    let (reply, mut answer) = oneshot::channel();
    h.command(Command::Fit {
        id: "b".into(),
        estimate: Footprint::new(600 * MB, 0, 0),
        reply,
    });
    let fit = answer.try_recv().expect("fit");
    assert!(fit.fits);
    assert_eq!(fit.would_evict, ["a"]);
    assert!(h.take_events().is_empty());
    assert_eq!(h.models(), [ready("a")]);
}

#[test]
fn a_lowered_limit_evicts_idle_models_at_once() {
    let mut h = Harness::standard();
    h.loaded("a", 400);
    h.advance(MINUTE);
    h.loaded("b", 400);
    h.take_events();
    let (reply, _answer) = oneshot::channel();
    let mut limits = fake::config(500, IdleTimeout::After(10 * MINUTE)).limits;
    limits.idle_timeout = IdleTimeout::After(20 * MINUTE);
    h.command(Command::Reconfigure { limits, reply });
    assert_eq!(h.take_events(), ["evicted a", "unloading a"]);
    // The other model's deadline moved with the new timeout, from its last use (its load).
    assert_eq!(h.idle_deadline("b"), Some(h.now.at + 20 * MINUTE));
}

// ----- idle timeouts and keep_alive -----

#[test]
fn the_idle_timer_never_runs_during_a_request() {
    let mut h = Harness::standard();
    let lease = h.lease("a", 100);
    assert_eq!(h.idle_deadline("a"), None, "no deadline while busy");
    h.advance(60 * MINUTE);
    assert_eq!(h.models(), [("a".into(), ModelState::Busy)]);
    h.release(lease);
    let released_at = h.now.at;
    assert_eq!(h.idle_deadline("a"), Some(released_at + 10 * MINUTE));
    // A request in the middle of the countdown stops it; its end starts it over.
    h.advance(5 * MINUTE);
    let lease = h.lease("a", 100);
    h.advance(10 * MINUTE);
    assert_eq!(h.models(), [("a".into(), ModelState::Busy)]);
    h.release(lease);
    h.advance(10 * MINUTE - Duration::from_millis(1));
    assert_eq!(h.models(), [ready("a")]);
    h.advance(Duration::from_millis(1));
    assert_eq!(h.models(), [("a".into(), ModelState::Unloading)]);
    h.finish_frees();
    assert!(h.state.is_empty());
    let events = h.take_events();
    assert_eq!(events.last().map(String::as_str), Some("unloaded a"));
}

#[test]
fn a_timer_of_an_earlier_load_is_ignored() {
    let mut h = Harness::standard();
    h.loaded("a", 100);
    let (stale, _) = h.timers[&("a".to_string(), TimerKind::Idle)].clone();
    let _report = h.stop("a").expect("stop");
    h.finish_frees();
    h.loaded("a", 100);
    h.take_events();
    h.input(Input::Timer(stale));
    assert_eq!(h.models(), [ready("a")]);
    assert!(h.take_events().is_empty());
}

#[test]
fn keep_alive_overrides_the_timeout_for_the_requests_that_ask() {
    let mut config = fake::config(1_000, IdleTimeout::After(10 * MINUTE));
    config
        .limits
        .idle_timeouts
        .insert("own".into(), IdleTimeout::After(MINUTE));
    let mut h = Harness::new(config);

    // keep_alive 0: unloaded as soon as the request ends.
    let mut answer = h.acquire_with("zero", 100, Some(IdleTimeout::After(Duration::ZERO)));
    h.finish_loads();
    let lease = answer.try_recv().expect("answer").expect("lease");
    h.release(lease);
    assert_eq!(h.models(), [("zero".into(), ModelState::Unloading)]);
    h.finish_frees();

    // keep_alive -1: no deadline at all.
    let mut answer = h.acquire_with("kept", 100, Some(IdleTimeout::Never));
    h.finish_loads();
    h.release(answer.try_recv().expect("answer").expect("lease"));
    assert_eq!(h.idle_deadline("kept"), None);
    h.advance(24 * 60 * MINUTE);
    assert_eq!(h.models(), [ready("kept")]);

    // The next request without keep_alive brings back the configured timeout.
    let lease = h.lease("kept", 100);
    h.release(lease);
    assert_eq!(h.idle_deadline("kept"), Some(h.now.at + 10 * MINUTE));

    // A model's own setting beats the global one.
    let lease = h.lease("own", 100);
    h.release(lease);
    assert_eq!(h.idle_deadline("own"), Some(h.now.at + MINUTE));
}

#[test]
fn pinned_models_have_no_idle_timer() {
    let mut config = fake::config(1_000, IdleTimeout::After(MINUTE));
    config.limits.pinned.insert("p".into());
    let mut h = Harness::new(config);
    h.loaded("p", 100);
    let lease = h.lease("p", 100);
    h.release(lease);
    assert_eq!(h.idle_deadline("p"), None);
    h.advance(60 * MINUTE);
    assert_eq!(h.models(), [("p".into(), ModelState::Ready)]);
}

// ----- stop and flush -----

#[test]
fn stop_ends_running_requests_at_once_and_unloads() {
    let mut h = Harness::standard();
    let lease = h.lease("a", 100);
    h.take_events();
    let mut report = h.stop("a").expect("stop");
    assert_eq!(h.ended, ["a"], "the request is told to end now");
    assert!(h.frees.is_empty(), "the lease still holds the model");
    h.release(lease);
    h.finish_frees();
    let report = report.try_recv().expect("report");
    assert_eq!(report.reason, UnloadReason::Requested);
    assert_eq!(
        h.take_events(),
        ["unloading a", "request_finished a", "unloaded a"]
    );
}

#[test]
fn a_stopped_model_unloads_without_a_client_that_never_lets_go() {
    let mut h = Harness::standard();
    let lease = h.lease("a", 100);
    let _report = h.stop("a").expect("stop");
    h.advance(STOP_GRACE - Duration::from_millis(1));
    assert!(h.frees.is_empty());
    h.advance(Duration::from_millis(1));
    assert_eq!(h.frees.len(), 1, "the unload goes ahead without the lease");
    // The lease's late release finds the model gone and changes nothing.
    h.release(lease);
    h.finish_frees();
    assert!(h.state.is_empty());
}

#[test]
fn flush_lets_requests_finish_then_ends_them_after_the_grace_period() {
    let mut h = Harness::standard();
    let lease = h.lease("a", 100);
    h.loaded("idle", 100);
    let reports = h.flush();
    assert_eq!(reports.len(), 2);
    assert!(h.ended.is_empty(), "a flush does not end requests at first");
    assert_eq!(h.frees.len(), 1, "the idle model goes at once");
    h.advance(FLUSH_GRACE);
    assert_eq!(
        h.ended,
        ["a"],
        "after the grace period the request is ended"
    );
    h.release(lease);
    h.finish_frees();
    assert!(h.state.is_empty());
}

#[test]
fn a_stop_during_a_flush_grace_period_ends_the_requests_now() {
    let mut h = Harness::standard();
    let lease = h.lease("a", 100);
    let _ = h.flush();
    assert!(h.ended.is_empty());
    let _report = h.stop("a").expect("stop");
    assert_eq!(h.ended, ["a"]);
    h.release(lease);
    h.finish_frees();
    assert!(h.state.is_empty());
}

#[test]
fn stop_says_why_it_cannot() {
    let mut config = fake::config(1_000, IdleTimeout::After(MINUTE));
    config.limits.pinned.insert("p".into());
    let mut h = Harness::new(config);
    assert!(matches!(h.stop("nothing"), Err(PoolError::NotLoaded(_))));
    let _loading = h.acquire("a", 100);
    assert!(matches!(h.stop("a"), Err(PoolError::StillLoading(_))));
    h.loaded("p", 100);
    let Err(e @ PoolError::Pinned { .. }) = h.stop("p") else {
        panic!("a pinned model was stopped");
    };
    assert!(e.to_string().contains("unpin it"), "{e}");
    // Flush leaves the pinned model alone.
    let _ = h.flush();
    h.finish_loads();
    h.finish_frees();
    assert!(h.models().contains(&ready("p")));
}

#[test]
fn a_request_that_arrives_while_its_model_unloads_gets_a_fresh_load() {
    let mut h = Harness::standard();
    h.loaded("a", 100);
    let _report = h.stop("a").expect("stop");
    let mut later = h.acquire("a", 100);
    assert!(later.try_recv().is_err(), "it waits for the unload");
    h.finish_frees();
    h.finish_loads();
    assert!(matches!(later.try_recv(), Ok(Ok(_))));
    assert_eq!(h.status().loads.get("a"), Some(&2));
}

#[test]
fn a_lease_of_an_earlier_load_does_not_count_against_the_next_one() {
    let mut h = Harness::standard();
    let old = h.lease("a", 100);
    let _report = h.stop("a").expect("stop");
    h.advance(STOP_GRACE);
    h.finish_frees();
    let new = h.lease("a", 100);
    h.release(old);
    assert_eq!(h.status().models[0].in_flight, 1);
    h.release(new);
    assert_eq!(h.status().models[0].in_flight, 0);
}

// ----- pressure -----

#[test]
fn each_pressure_tier_unloads_what_it_calls_for() {
    let mut config = fake::config(10_000, IdleTimeout::Never);
    config.limits.pinned.insert("pinned".into());
    let mut h = Harness::new(config);
    h.loaded("pinned", 100);
    for id in ["oldest", "older", "newest"] {
        h.loaded(id, 100);
        h.advance(MINUTE);
    }
    let busy = h.lease("busy", 100);
    h.take_events();

    // Elevated: nothing.
    h.pressure(Tier::Elevated);
    assert!(h.take_events().is_empty());

    // Constrained: every idle model but the most recently used one.
    h.pressure(Tier::Constrained);
    assert_eq!(h.take_events(), ["unloading oldest", "unloading older"]);
    h.finish_frees();
    h.take_events();

    // Critical: the least recently used idle model, one per look; busy and pinned stay.
    h.pressure(Tier::Critical);
    assert_eq!(h.take_events(), ["unloading newest"]);
    h.finish_frees();
    h.pressure(Tier::Critical);
    assert!(
        h.take_events().iter().all(|e| !e.starts_with("unloading")),
        "nothing idle and unpinned is left"
    );

    // Emergency: the busy model too, its request ended; the pinned one stays.
    h.pressure(Tier::Emergency);
    assert_eq!(h.ended, ["busy"]);
    h.release(busy);
    h.finish_frees();
    assert_eq!(h.models(), [ready("pinned")]);
}

#[test]
fn at_critical_pressure_new_requests_and_loads_wait_outside() {
    let mut h = Harness::standard();
    let running = h.lease("a", 100);
    h.pressure(Tier::Critical);
    let mut on_loaded = h.acquire("a", 100);
    let PoolError::LowMemory { message } = refused(&mut on_loaded) else {
        panic!("refused for another reason");
    };
    assert!(message.contains("memory pressure is critical"), "{message}");
    let mut new = h.load("b", 100);
    assert!(matches!(
        new.try_recv(),
        Ok(Err(PoolError::LowMemory { .. }))
    ));
    // The running request is left to finish.
    assert!(h.ended.is_empty());
    h.release(running);
    // Once the tier drops, requests are served again.
    h.pressure(Tier::Normal);
    let _served = h.lease("a", 100);
}

#[test]
fn the_margin_grows_with_the_tier() {
    let mut config = fake::config(100_000, IdleTimeout::Never);
    config.limits.margins = crate::vocab::TierMargins {
        relaxed: 1_000 * MB,
        constrained: 5_000 * MB,
        critical: 9_000 * MB,
    };
    let mut h = Harness::new(config);
    h.probe.set_available(5_500 * MB);
    let _a = h.lease("a", 1_000);
    h.pressure(Tier::Constrained);
    let mut b = h.acquire("b", 1_000);
    assert!(matches!(
        refused(&mut b),
        PoolError::InsufficientMemory { .. }
    ));
    assert_eq!(h.status().margin, 5_000 * MB);
}

// ----- shutdown -----

#[test]
fn shutdown_tells_every_waiter_and_unloads_every_model() {
    let mut config = fake::config(1_000, IdleTimeout::Never);
    config.limits.pinned.insert("pinned".into());
    let mut h = Harness::new(config);
    h.loaded("pinned", 100);
    let busy = h.lease("busy", 100);
    let mut loading = h.acquire("loading", 100);
    h.input(Input::Shutdown);
    assert!(matches!(refused(&mut loading), PoolError::ShuttingDown));
    assert_eq!(h.ended, ["busy"]);
    assert_eq!(h.frees.len(), 1, "the idle pinned model goes at once");
    // Nothing new is taken.
    let mut late = h.acquire("other", 100);
    assert!(matches!(refused(&mut late), PoolError::ShuttingDown));
    // The load under way finishes into nothing; the busy model's client lets go.
    h.finish_loads();
    h.release(busy);
    h.finish_frees();
    assert!(h.state.is_empty(), "{:?}", h.state.model_ids());
    assert_eq!(h.engine.dropped(), 3);
}

// ----- a model file changing on disk -----

#[test]
fn a_busy_pinned_model_whose_file_changes_ends_its_requests_and_unloads() {
    let mut config = fake::config(1_000, IdleTimeout::Never);
    config.limits.pinned.insert("a".into());
    let mut h = Harness::new(config);
    let lease = h.lease("a", 100);
    h.take_events();
    h.file_changed("a");
    assert_eq!(h.ended, ["a"], "its request is ended at once");
    let reason = h.engine.stop_reasons().pop().expect("a reason");
    assert!(reason.contains("changed on disk"), "{reason}");
    assert!(h.frees.is_empty(), "the request still holds the model");
    h.release(lease);
    assert_eq!(h.frees.len(), 1);
    assert_eq!(h.frees[0].2, UnloadReason::FileChanged);
    h.finish_frees();
    assert!(h.models().is_empty());
    assert_eq!(
        h.take_events(),
        ["unloading a", "request_finished a", "unloaded a"]
    );
}

#[test]
fn the_next_request_after_a_file_change_loads_the_file_again() {
    let mut h = Harness::standard();
    h.loaded("a", 100);
    h.file_changed("a");
    let mut answer = h.acquire("a", 100);
    h.finish_frees();
    assert_eq!(h.loads.len(), 1, "a fresh load once the old one is gone");
    h.finish_loads();
    assert!(matches!(answer.try_recv(), Ok(Ok(_))));
    assert_eq!(h.status().loads.get("a"), Some(&2));
}

#[test]
fn a_file_change_of_an_earlier_load_changes_nothing() {
    let mut h = Harness::standard();
    h.loaded("a", 100);
    let earlier = h.serials["a"];
    h.stop("a").expect("stop");
    h.finish_frees();
    h.loaded("a", 100);
    h.input(Input::Report(Report::FileChanged {
        id: "a".into(),
        serial: earlier,
    }));
    assert_eq!(h.models(), [ready("a")]);
    assert!(h.frees.is_empty());
}

#[test]
fn a_file_that_changes_while_it_loads_is_not_kept() {
    let mut h = Harness::standard();
    let mut request = h.acquire("a", 100);
    h.file_changed("a");
    h.finish_loads();
    match refused(&mut request) {
        PoolError::LoadFailed { reason, .. } => {
            assert!(
                reason.contains("changed the file while it loaded"),
                "{reason}"
            )
        }
        other => panic!("{other}"),
    }
    assert!(h.models().is_empty());
    assert_eq!(h.engine.dropped(), 1, "the loaded model was let go");
}

// ----- memory running out faster than the tiers climb -----

#[test]
fn an_urgent_look_unloads_busy_models_too_and_closes_the_pool_until_it_passes() {
    let mut config = fake::config(1_000, IdleTimeout::Never);
    config.limits.pinned.insert("p".into());
    let mut h = Harness::new(config);
    h.loaded("p", 100);
    h.loaded("idle", 100);
    let lease = h.lease("busy", 100);
    h.take_events();
    // Elevated only, but at 2 GB/s what is available lasts 0.3 s.
    h.input(Input::Pressure(PressureReport {
        urgent: true,
        growth: Some(2e9),
        seconds_left: Some(0.3),
        ..fake::pressure(Tier::Elevated)
    }));
    assert_eq!(
        h.ended,
        ["busy"],
        "the busy model's request is ended at once"
    );
    let reason = h.engine.stop_reasons().pop().expect("a reason");
    assert!(reason.contains("another app needed it"), "{reason}");
    let mut refused_now = h.acquire("idle", 100);
    assert!(matches!(
        refused(&mut refused_now),
        PoolError::LowMemory { .. }
    ));
    h.release(lease);
    let freed: Vec<(String, UnloadReason)> = h.frees.iter().map(|f| (f.0.clone(), f.2)).collect();
    assert_eq!(
        freed,
        [
            ("idle".to_string(), UnloadReason::Pressure),
            ("busy".to_string(), UnloadReason::Pressure)
        ]
    );
    h.finish_frees();
    assert_eq!(h.models(), [ready("p")], "the pinned model stays");
    // The next look finds memory at ease again: requests are served.
    h.pressure(Tier::Normal);
    let mut served = h.acquire("idle", 100);
    h.finish_loads();
    assert!(matches!(served.try_recv(), Ok(Ok(_))));
}

#[test]
fn a_file_replaced_since_the_load_is_loaded_again_once_its_requests_end() {
    let mut h = Harness::standard();
    let mut file = h.file("a", 100);
    file.version = crate::models::FileVersion {
        inode: 1,
        len: 100,
        modified: None,
    };
    h.models.insert("a".into(), file.clone());
    let lease = h.lease("a", 100);
    // Another file is renamed over it.
    file.version.inode = 2;
    h.models.insert("a".into(), file);
    let mut next = h.acquire("a", 100);
    assert!(
        h.ended.is_empty(),
        "the running request is not ended: its inode lives on"
    );
    assert!(
        next.try_recv().is_err(),
        "the new request waits for the new file"
    );
    h.release(lease);
    assert_eq!(h.frees.len(), 1);
    assert_eq!(h.frees[0].2, UnloadReason::FileReplaced);
    h.finish_frees();
    h.finish_loads();
    assert!(matches!(next.try_recv(), Ok(Ok(_))));
    // The reloaded model is the new file's: the same file asks for no further reload.
    let again = h.lease("a", 100);
    assert!(h.frees.is_empty());
    assert_eq!(h.status().loads.get("a"), Some(&2));
    h.release(again);
}
