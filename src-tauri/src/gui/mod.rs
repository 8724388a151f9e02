//! The window process: the app's windows, each a page of the web UI the server serves, in
//! WebKit through Tauri. The menu bar (`headroom_app::menu_bar`, another process) starts it as
//! `headroom --window` with the server's address in its environment and sends it what to show
//! on its standard input; it exits when its last window closes, or when the menu bar goes.

use std::io::BufRead as _;
use std::process::ExitCode;

use headroom_app::menu_bar::windows::{KEY_VARIABLE, URL_VARIABLE};
use headroom_app::panel;
use headroom_app::window_request::{Page, WindowRequest};
use tauri::{Manager, WebviewUrl, WebviewWindowBuilder};

/// Where the pages come from.
struct Server {
    /// `http://127.0.0.1:<port>/`
    url: String,
    key: Option<String>,
}

pub fn run() -> ExitCode {
    let Ok(url) = std::env::var(URL_VARIABLE) else {
        eprintln!("headroom: --window is the window process, which the menu bar starts");
        return ExitCode::from(2);
    };
    let key = std::env::var(KEY_VARIABLE).ok().filter(|k| !k.is_empty());
    // WebKit's helper processes inherit the environment; the key stays in this one. (No other
    // thread runs yet.)
    std::env::remove_var(KEY_VARIABLE);
    let built = tauri::Builder::default()
        .setup(move |app| {
            // Like the menu bar: no Dock icon, no app menu.
            #[cfg(target_os = "macos")]
            app.set_activation_policy(tauri::ActivationPolicy::Accessory);
            app.manage(Server { url, key });
            follow_requests(app.handle().clone());
            Ok(())
        })
        .build(tauri::generate_context!());
    match built {
        // With no window prevented from closing, the process ends with its last window.
        Ok(app) => {
            app.run(|_, _| {});
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("cannot start the window process: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Reads the menu bar's requests, one a line, until its end of the pipe closes (Quit, or the
/// menu bar died): then nothing is left to show, and the process ends.
fn follow_requests(app: tauri::AppHandle) {
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            let Some(request) = WindowRequest::parse(&line) else {
                tracing::warn!(?line, "the window process got an unknown request");
                continue;
            };
            let handle = app.clone();
            let _ = app.run_on_main_thread(move || match request {
                WindowRequest::Show(page) => show(&handle, page),
                WindowRequest::TogglePanel(anchor) => toggle_panel(&handle, anchor),
            });
        }
        app.exit(0);
    });
}

/// Shows a window, creating it if it is not open. Failures are logged: they come from a menu
/// click, with nobody to return them to.
fn show(app: &tauri::AppHandle, page: Page) {
    if let Err(e) = open(app, page, None) {
        tracing::error!(?page, "cannot open the window: {e}");
    }
}

/// Opens the menu-bar panel under the tray icon (`anchor`, where the click gives it), or closes
/// it if it is open. (macOS: a click on the icon.)
fn toggle_panel(app: &tauri::AppHandle, anchor: Option<panel::Area>) {
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
    let server = app.state::<Server>();
    let url = format!("{}{}", server.url, page.path());
    let url = url
        .parse()
        .map_err(|e| tauri::Error::Anyhow(anyhow::anyhow!("bad server address {url}: {e}")))?;
    let (title, width, height) = match page {
        Page::Main => ("Headroom", 600.0, 720.0),
        Page::Preferences => ("Headroom Preferences", 560.0, 720.0),
        Page::Panel => ("Headroom panel", panel::WIDTH, panel::HEIGHT),
    };
    let mut window = WebviewWindowBuilder::new(app, page.label(), WebviewUrl::External(url));
    if let Some(key) = &server.key {
        window = window.initialization_script(hand_over_key(&server.url, key));
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
