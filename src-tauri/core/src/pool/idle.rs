//! Idle-unload deadlines: one background task for all loaded models.
//!
//! Modelled on mini-redis's expiry task (`src/db.rs`): the deadlines sit in a `BTreeMap` ordered
//! by time, the task sleeps until the earliest one, and a `Notify` wakes it when an earlier
//! deadline appears. Not a task per model, not a poll loop. The task decides nothing: when a
//! deadline passes it tells the pool, which checks that the model is still idle (a request may
//! have started in between) before it unloads.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;

use super::actor::Internal;

/// The handle the pool uses. Dropping it stops the task.
pub(super) struct IdleTimers {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the task: a new earliest deadline, or shutdown.
    background_task: Notify,
}

#[derive(Default)]
struct State {
    /// (deadline, model, load serial), ordered by deadline. The serial tells an expiry of an
    /// earlier load of the same model from the current one.
    deadlines: BTreeMap<(Instant, String), u64>,
    /// Each model's deadline, to find and replace it.
    by_model: HashMap<String, Instant>,
    shutdown: bool,
}

impl IdleTimers {
    /// Starts the task; expiries arrive on `expired` as [`Internal::IdleExpired`].
    pub(super) fn start(expired: mpsc::UnboundedSender<Internal>) -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            background_task: Notify::new(),
        });
        tokio::spawn(expire_deadlines(Arc::clone(&shared), expired));
        Self { shared }
    }

    /// Sets (or moves) `model`'s deadline.
    pub(super) fn set(&self, model: &str, serial: u64, at: Instant) {
        let Ok(mut state) = self.shared.state.lock() else {
            return;
        };
        if let Some(old) = state.by_model.insert(model.to_string(), at) {
            state.deadlines.remove(&(old, model.to_string()));
        }
        state.deadlines.insert((at, model.to_string()), serial);
        // Only an earlier deadline than the one the task sleeps towards needs it awake.
        let earliest = state.deadlines.keys().next().map(|(t, _)| *t) == Some(at);
        drop(state);
        if earliest {
            self.shared.background_task.notify_one();
        }
    }

    /// Removes `model`'s deadline (a request started, or it is unloading).
    pub(super) fn clear(&self, model: &str) {
        let Ok(mut state) = self.shared.state.lock() else {
            return;
        };
        if let Some(old) = state.by_model.remove(model) {
            state.deadlines.remove(&(old, model.to_string()));
        }
    }
}

impl Drop for IdleTimers {
    fn drop(&mut self) {
        if let Ok(mut state) = self.shared.state.lock() {
            state.shutdown = true;
        }
        self.shared.background_task.notify_one();
    }
}

impl Shared {
    /// Reports every passed deadline; returns the next one, if any.
    fn purge_expired(&self, expired: &mpsc::UnboundedSender<Internal>) -> Option<Instant> {
        let mut state = self.state.lock().ok()?;
        let now = Instant::now();
        while let Some((&(at, ref model), &serial)) = state.deadlines.iter().next() {
            if at > now {
                return Some(at);
            }
            let model = model.clone();
            state.deadlines.remove(&(at, model.clone()));
            state.by_model.remove(&model);
            let _ = expired.send(Internal::IdleExpired { id: model, serial });
        }
        None
    }

    fn is_shutdown(&self) -> bool {
        self.state.lock().map_or(true, |s| s.shutdown)
    }
}

async fn expire_deadlines(shared: Arc<Shared>, expired: mpsc::UnboundedSender<Internal>) {
    while !shared.is_shutdown() {
        match shared.purge_expired(&expired) {
            Some(when) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(when) => {}
                    _ = shared.background_task.notified() => {}
                }
            }
            None => shared.background_task.notified().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn expired_ids(rx: &mut mpsc::UnboundedReceiver<Internal>) -> Vec<(String, u64)> {
        let mut ids = Vec::new();
        while let Ok(message) = rx.try_recv() {
            if let Internal::IdleExpired { id, serial } = message {
                ids.push((id, serial));
            }
        }
        ids
    }

    #[tokio::test]
    async fn deadlines_fire_in_order_and_can_be_moved_or_cleared() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let timers = IdleTimers::start(tx);
        let ms = Duration::from_millis;
        let now = Instant::now();
        timers.set("b", 2, now + ms(200));
        timers.set("a", 1, now + ms(100));
        timers.set("c", 3, now + ms(300));
        timers.clear("c");
        // Moved later: a request came and went.
        timers.set("a", 1, now + ms(450));

        tokio::time::sleep_until(now + ms(150)).await;
        assert_eq!(expired_ids(&mut rx), vec![]);
        tokio::time::sleep_until(now + ms(350)).await;
        assert_eq!(expired_ids(&mut rx), vec![("b".to_string(), 2)]);
        tokio::time::sleep_until(now + ms(600)).await;
        assert_eq!(expired_ids(&mut rx), vec![("a".to_string(), 1)]);
    }

    #[tokio::test]
    async fn an_earlier_deadline_wakes_the_sleeping_task() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let timers = IdleTimers::start(tx);
        let now = Instant::now();
        timers.set("late", 1, now + Duration::from_secs(3600));
        tokio::time::sleep(Duration::from_millis(50)).await;
        timers.set("soon", 2, now + Duration::from_millis(100));
        tokio::time::sleep_until(now + Duration::from_millis(250)).await;
        assert_eq!(expired_ids(&mut rx), vec![("soon".to_string(), 2)]);
    }
}
