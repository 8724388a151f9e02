//! Launch at login: one switch, kept in two places that must agree — the operating system's
//! login item (tauri-plugin-autostart: a LaunchAgent on macOS, an XDG autostart entry on
//! Linux) and the `launch_at_login` setting. The tray's checkbox and Preferences both flip it.

use headroom_core::api::AppState;
use headroom_core::config::SettingsChanged;
use headroom_core::events::Event;
use tauri::{AppHandle, Manager};
use tauri_plugin_autostart::ManagerExt;
use tokio::sync::broadcast::error::RecvError;

/// Whether the login item is in place.
pub fn enabled(app: &AppHandle) -> bool {
    app.autolaunch().is_enabled().unwrap_or(false)
}

/// Makes the login item match the setting now, and again whenever Preferences changes it.
pub fn follow_setting(app: &AppHandle, core: &AppState) {
    let store = std::sync::Arc::clone(core.live.store());
    apply(app, store.live().launch_at_login);
    let mut events = core.bus.subscribe();
    let app = app.clone();
    tauri::async_runtime::spawn(async move {
        loop {
            match events.recv().await {
                Ok(Event::Settings(SettingsChanged { changed, .. }))
                    if changed.iter().any(|c| c == "launch_at_login") =>
                {
                    apply(&app, store.live().launch_at_login)
                }
                Ok(_) => {}
                // Events were missed: one of them may have been the change.
                Err(RecvError::Lagged(_)) => apply(&app, store.live().launch_at_login),
                Err(RecvError::Closed) => return,
            }
        }
    });
}

/// The tray's checkbox: flips the login item, and saves and announces the setting the way
/// Preferences does.
pub fn toggle(app: &AppHandle) {
    let on = !enabled(app);
    apply(app, on);
    let live = app.state::<super::backend::Backend>().core.live.clone();
    tauri::async_runtime::spawn(async move {
        let store = live.store();
        let (mut file, mut settings) = (store.file(), store.live());
        file.launch_at_login = on;
        settings.launch_at_login = on;
        if let Err(e) = live.apply(file, settings).await {
            tracing::warn!("launch at login is {on} now, but the setting could not be saved: {e}");
        }
    });
}

fn apply(app: &AppHandle, on: bool) {
    if enabled(app) != on {
        let manager = app.autolaunch();
        let result = if on {
            manager.enable()
        } else {
            manager.disable()
        };
        match result {
            Ok(()) => tracing::info!(on, "launch at login changed"),
            Err(e) => tracing::warn!(on, "cannot change launch at login: {e}"),
        }
    }
    super::tray::show_launch_at_login(app, enabled(app));
}
