//! The desktop shell: a tray (menu-bar) icon and windows over the same server the headless mode
//! runs. The shell holds no state of its own: the windows are the web UI the core serves, and
//! the tray reads and drives the pool through the same handles the API uses.

mod backend;
mod login;
mod tray;
mod tray_view;

use std::sync::Arc;

use anyhow::Context as _;
use headroom_core::config::{AppDirs, SettingsStore};
use tauri::{Manager, RunEvent, WebviewUrl, WebviewWindowBuilder};

use backend::Backend;

/// The app's windows: each shows one page of the web UI.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Page {
    Main,
    Preferences,
}

impl Page {
    fn label(self) -> &'static str {
        match self {
            Self::Main => "main",
            Self::Preferences => "preferences",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Self::Main => "",
            Self::Preferences => "ui/preferences.html",
        }
    }
}

pub fn run(store: Arc<SettingsStore>, dirs: AppDirs) -> anyhow::Result<()> {
    tauri::Builder::default()
        // First, so a second launch hands over to this one before it starts a server of its own.
        .plugin(tauri_plugin_single_instance::init(|app, _args, _cwd| {
            show(app, Page::Main);
        }))
        .plugin(tauri_plugin_autostart::Builder::new().build())
        .setup(move |app| {
            // A menu-bar app: no Dock icon, no app menu.
            #[cfg(target_os = "macos")]
            app.set_activation_policy(tauri::ActivationPolicy::Accessory);
            let backend = Backend::start(Arc::clone(&store), dirs)?;
            let core = backend.core.clone();
            app.manage(backend);
            tray::build(app.handle(), core.clone())?;
            login::follow_setting(app.handle(), &core);
            show(app.handle(), Page::Main);
            backend::quit_when_server_stops(app.handle());
            Ok(())
        })
        .build(tauri::generate_context!())
        .context("cannot start the desktop app")?
        .run(|app, event| {
            if let RunEvent::ExitRequested { api, code, .. } = event {
                // Closing the windows leaves Headroom in the menu bar; only Quit (which asks
                // with an exit code) ends it.
                if code.is_none() {
                    api.prevent_exit();
                } else {
                    backend::stop(app);
                }
            }
        });
    Ok(())
}

/// Shows a window, creating it the first time (or after it was closed). Failures are logged:
/// they come from a menu click, with nobody to return them to.
pub(crate) fn show(app: &tauri::AppHandle, page: Page) {
    if let Err(e) = open(app, page) {
        tracing::error!(?page, "cannot open the window: {e}");
    }
}

/// A script that gives the page the API key before its own scripts run, so the app's windows
/// never ask for it. It checks the origin: only Headroom's own page is given the key. (Not
/// through `localStorage`: a key stored there by this script did not reach the page in
/// WebKitGTK, and the app test failed.)
fn hand_over_key(url: &str, key: &str) -> String {
    let origin = serde_json::Value::from(url.trim_end_matches('/')).to_string();
    let key = serde_json::Value::from(key).to_string();
    format!("if (location.origin === {origin}) {{ window.__HEADROOM_API_KEY__ = {key}; }}")
}

fn open(app: &tauri::AppHandle, page: Page) -> tauri::Result<()> {
    if let Some(window) = app.get_webview_window(page.label()) {
        window.show()?;
        return window.set_focus();
    }
    // A second launch can ask for a window before this one's server is up: it shows once it is.
    let Some(backend) = app.try_state::<Backend>() else {
        return Ok(());
    };
    let url = format!("{}{}", backend.url, page.path());
    let url = url
        .parse()
        .map_err(|e| tauri::Error::Anyhow(anyhow::anyhow!("bad server address {url}: {e}")))?;
    let (title, width, height) = match page {
        Page::Main => ("Headroom", 600.0, 720.0),
        Page::Preferences => ("Headroom Preferences", 560.0, 720.0),
    };
    let mut window = WebviewWindowBuilder::new(app, page.label(), WebviewUrl::External(url));
    if let Some(key) = backend.core.live.store().api_key() {
        window = window.initialization_script(hand_over_key(&backend.url, &key));
    }
    window
        .title(title)
        .inner_size(width, height)
        // The page's title carries live figures ("Headroom — System 41%"); the window shows it,
        // so a glance at the window list (or a test with xdotool) sees the page is up.
        .on_document_title_changed(|window, title| {
            let _ = window.set_title(&title);
        })
        .build()?;
    Ok(())
}
