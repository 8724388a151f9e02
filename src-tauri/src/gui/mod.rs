//! The desktop shell: a tray (menu-bar) icon and a window over the same server the headless mode
//! runs. The shell holds no state of its own; the window is the web UI served by the core.

mod tray;

use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use headroom_core::config::{AppDirs, SettingsStore};
use headroom_core::server::Server;
use tauri::{Manager, RunEvent, WebviewUrl, WebviewWindowBuilder};
use tokio::sync::oneshot;

/// The window's label; there is one.
const MAIN: &str = "main";

/// What the shell needs to reach the backend.
struct Backend {
    url: String,
    /// Fired once on Quit: the server finishes requests and unloads models.
    stop: Mutex<Option<oneshot::Sender<()>>>,
    thread: Mutex<Option<std::thread::JoinHandle<anyhow::Result<()>>>>,
    /// Fires when the server has stopped by itself (SIGTERM, Ctrl-C): the app then quits too,
    /// rather than sit in the menu bar over a dead server.
    stopped: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
}

pub fn run(store: Arc<SettingsStore>, dirs: AppDirs) -> anyhow::Result<()> {
    let backend = start_backend(store, dirs)?;
    tauri::Builder::default()
        .manage(backend)
        .setup(|app| {
            // A menu-bar app: no Dock icon, no app menu.
            #[cfg(target_os = "macos")]
            app.set_activation_policy(tauri::ActivationPolicy::Accessory);
            tray::build(app.handle())?;
            show_window(app.handle())?;
            quit_when_server_stops(app.handle());
            Ok(())
        })
        .build(tauri::generate_context!())
        .context("cannot start the desktop app")?
        .run(|app, event| {
            if let RunEvent::ExitRequested { api, code, .. } = event {
                // Closing the window leaves Headroom in the menu bar; only Quit (which asks
                // with an exit code) ends it.
                if code.is_none() {
                    api.prevent_exit();
                } else {
                    stop_backend(app);
                }
            }
        });
    Ok(())
}

/// Runs the core server on its own Tokio runtime thread and waits until it listens.
fn start_backend(store: Arc<SettingsStore>, dirs: AppDirs) -> anyhow::Result<Backend> {
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
                let server = match Server::start(&store, &dirs).await {
                    Ok(server) => server,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("{e:#}")));
                        return Err(e);
                    }
                };
                crate::announce(&server, &dirs);
                let _ = ready_tx.send(Ok(format!("http://{}/", server.address())));
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
    let url = ready_rx
        .recv()
        .context("the server thread died while starting")?
        .map_err(|e| anyhow::anyhow!(e))?;
    Ok(Backend {
        url,
        stop: Mutex::new(Some(stop_tx)),
        thread: Mutex::new(Some(thread)),
        stopped: Mutex::new(Some(stopped_rx)),
    })
}

fn quit_when_server_stops(app: &tauri::AppHandle) {
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

fn stop_backend(app: &tauri::AppHandle) {
    let backend = app.state::<Backend>();
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

/// Shows the window, creating it the first time (or after it was closed).
pub(crate) fn show_window(app: &tauri::AppHandle) -> tauri::Result<()> {
    if let Some(window) = app.get_webview_window(MAIN) {
        window.show()?;
        return window.set_focus();
    }
    let url = app.state::<Backend>().url.clone();
    let url = url
        .parse()
        .map_err(|e| tauri::Error::Anyhow(anyhow::anyhow!("bad server address {url}: {e}")))?;
    WebviewWindowBuilder::new(app, MAIN, WebviewUrl::External(url))
        .title("Headroom")
        .inner_size(560.0, 480.0)
        .build()?;
    Ok(())
}
