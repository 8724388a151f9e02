//! The settings in force, applied to the running server. Start-up, `PUT /api/settings` and the
//! tray's checkbox all go through here, so a setting means the same thing whichever way it
//! changes, and every change is announced on the event bus.

use std::sync::Arc;

use tokio::sync::watch;

use crate::config::{SaveError, Settings, SettingsChanged, SettingsStore};
use crate::events::Bus;
use crate::memory::MemoryProbe;
use crate::models::Catalog;
use crate::notify::Notifications;
use crate::pool::{Pool, PoolError, PoolLimits};
use crate::vocab::PressureThresholds;

/// Settings that only a restart applies.
const RESTART_REQUIRED: &[&str] = &[
    "port",
    "bind",
    "max_connections",
    "models_dirs",
    "sources",
    "threads",
    "parallel",
    "context_size",
    "queue_size",
    "map_weights",
    "kv_cache_type",
    "kv_cache_types",
    "engine",
    "engines",
    "mlx_cache_limit",
    "conversation_cache",
];

/// The pool's limits that `settings` call for on a machine (or cgroup) with `total_ram` bytes.
/// The one mapping from settings to the pool, at start and on every change.
pub fn pool_limits(settings: &Settings, total_ram: u64) -> PoolLimits {
    let (margins, floor) = settings.margins_for(total_ram);
    PoolLimits {
        limit: settings.memory_limit.resolve(total_ram),
        margins,
        floor,
        pinned: settings.pinned.iter().cloned().collect(),
        idle_timeout: settings.idle_timeout,
        idle_timeouts: settings.idle_timeouts.clone(),
    }
}

/// Why new settings were not applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Nothing changed: neither the file nor what is in force.
    #[error(transparent)]
    NotSaved(#[from] SaveError),
    #[error(transparent)]
    Pool(#[from] PoolError),
}

/// The running subsystems that settings steer.
#[derive(Clone)]
pub struct Live {
    store: Arc<SettingsStore>,
    pool: Pool,
    catalog: Arc<Catalog>,
    thresholds: Arc<watch::Sender<PressureThresholds>>,
    notifications: Notifications,
    bus: Bus,
    probe: Arc<dyn MemoryProbe>,
}

impl Live {
    /// Takes over the subsystems as start-up made them from `store.live()`, and loads the
    /// models it pins.
    pub fn start(
        store: Arc<SettingsStore>,
        pool: Pool,
        catalog: Arc<Catalog>,
        thresholds: watch::Sender<PressureThresholds>,
        notifications: Notifications,
        bus: Bus,
        probe: Arc<dyn MemoryProbe>,
    ) -> Self {
        let live = Self {
            store,
            pool,
            catalog,
            thresholds: Arc::new(thresholds),
            notifications,
            bus,
            probe,
        };
        live.load_pinned(&live.store.live().pinned);
        live
    }

    /// The config file and the settings in force.
    pub fn store(&self) -> &Arc<SettingsStore> {
        &self.store
    }

    /// Saves `file` to the config file and puts `settings` in force: the pool's limits and
    /// timeouts, the pressure thresholds and notifications change now, newly pinned models
    /// load, and the change is published. Settings in [`RESTART_REQUIRED`] are saved and wait
    /// for the next start. The settings are checked by the caller; if the save fails, nothing
    /// changes.
    pub async fn apply(
        &self,
        file: Settings,
        settings: Settings,
    ) -> Result<SettingsChanged, ApplyError> {
        let before = self.store.live();
        let changed = changed_keys(&before, &settings);
        let restart_required: Vec<String> = changed
            .iter()
            .filter(|k| RESTART_REQUIRED.contains(&k.as_str()))
            .cloned()
            .collect();
        // Saved first: if the disk is full, nothing changes anywhere.
        let store = Arc::clone(&self.store);
        let in_force = settings.clone();
        tokio::task::spawn_blocking(move || store.save(file, in_force))
            .await
            .map_err(|e| SaveError {
                path: self.store.path().display().to_string(),
                source: std::io::Error::other(e.to_string()),
            })??;
        tracing::info!(?changed, ?restart_required, "settings changed");
        // The machine's size as it is now: a cgroup's limit may have moved since start.
        let total_ram = self.probe.system().map_or(u64::MAX, |s| s.total);
        self.pool
            .reconfigure(pool_limits(&settings, total_ram))
            .await?;
        self.thresholds.send_replace(settings.pressure);
        self.notifications.set_enabled(settings.notifications);
        let newly_pinned: Vec<String> = settings
            .pinned
            .iter()
            .filter(|id| !before.pinned.contains(id))
            .cloned()
            .collect();
        self.load_pinned(&newly_pinned);
        let event = SettingsChanged {
            changed,
            restart_required,
        };
        self.bus.publish(event.clone());
        Ok(event)
    }

    /// Loads the pinned models in the background, in order, so the server answers at once; a
    /// pinned model that cannot be found or loaded is logged and the rest still load.
    fn load_pinned(&self, ids: &[String]) {
        if ids.is_empty() {
            return;
        }
        let pool = self.pool.clone();
        let catalog = Arc::clone(&self.catalog);
        let ids = ids.to_vec();
        tokio::spawn(async move {
            for id in ids {
                let result = match catalog.find(&id) {
                    Ok(file) => pool.load(file).await.map(|_| ()).map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                match result {
                    Ok(()) => tracing::info!(model = %id, "pinned model loaded"),
                    Err(e) => {
                        tracing::error!(model = %id, error = %e, "cannot load a pinned model")
                    }
                }
            }
        });
    }
}

/// The settings whose values differ, by their names in the config file.
fn changed_keys(before: &Settings, after: &Settings) -> Vec<String> {
    let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) =
        (serde_json::to_value(before), serde_json::to_value(after))
    else {
        return Vec::new();
    };
    b.iter()
        .filter(|(k, v)| a.get(*k) != Some(v))
        .map(|(k, _)| k.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::IdleTimeout;

    #[test]
    fn changed_keys_name_what_differs() {
        let before = Settings::default();
        let after = Settings {
            idle_timeout: IdleTimeout::Never,
            port: 1,
            ..before.clone()
        };
        let mut changed = changed_keys(&before, &after);
        changed.sort();
        assert_eq!(changed, ["idle_timeout", "port"]);
        assert!(changed_keys(&before, &before).is_empty());
    }

    #[test]
    fn the_pool_limits_follow_the_settings() {
        let settings = Settings {
            pinned: vec!["a".into()],
            ..Settings::default()
        };
        let limits = pool_limits(&settings, 16 << 30);
        assert_eq!(limits.limit, settings.memory_limit.resolve(16 << 30));
        assert!(limits.pinned.contains("a"));
        assert_eq!(limits.idle_timeout, settings.idle_timeout);
    }
}
