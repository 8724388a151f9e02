//! The core server inside the app: it runs on its own Tokio runtime thread, as in headless
//! mode, and the shell keeps what it needs to reach and stop it.

use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use headroom_core::api::AppState;
use headroom_core::config::{AppDirs, SettingsStore};
use headroom_core::server::Server;
use tauri::Manager;
use tokio::sync::oneshot;

pub struct Backend {
    /// `http://127.0.0.1:<port>/`
    pub url: String,
    /// The pool, the probe and the settings, as the API's handlers see them.
    pub core: AppState,
    /// Fired once on Quit: the server finishes requests and unloads models.
    stop: Mutex<Option<oneshot::Sender<()>>>,
    thread: Mutex<Option<std::thread::JoinHandle<anyhow::Result<()>>>>,
    /// Fires when the server has stopped by itself (SIGTERM, Ctrl-C): the app then quits too,
    /// rather than sit in the menu bar over a dead server.
    stopped: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
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
                runtime.block_on(async move {
                    let server = match Server::start(&store, &dirs, headroom_app::engine).await {
                        Ok(server) => server,
                        Err(e) => {
                            let _ = ready_tx.send(Err(format!("{e:#}")));
                            return Err(e);
                        }
                    };
                    headroom_app::announce(&server, &dirs);
                    let _ = ready_tx.send(Ok((
                        format!("http://{}/", server.address()),
                        server.state(),
                    )));
                    let stop = async move {
                        tokio::select! {
                            _ = stop_rx => {},
                            () = headroom_app::shutdown::signal() => {},
                        }
                    };
                    let result = server.serve(stop, headroom_app::shutdown::GRACE).await;
                    let _ = stopped_tx.send(());
                    result
                })
            })?;
        let (url, core) = ready_rx
            .recv()
            .context("the server thread died while starting")?
            .map_err(|e| anyhow::anyhow!(e))?;
        Ok(Self {
            url,
            core,
            stop: Mutex::new(Some(stop_tx)),
            thread: Mutex::new(Some(thread)),
            stopped: Mutex::new(Some(stopped_rx)),
        })
    }
}

pub fn quit_when_server_stops(app: &tauri::AppHandle) {
    let Some(stopped) = app
        .state::<Backend>()
        .stopped
        .lock()
        .ok()
        .and_then(|mut s| s.take())
    else {
        return;
    };
    let app = app.clone();
    std::thread::spawn(move || {
        if stopped.recv().is_ok() {
            app.exit(0);
        }
    });
}

/// Quit: the server finishes or ends its requests and unloads every model before the app exits.
pub fn stop(app: &tauri::AppHandle) {
    let Some(backend) = app.try_state::<Backend>() else {
        return;
    };
    if let Some(stop) = backend.stop.lock().ok().and_then(|mut s| s.take()) {
        let _ = stop.send(());
    }
    if let Some(thread) = backend.thread.lock().ok().and_then(|mut t| t.take()) {
        match thread.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!("server stopped with an error: {e:#}"),
            Err(_) => tracing::error!("the server thread panicked"),
        }
    }
}
