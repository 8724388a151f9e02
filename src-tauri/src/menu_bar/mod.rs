//! The menu-bar process: the server, the tray icon and its menu, launch at login; no WebKit.
//!
//! A menu-bar app that guards memory must itself be light when nobody looks at it, and WebKit is
//! not: merely linked, it keeps tens of MB resident, and once a webview has run, its web and
//! network processes stay. So the windows are another process (`windows`), the app binary run
//! as `headroom --window`, started when one is asked for and gone when the last one closes.
//! This process links the tray (`tray`) and nothing of Tauri; on Linux not even GTK.
//!
//! One loop on the main thread (`event_loop`) owns the tray and the window process; everything
//! else (the tray's feed, the menu's clicks, a later launch, the server stopping) reaches it as
//! an `Action` through the loop's `Proxy`.

mod backend;
mod event_loop;
mod instance;
mod login;
mod tray;
pub mod tray_view;
pub mod windows;

use std::sync::Arc;

use headroom_core::config::{AppDirs, SettingsStore};

use crate::window_request::{Page, WindowRequest};
use backend::Backend;
use event_loop::{EventLoop, Proxy};
use login::LoginItem;
use tray::Tray;
use tray_view::TrayView;

/// What reaches the main thread.
#[derive(Debug)]
pub enum Action {
    /// The tray's new view of the pool.
    Redraw(TrayView),
    /// A menu item was chosen: its id.
    Menu(String),
    /// A window is asked for: by the tray icon (macOS) or a later launch.
    Window(WindowRequest),
    /// The login item is now on or off.
    LaunchAtLogin(bool),
    /// The server stopped by itself (SIGTERM, Ctrl-C).
    ServerStopped,
}

/// Runs the menu bar until Quit; returns only if it cannot start, or after Quit where the
/// platform's loop returns.
pub fn run(store: Arc<SettingsStore>, dirs: AppDirs) -> anyhow::Result<()> {
    let Some(instance) = instance::claim()? else {
        return Ok(());
    };
    let event_loop = EventLoop::new();
    let proxy = event_loop.proxy();
    let mut backend = Backend::start(store, dirs)?;
    let runtime = backend.runtime.clone();
    // Tasks spawned from this thread (the login item's, the menu's) run on the server's runtime.
    let _runtime = runtime.enter();
    let core = backend.core.clone();
    let mut tray = Tray::build(proxy.clone(), &runtime)?;
    let login = LoginItem::new();
    login.follow_setting(&core, proxy.clone());
    runtime.spawn(tray::feed(proxy.clone(), core.clone()));
    let later = proxy.clone();
    instance.listen(move |request| {
        later.send(Action::Window(request));
    });
    let stopped = proxy.clone();
    backend.when_stopped(move || {
        stopped.send(Action::ServerStopped);
    });
    let mut windows = windows::Windows::new(backend.url.clone(), core.clone());
    windows.request(WindowRequest::Show(Page::Main));
    let mut login_on = login.enabled();
    drop(proxy);

    event_loop.run(move |action| {
        let quit = match action {
            Action::Redraw(view) => {
                if let Err(e) = tray.show(view, login_on) {
                    tracing::warn!("cannot update the tray: {e:#}");
                }
                false
            }
            Action::LaunchAtLogin(on) => {
                login_on = on;
                tray.show_launch_at_login(on);
                false
            }
            Action::Window(request) => {
                windows.request(request);
                false
            }
            Action::Menu(id) => on_menu(&id, &core, &login, &mut windows),
            Action::ServerStopped => true,
        };
        if quit {
            // Quit: the server finishes or ends its requests and unloads every model first.
            backend.stop();
            windows.close();
        }
        quit
    });
    Ok(())
}

/// A menu item was chosen; true for Quit.
fn on_menu(
    id: &str,
    core: &headroom_core::api::AppState,
    login: &LoginItem,
    windows: &mut windows::Windows,
) -> bool {
    if let Some(model) = id.strip_prefix(tray::STOP) {
        let (pool, model) = (core.pool.clone(), model.to_string());
        tokio::spawn(async move {
            match pool.unload(&model).await {
                Ok(report) => {
                    tracing::info!(%model, reclaimed = ?report.reclaimed, "stopped from the tray")
                }
                Err(e) => tracing::warn!(%model, "cannot stop from the tray: {e}"),
            }
        });
        return false;
    }
    match id {
        tray::UNLOAD_ALL => {
            let pool = core.pool.clone();
            tokio::spawn(async move {
                if let Err(e) = pool.flush().await {
                    tracing::warn!("cannot unload all from the tray: {e}");
                }
            });
        }
        // The full window on macOS, where a click on the icon opens the panel; the panel
        // elsewhere, where the menu is the only way to it.
        tray::OPEN if cfg!(target_os = "macos") => windows.request(WindowRequest::Show(Page::Main)),
        tray::OPEN => windows.request(WindowRequest::Show(Page::Panel)),
        tray::PREFERENCES => windows.request(WindowRequest::Show(Page::Preferences)),
        tray::LAUNCH_AT_LOGIN => login.toggle(core),
        tray::QUIT => return true,
        _ => {}
    }
    false
}
