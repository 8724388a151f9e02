//! The desktop shell: a tray (menu-bar) icon and windows over the same server the headless mode
//! runs. The shell holds no state of its own: the windows are the web UI the core serves, and
//! the tray reads and drives the pool through the same handles the API uses.

mod backend;
mod login;
mod panel;
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
    /// The menu-bar panel (see `panel`).
    Panel,
}

impl Page {
    fn label(self) -> &'static str {
        match self {
            Self::Main => "main",
            Self::Preferences => "preferences",
            Self::Panel => "panel",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Self::Main => "",
            Self::Preferences => "ui/preferences.html",
            Self::Panel => "?panel",
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
    if let Err(e) = open(app, page, None) {
        tracing::error!(?page, "cannot open the window: {e}");
    }
}

/// Opens the menu-bar panel under the tray icon (`anchor`, where the click gives it), or closes
/// it if it is open. (macOS: a click on the icon.)
#[cfg_attr(not(target_os = "macos"), allow(dead_code))]
pub(crate) fn toggle_panel(app: &tauri::AppHandle, anchor: Option<panel::Area>) {
    if let Some(window) = app.get_webview_window(Page::Panel.label()) {
        let _ = window.close();
        return;
    }
    if let Err(e) = open(app, Page::Panel, anchor) {
        tracing::error!("cannot open the panel: {e}");
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

fn open(app: &tauri::AppHandle, page: Page, anchor: Option<panel::Area>) -> tauri::Result<()> {
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
        Page::Panel => ("Headroom panel", panel::WIDTH, panel::HEIGHT),
    };
    let mut window = WebviewWindowBuilder::new(app, page.label(), WebviewUrl::External(url));
    if let Some(key) = backend.core.live.store().api_key() {
        window = window.initialization_script(hand_over_key(&backend.url, &key));
    }
    window = window
        .title(title)
        .inner_size(width, height)
        // The page's title carries live figures ("Headroom — System 41%"); the window shows it,
        // so a glance at the window list (or a test with xdotool) sees the page is up.
        .on_document_title_changed(|window, title| {
            let _ = window.set_title(&title);
        });
    if let Page::Panel = page {
        window = panel_window(app, window, anchor)?;
    }
    let window = window.build()?;
    if let Page::Panel = page {
        close_when_it_loses_focus(&window);
    }
    Ok(())
}

/// The panel: no frame, above other windows, not in the task bar, where `panel::origin` puts
/// it; its "Open Headroom…" link opens the main window.
fn panel_window<'a>(
    app: &tauri::AppHandle,
    window: WebviewWindowBuilder<'a, tauri::Wry, tauri::AppHandle>,
    anchor: Option<panel::Area>,
) -> tauri::Result<WebviewWindowBuilder<'a, tauri::Wry, tauri::AppHandle>> {
    // The display the icon was clicked on (each Mac display has its own menu bar), else the
    // primary one.
    let clicked = anchor.and_then(|a| app.monitor_from_point(a.x, a.y).ok().flatten());
    let monitor = match clicked {
        Some(monitor) => Some(monitor),
        None => app.primary_monitor()?,
    };
    let (scale, work) = monitor.map_or((1.0, None), |m| {
        let work = m.work_area();
        let area = panel::Area {
            x: f64::from(work.position.x),
            y: f64::from(work.position.y),
            width: f64::from(work.size.width),
            height: f64::from(work.size.height),
        };
        (m.scale_factor(), Some(area))
    });
    let size = (panel::WIDTH * scale, panel::HEIGHT * scale);
    let mut window = window
        .decorations(false)
        .resizable(false)
        .always_on_top(true)
        .skip_taskbar(true)
        .focused(true);
    if let Some(work) = work {
        let (x, y) = panel::origin(anchor, size, work);
        window = window.position(x / scale, y / scale);
        tracing::info!(x, y, ?anchor, "the panel opens");
    }
    let app = app.clone();
    Ok(window.on_new_window(move |_url, _features| {
        tracing::info!("the panel opens the full window");
        let app = app.clone();
        tauri::async_runtime::spawn(async move { show(&app, Page::Main) });
        tauri::webview::NewWindowResponse::Deny
    }))
}

/// A panel goes when the user turns to something else, as a menu does: closing it destroys its
/// webview. Only after it had the focus once, so a window manager that maps it unfocused does
/// not close it at once.
fn close_when_it_loses_focus(window: &tauri::WebviewWindow) {
    let focused = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let panel = window.clone();
    window.on_window_event(move |event| {
        use std::sync::atomic::Ordering;
        if let tauri::WindowEvent::Focused(now) = event {
            if *now {
                focused.store(true, Ordering::Relaxed);
            } else if focused.load(Ordering::Relaxed) {
                let _ = panel.close();
            }
        }
    });
}
