//! The core server inside the menu-bar process: it runs on its own Tokio runtime thread, as in
//! headless mode, and the menu bar keeps what it needs to reach, drive and stop it.

use std::sync::Arc;

use anyhow::Context as _;
use headroom_core::api::AppState;
use headroom_core::config::{AppDirs, SettingsStore};
use headroom_core::server::Server;
use tokio::sync::oneshot;

pub struct Backend {
    /// `http://127.0.0.1:<port>/`
    pub url: String,
    /// The pool, the probe and the settings, as the API's handlers see them.
    pub core: AppState,
    /// The server's runtime: the menu bar's own tasks (the tray's feed, Stop) run on it too.
    pub runtime: tokio::runtime::Handle,
    /// Fired once on Quit: the server finishes requests and unloads models.
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
    /// Fires when the server has stopped by itself (SIGTERM, Ctrl-C).
    stopped: Option<std::sync::mpsc::Receiver<()>>,
}

impl Backend {
    /// Starts the server and waits until it listens.
    pub fn start(store: Arc<SettingsStore>, dirs: AppDirs) -> anyhow::Result<Self> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (stopped_tx, stopped_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("headroom-server".into())
            .spawn(move || -> anyhow::Result<()> {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .build()?;
                let handle = runtime.handle().clone();
                runtime.block_on(async move {
                    let server = match Server::start(&store, &dirs, crate::engine).await {
                        Ok(server) => server,
                        Err(e) => {
                            let _ = ready_tx.send(Err(format!("{e:#}")));
                            return Err(e);
                        }
                    };
                    crate::announce(&server, &dirs);
                    let _ = ready_tx.send(Ok((
                        format!("http://{}/", server.address()),
                        server.state(),
                        handle,
                    )));
                    let stop = async move {
                        tokio::select! {
                            _ = stop_rx => {},
                            () = crate::shutdown::signal() => {},
                        }
                    };
                    let result = server.serve(stop, crate::shutdown::GRACE).await;
                    let _ = stopped_tx.send(());
                    result
                })
            })?;
        let (url, core, runtime) = ready_rx
            .recv()
            .context("the server thread died while starting")?
            .map_err(|e| anyhow::anyhow!(e))?;
        Ok(Self {
            url,
            core,
            runtime,
            stop: Some(stop_tx),
            thread: Some(thread),
            stopped: Some(stopped_rx),
        })
    }

    /// Calls `then` (once, on another thread) when the server stops by itself, so the menu bar
    /// quits too rather than sit over a dead server.
    pub fn when_stopped(&mut self, then: impl FnOnce() + Send + 'static) {
        if let Some(stopped) = self.stopped.take() {
            std::thread::spawn(move || {
                if stopped.recv().is_ok() {
                    then();
                }
            });
        }
    }

    /// Quit: the server finishes or ends its requests and unloads every model; returns when it
    /// has.
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            match thread.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!("server stopped with an error: {e:#}"),
                Err(_) => tracing::error!("the server thread panicked"),
            }
        }
    }
}
