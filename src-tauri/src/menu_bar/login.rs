//! Launch at login: one switch, kept in two places that must agree — the operating system's
//! login item (the `auto-launch` crate: a LaunchAgent on macOS, an XDG autostart entry on
//! Linux) and the `launch_at_login` setting. The tray's checkbox and Preferences both flip it.

use std::sync::Arc;

use auto_launch::{AutoLaunch, AutoLaunchBuilder};
use headroom_core::api::AppState;
use headroom_core::config::SettingsChanged;
use headroom_core::events::Event;
use tokio::sync::broadcast::error::RecvError;

use super::{Action, Proxy};

/// The login item, which starts the app binary (not this process's `headroom-server`, which
/// the app hands over to), so a login starts Headroom as a click on it does.
#[derive(Clone)]
pub struct LoginItem(Option<Arc<AutoLaunch>>);

impl LoginItem {
    pub fn new() -> Self {
        let item = crate::app_binary().and_then(|app| {
            let mut builder = AutoLaunchBuilder::new();
            builder.set_app_name("Headroom");
            builder.set_app_path(&app.display().to_string());
            #[cfg(target_os = "macos")]
            builder.set_macos_launch_mode(auto_launch::MacOSLaunchMode::LaunchAgent);
            builder
                .build()
                .map_err(|e| tracing::warn!("no login item: {e}"))
                .ok()
        });
        Self(item.map(Arc::new))
    }

    /// Whether the login item is in place.
    pub fn enabled(&self) -> bool {
        self.0
            .as_ref()
            .is_some_and(|item| item.is_enabled().unwrap_or(false))
    }

    fn set(&self, on: bool) {
        let Some(item) = &self.0 else { return };
        if self.enabled() == on {
            return;
        }
        let result = if on { item.enable() } else { item.disable() };
        match result {
            Ok(()) => tracing::info!(on, "launch at login changed"),
            Err(e) => tracing::warn!(on, "cannot change launch at login: {e}"),
        }
    }

    /// Makes the login item match the setting now, and again whenever Preferences changes it;
    /// the menu's checkbox follows.
    pub fn follow_setting(&self, core: &AppState, proxy: Proxy) {
        let store = Arc::clone(core.live.store());
        let item = self.clone();
        let apply = move |on: bool| {
            item.set(on);
            proxy.send(Action::LaunchAtLogin(item.enabled()));
        };
        apply(store.live().launch_at_login);
        let mut events = core.bus.subscribe();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(Event::Settings(SettingsChanged { changed, .. }))
                        if changed.iter().any(|c| c == "launch_at_login") =>
                    {
                        apply(store.live().launch_at_login)
                    }
                    Ok(_) => {}
                    // Events were missed: one of them may have been the change.
                    Err(RecvError::Lagged(_)) => apply(store.live().launch_at_login),
                    Err(RecvError::Closed) => return,
                }
            }
        });
    }

    /// The tray's checkbox: flips the login item, and saves and announces the setting the way
    /// Preferences does (which ticks the checkbox through `follow_setting`).
    pub fn toggle(&self, core: &AppState) {
        let on = !self.enabled();
        self.set(on);
        let live = core.live.clone();
        tokio::spawn(async move {
            let store = live.store();
            let (mut file, mut settings) = (store.file(), store.live());
            file.launch_at_login = on;
            settings.launch_at_login = on;
            if let Err(e) = live.apply(file, settings).await {
                tracing::warn!(
                    "launch at login is {on} now, but the setting could not be saved: {e}"
                );
            }
        });
    }
}
