//! Putting the core together: settings in, a listening server out. The headless binary and the
//! Tauri app both start Headroom through [`Server::start`], so they run the same backend.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::api::{self, AppState};
use crate::config::{AppDirs, SettingsStore};
use crate::engine::saved::SavedPrefixes;
use crate::engine::{Engine, LoadOptions};
use crate::events::Bus;
use crate::listen::Listeners;
use crate::live::{pool_limits, Live};
use crate::memory::{os_probe, MemoryProbe};
use crate::metrics::Metrics;
use crate::models::Catalog;
use crate::pool::{Pool, PoolConfig};
use crate::pressure::{Monitor, UnloadHooks};
use crate::protect::Protector;
use crate::vocab::memory_size;

/// A bound, not yet serving, Headroom server.
pub struct Server {
    listener: Listeners,
    address: SocketAddr,
    pool: Pool,
    state: AppState,
    unload_hooks: UnloadHooks,
    /// Flipped when shutdown begins; long-lived streams (`/api/events`) end on it, so they
    /// do not hold the graceful shutdown open.
    stopping: tokio::sync::watch::Sender<bool>,
    /// The model folders' watch, held for as long as the server runs.
    _models_watch: Option<crate::models::watch::Watch>,
}

impl Server {
    /// Creates the model folder if needed, starts the engine `engine` makes and the pool, and
    /// binds the configured address (loopback unless set) and port (0 = any free port).
    ///
    /// The engine comes from the binary, which links the engine crates; the core knows only the
    /// [`Engine`] trait. It is made after the allocator is set up, so its first allocations
    /// already follow that setup.
    pub async fn start(
        store: &Arc<SettingsStore>,
        dirs: &AppDirs,
        engine: impl FnOnce() -> anyhow::Result<Arc<dyn Engine>>,
    ) -> anyhow::Result<Self> {
        let settings = &store.live();
        let own_models = dirs.models();
        if let Err(e) = std::fs::create_dir_all(&own_models) {
            tracing::warn!(dir = %own_models.display(), error = %e, "cannot create the model folder");
        }
        let mut model_dirs = vec![own_models.clone()];
        model_dirs.extend(settings.models_dirs.iter().cloned());
        let sources = crate::models::Source::locate_all(&settings.sources);
        for source in &sources {
            tracing::info!(source = source.kind.name(), folder = %source.root.display(), "serving another app's models (read only)");
        }
        let catalog = Arc::new(Catalog::with_sources(model_dirs, sources));

        let probe: Arc<dyn MemoryProbe> = os_probe();
        let total_ram = probe
            .system()
            .map(|s| s.total)
            .ok_or_else(|| anyhow::anyhow!("cannot read the machine's memory size"))?;
        settings.validate_for_machine(total_ram, "settings")?;
        let limits = pool_limits(settings, total_ram);
        tracing::info!(
            limit = %memory_size(limits.limit),
            setting = %settings.memory_limit,
            ram = %memory_size(total_ram),
            "pool memory limit"
        );

        crate::memory::keep_large_blocks_returnable();
        let engine = engine()?;
        let conversations = SavedPrefixes::new(
            dirs.data.join("conversations"),
            settings.conversation_cache.0,
        );
        let config = PoolConfig {
            load: LoadOptions {
                context_per_slot: settings.context_size,
                parallel: settings.parallel,
                queue: settings.queue_size as usize,
                threads: settings.effective_threads(),
                map_weights: settings.map_weights,
                kv_cache: settings.kv_cache_type,
                kv_cache_by_model: settings.kv_cache_types.clone(),
                conversations: Some(conversations.clone()),
                engine: settings.engine,
                engine_by_model: settings.engines.clone(),
                allocator_cache_limit: settings.mlx_cache_limit.0,
            },
            config_source: dirs.config_file.display().to_string(),
            limits,
            protector: Some(Protector::start(&dirs.data)),
        };
        let metrics = Metrics::default();
        let bus = Bus::default();
        let tokens = Arc::clone(store);
        let pulls = crate::pull::Pulls::new(
            own_models,
            crate::pull::hub::endpoint(),
            Arc::new(move || crate::pull::hub::token(tokens.live().hub_token.as_deref())),
            bus.publisher(),
        );
        let (reports, pressure) = tokio::sync::mpsc::channel(crate::pressure::REPORT_QUEUE);
        let pool = Pool::start(
            Arc::clone(&engine),
            config,
            Arc::clone(&probe),
            metrics.clone(),
            bus.publisher(),
            pressure,
        );
        // The monitor runs from the start, before any model loads.
        let unload_hooks = UnloadHooks::with_defaults();
        // What the engines keep for reuse (MLX's allocator cache) goes back too.
        let engines = Arc::clone(&engine);
        unload_hooks.register("engine_caches", move |_| {
            engines
                .release_cached_memory()
                .unwrap_or_else(|| "no engine cache to release".into())
        });
        let (thresholds, thresholds_rx) = tokio::sync::watch::channel(settings.pressure);
        crate::pressure::start(Monitor {
            probe: Arc::clone(&probe),
            thresholds: thresholds_rx,
            hooks: unload_hooks.clone(),
            reports,
            publish: bus.publisher(),
            metrics: metrics.clone(),
        });
        let notifications = crate::notify::start(&bus, settings.notifications);
        for notice in store.notices() {
            notifications.send(crate::notify::Message {
                summary: "Headroom settings were reset".into(),
                body: notice.clone(),
            });
        }
        let live = Live::start(
            Arc::clone(store),
            pool.clone(),
            Arc::clone(&catalog),
            thresholds,
            notifications,
            bus.clone(),
            Arc::clone(&probe),
        );

        raise_open_files_limit(settings.max_connections);
        let listener = Listeners::bind(
            settings.bind,
            settings.port,
            settings.max_connections as usize,
        )
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on {}: {e} (is another Headroom running? set another with --port or HEADROOM_PORT)",
                SocketAddr::new(settings.bind.first_ip(), settings.port)
            )
        })?;
        if settings.bind.is_shared() {
            tracing::warn!(bind = %settings.bind, "listening beyond loopback: every request needs the API key");
        }
        let address = reachable(listener.local_addr()?);
        let (stopping, stopping_rx) = tokio::sync::watch::channel(false);
        let history = crate::history::History::start(pool.clone(), &bus, Arc::clone(&probe));
        let models_watch = catalog.watch(bus.publisher());
        let state = AppState {
            conversations: Some(conversations),
            pool: pool.clone(),
            catalog,
            probe,
            metrics,
            history,
            live,
            bus,
            port: address.port(),
            shared: settings.bind.is_shared(),
            connections: listener.open_connections(),
            stopping: stopping_rx,
            pulls,
        };
        Ok(Self {
            listener,
            address,
            pool,
            state,
            unload_hooks,
            stopping,
            _models_watch: models_watch,
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Where other subsystems register work to do when memory turns critical.
    pub fn unload_hooks(&self) -> UnloadHooks {
        self.unload_hooks.clone()
    }

    /// What the handlers reach: the pool, the probe, the settings. The desktop shell drives
    /// its tray through these, the same handles the API uses.
    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    /// Serves until `shutdown` resolves, then lets in-flight requests finish for up to
    /// `grace`, ends what is still streaming, and unloads every model.
    pub async fn serve(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
        grace: std::time::Duration,
    ) -> anyhow::Result<()> {
        let Self {
            listener,
            pool,
            state,
            stopping,
            ..
        } = self;
        let mut stopping_rx = stopping.subscribe();
        let app = api::router(state);
        let server = axum::serve(listener, app).with_graceful_shutdown(async move {
            shutdown.await;
            let _ = stopping.send(true);
        });
        let mut server = std::pin::pin!(server.into_future());
        tokio::select! {
            result = &mut server => result?,
            _ = stopping_rx.wait_for(|s| *s) => {
                tracing::info!(grace_ms = grace.as_millis() as u64, "shutting down: finishing in-flight requests");
                if tokio::time::timeout(grace, &mut server).await.is_err() {
                    tracing::info!("grace period over: ending the remaining generations");
                    pool.shutdown().await;
                    // Streams see their generation end and close; let them flush.
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), &mut server).await;
                }
            }
        }
        pool.shutdown().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// The address to print and open windows on: bound to "all addresses" (`0.0.0.0`, `::`), the
/// server is reached at the loopback of the same family.
fn reachable(mut address: SocketAddr) -> SocketAddr {
    match address.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
            address.set_ip(std::net::Ipv4Addr::LOCALHOST.into())
        }
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
            address.set_ip(std::net::Ipv6Addr::LOCALHOST.into())
        }
        _ => {}
    }
    address
}

/// Every connection is a file descriptor, and macOS starts apps with a soft limit of 256: raise
/// it toward the hard limit so `max_connections` (plus model files and the like) can be open.
fn raise_open_files_limit(max_connections: u32) {
    let wanted = u64::from(max_connections) + 256;
    match rlimit::increase_nofile_limit(wanted) {
        Ok(got) if got < wanted => tracing::warn!(
            limit = got,
            max_connections,
            "the open-files limit is below what max_connections needs; connections beyond it will fail"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot read or raise the open-files limit"),
    }
}
