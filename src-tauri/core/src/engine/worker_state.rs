//! What every engine's loaded model shares between its request side and the worker thread that
//! owns its context: the stop signal and the reason the ended generations are told, whether its
//! conversations are saved at unload, and the generation counters `LoadedModel::stats` reports.
//! And the worker thread itself, joined when the model is dropped, so that the memory the worker
//! frees is gone when the drop returns and whoever measures it sees the truth.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::thread::JoinHandle;

use super::GenerationStats;

/// The stop signal, the conversation-keeping flag and the counters. Counters are plain atomics:
/// the worker adds to them as generations start and end, the request side counts the queue.
#[derive(Debug, Default)]
pub struct WorkerState {
    /// Set on unload or shutdown: the worker ends every generation and exits.
    stop: AtomicBool,
    /// What the generations it ends are told (the first reason given wins).
    stop_reason: Mutex<String>,
    /// Set when the model unloads for want of memory or because its file changed: the worker
    /// then exits without saving its conversations.
    discard_conversations: AtomicBool,
    /// Generations decoding now.
    pub active: AtomicU64,
    /// Generations waiting for the worker.
    pub queued: AtomicU64,
    pub generated_tokens: AtomicU64,
    pub completed: AtomicU64,
    pub cancelled: AtomicU64,
    /// Prompt tokens reused from the KV cache.
    pub cached_tokens: AtomicU64,
}

impl WorkerState {
    /// Tells the worker to end every generation, telling each `reason`, and exit.
    pub fn stop(&self, reason: &str) {
        if let Ok(mut why) = self.stop_reason.lock() {
            if why.is_empty() {
                *why = reason.to_string();
            }
        }
        self.stop.store(true, Ordering::Release);
    }

    pub fn is_stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    pub fn stop_reason(&self) -> String {
        self.stop_reason
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// See `LoadedModel::keep_conversations`.
    pub fn keep_conversations(&self, keep: bool) {
        self.discard_conversations.store(!keep, Ordering::Release);
    }

    pub fn keeps_conversations(&self) -> bool {
        !self.discard_conversations.load(Ordering::Acquire)
    }

    pub fn stats(&self) -> GenerationStats {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        GenerationStats {
            active: load(&self.active),
            queued: load(&self.queued),
            generated_tokens: load(&self.generated_tokens),
            completed: load(&self.completed),
            cancelled: load(&self.cancelled),
            cached_tokens: load(&self.cached_tokens),
        }
    }
}

/// A model's worker thread, joined once.
#[derive(Debug)]
pub struct WorkerThread {
    handle: Mutex<Option<JoinHandle<()>>>,
    /// The engine's name, for the log line if the thread panicked.
    engine: &'static str,
}

impl WorkerThread {
    pub fn new(handle: JoinHandle<()>, engine: &'static str) -> Self {
        Self {
            handle: Mutex::new(Some(handle)),
            engine,
        }
    }

    /// Waits for the thread to end (after the model's state was told to stop).
    pub fn join(&self) {
        let handle = self.handle.lock().ok().and_then(|mut h| h.take());
        if let Some(handle) = handle {
            if handle.join().is_err() {
                tracing::error!(engine = self.engine, "a model's worker thread panicked");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_stop_reason_wins_and_counters_add_up() {
        let state = WorkerState::default();
        assert!(!state.is_stopping());
        assert!(state.keeps_conversations());
        state.generated_tokens.fetch_add(3, Ordering::Relaxed);
        state.completed.fetch_add(1, Ordering::Relaxed);
        state.keep_conversations(false);
        state.stop("the model was stopped");
        state.stop("the server is shutting down");
        assert!(state.is_stopping());
        assert!(!state.keeps_conversations());
        assert_eq!(state.stop_reason(), "the model was stopped");
        let stats = state.stats();
        assert_eq!((stats.generated_tokens, stats.completed), (3, 1));
    }

    #[test]
    fn a_worker_is_joined_once_and_a_panic_is_survived() {
        let worker = WorkerThread::new(std::thread::spawn(|| panic!("boom")), "test");
        worker.join();
        worker.join();
    }
}
