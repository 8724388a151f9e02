//! Unload hooks: work other subsystems want done when memory turns critical, beside the pool's
//! unloads (dropping caches they keep, giving the allocator's free pages back). They register
//! through `Server::unload_hooks`.
//!
//! The monitor runs them off the async runtime when the tier rises to critical or emergency,
//! and logs what each reports. The built-in hook trims the allocator even when no model was
//! unloaded: request buffers freed at the end of generations sit in glibc's arenas too.

use std::sync::{Arc, Mutex};

use super::Tier;

type Run = Box<dyn Fn(Tier) -> String + Send + Sync>;
/// A hook's name, for the log, and what it runs.
type Hook = (&'static str, Arc<Run>);

/// The registered hooks. Cheap to clone; every clone shares one list.
#[derive(Clone, Default)]
pub struct UnloadHooks {
    hooks: Arc<Mutex<Vec<Hook>>>,
}

impl UnloadHooks {
    /// Hooks that every Headroom has: the allocator's free memory goes back to the system.
    pub fn with_defaults() -> Self {
        let hooks = Self::default();
        hooks.register("release_free_memory", |_| {
            crate::memory::release_free_memory();
            "allocator free lists trimmed".into()
        });
        hooks
    }

    /// Adds a hook; it returns a line saying what it did, for the log.
    pub fn register(
        &self,
        name: &'static str,
        run: impl Fn(Tier) -> String + Send + Sync + 'static,
    ) {
        self.lock().push((name, Arc::new(Box::new(run))));
    }

    /// Runs every hook on a blocking thread; a hook that panics is logged and the rest still run.
    pub async fn run(&self, tier: Tier) -> Vec<(&'static str, String)> {
        let hooks: Vec<_> = self.lock().clone();
        let ran = tokio::task::spawn_blocking(move || {
            hooks
                .into_iter()
                .map(|(name, run)| {
                    let outcome =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(tier)))
                            .unwrap_or_else(|_| "panicked".into());
                    (name, outcome)
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        for (name, outcome) in &ran {
            tracing::info!(hook = name, ?tier, outcome, "unload hook ran");
        }
        ran
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Hook>> {
        // A hook list is only ever pushed to; a panic elsewhere cannot leave it half-written.
        self.hooks.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn every_hook_runs_even_after_one_panics() {
        let hooks = UnloadHooks::with_defaults();
        let calls = Arc::new(AtomicUsize::new(0));
        hooks.register("panics", |_| panic!("a broken hook"));
        let counted = calls.clone();
        hooks.register("drops_a_cache", move |tier| {
            counted.fetch_add(1, Ordering::SeqCst);
            format!("dropped at {tier:?}")
        });
        let ran = hooks.run(Tier::Critical).await;
        assert_eq!(
            ran.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            vec!["release_free_memory", "panics", "drops_a_cache"]
        );
        assert_eq!(ran[1].1, "panicked");
        assert_eq!(ran[2].1, "dropped at Critical");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
