//! The tray (menu-bar) icon and its menu: System and Pool lines, a line and a Stop item per
//! loaded model, Unload all, Open, Preferences, Launch at login, Quit.
//!
//! One task feeds it: it re-reads the pool when the pool publishes an event (and every few
//! seconds for the machine's figures) and redraws on the main thread. While the loaded models
//! stay the same the items keep their identity and only their text changes, so an open menu
//! is not snatched away by a redraw every second.

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use headroom_core::api::AppState;
use tauri::image::Image;
use tauri::menu::{CheckMenuItem, IsMenuItem, Menu, MenuItem, PredefinedMenuItem};
use tauri::tray::{TrayIcon, TrayIconBuilder};
use tauri::{AppHandle, Manager, Wry};
use tokio::sync::broadcast::error::RecvError;

use super::tray_view::{Look, TrayView};
use super::Page;

const TRAY: &str = "headroom";
/// Menu item ids; a model's Stop item is `stop:<id>`.
const STOP: &str = "stop:";
const UNLOAD_ALL: &str = "unload_all";
const OPEN: &str = "open";
const PREFERENCES: &str = "preferences";
pub(super) const LAUNCH_AT_LOGIN: &str = "launch_at_login";
const QUIT: &str = "quit";
/// The machine's figures move without pool events.
const REFRESH: Duration = Duration::from_secs(5);

/// The menu's items that change text in place.
struct Items {
    view: TrayView,
    system: MenuItem<Wry>,
    pool: MenuItem<Wry>,
    models: Vec<MenuItem<Wry>>,
    launch_at_login: CheckMenuItem<Wry>,
}

/// The current menu, kept so a redraw can update it in place.
#[derive(Default)]
struct Current(Mutex<Option<Items>>);

pub fn build(app: &AppHandle, core: AppState) -> tauri::Result<()> {
    app.manage(Current::default());
    let pool = core.pool.clone();
    let tray = TrayIconBuilder::with_id(TRAY)
        .tooltip("Headroom")
        .icon(icon(Look::Normal)?)
        .on_menu_event(move |app, event| on_menu(app, &pool, event.id.as_ref()));
    // On macOS a left click opens the panel under the icon and a right click the menu. Linux
    // indicators report no clicks and show the menu on either; its "Open Headroom…" opens the
    // panel there.
    #[cfg(target_os = "macos")]
    let tray = tray
        .show_menu_on_left_click(false)
        .on_tray_icon_event(|tray, event| {
            if let tauri::tray::TrayIconEvent::Click {
                button: tauri::tray::MouseButton::Left,
                button_state: tauri::tray::MouseButtonState::Up,
                rect,
                ..
            } = event
            {
                let position = rect.position.to_physical::<f64>(1.0);
                let size = rect.size.to_physical::<f64>(1.0);
                let anchor = super::panel::Area {
                    x: position.x,
                    y: position.y,
                    width: size.width,
                    height: size.height,
                };
                super::toggle_panel(tray.app_handle(), Some(anchor));
            }
        });
    #[cfg(not(target_os = "macos"))]
    let tray = tray.show_menu_on_left_click(true);
    tray.build(app)?;
    tauri::async_runtime::spawn(feed(app.clone(), core));
    Ok(())
}

fn on_menu(app: &AppHandle, pool: &headroom_core::pool::Pool, id: &str) {
    if let Some(model) = id.strip_prefix(STOP) {
        let (pool, model) = (pool.clone(), model.to_string());
        tauri::async_runtime::spawn(async move {
            match pool.unload(&model).await {
                Ok(report) => {
                    tracing::info!(%model, reclaimed = ?report.reclaimed, "stopped from the tray")
                }
                Err(e) => tracing::warn!(%model, "cannot stop from the tray: {e}"),
            }
        });
        return;
    }
    match id {
        UNLOAD_ALL => {
            let pool = pool.clone();
            tauri::async_runtime::spawn(async move {
                if let Err(e) = pool.flush().await {
                    tracing::warn!("cannot unload all from the tray: {e}");
                }
            });
        }
        // The full window on macOS, where a click on the icon opens the panel; the panel
        // elsewhere, where the menu is the only way to it.
        OPEN if cfg!(target_os = "macos") => super::show(app, Page::Main),
        OPEN => super::show(app, Page::Panel),
        PREFERENCES => super::show(app, Page::Preferences),
        LAUNCH_AT_LOGIN => super::login::toggle(app),
        QUIT => app.exit(0),
        _ => {}
    }
}

/// Keeps the tray in step with the pool until the pool shuts down.
async fn feed(app: AppHandle, core: AppState) {
    let mut events = core.bus.subscribe();
    let mut refresh = tokio::time::interval(REFRESH);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut status = None;
    loop {
        let reread = tokio::select! {
            event = events.recv() => match event {
                Err(RecvError::Closed) => return,
                // Several events usually come together (unloading, unloaded): one re-read.
                _ => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    while events.try_recv().is_ok() {}
                    true
                }
            },
            _ = refresh.tick() => true,
            // The idle countdowns move every second; the pool does not need asking for that.
            _ = tick.tick() => status.is_none(),
        };
        if reread {
            match core.pool.status().await {
                Ok(s) => status = Some(s),
                Err(_) => return,
            }
        }
        let Some(pool) = &status else { continue };
        let view = TrayView::new(pool, core.probe.system(), now_ms());
        let handle = app.clone();
        let _ = app.run_on_main_thread(move || {
            if let Err(e) = show(&handle, view) {
                tracing::warn!("cannot update the tray: {e}");
            }
        });
    }
}

/// Shows `view`: new text on the same items when the models are the same, else a new menu.
fn show(app: &AppHandle, view: TrayView) -> tauri::Result<()> {
    let Some(tray) = app.tray_by_id(TRAY) else {
        return Ok(());
    };
    let current = app.state::<Current>();
    let mut current = current.0.lock().unwrap_or_else(|e| e.into_inner());
    let shown = current.as_ref().map(|items| &items.view);
    if shown == Some(&view) {
        return Ok(());
    }
    if shown.is_none_or(|shown| shown.look != view.look) {
        tray.set_icon(Some(icon(view.look)?))?;
    }
    set_title(&tray, &view)?;
    match current.as_mut() {
        Some(items) if items.view.same_items(&view) => {
            items.system.set_text(&view.system)?;
            items.pool.set_text(&view.pool)?;
            for (item, line) in items.models.iter().zip(&view.models) {
                item.set_text(&line.text)?;
            }
            items.view = view;
        }
        _ => *current = Some(rebuild(app, &tray, view)?),
    }
    Ok(())
}

fn rebuild(app: &AppHandle, tray: &TrayIcon, view: TrayView) -> tauri::Result<Items> {
    let system = MenuItem::new(app, &view.system, false, None::<&str>)?;
    let pool = MenuItem::new(app, &view.pool, false, None::<&str>)?;
    let mut lines = Vec::new();
    let mut stops = Vec::new();
    for line in &view.models {
        lines.push(MenuItem::new(app, &line.text, false, None::<&str>)?);
        stops.push(MenuItem::with_id(
            app,
            format!("{STOP}{}", line.id),
            format!("Stop {}", line.id),
            line.stoppable,
            None::<&str>,
        )?);
    }
    let unload_all = MenuItem::with_id(
        app,
        UNLOAD_ALL,
        "Unload all",
        !view.models.is_empty(),
        None::<&str>,
    )?;
    let open = MenuItem::with_id(app, OPEN, "Open Headroom…", true, None::<&str>)?;
    let preferences = MenuItem::with_id(app, PREFERENCES, "Preferences…", true, None::<&str>)?;
    let launch_at_login = CheckMenuItem::with_id(
        app,
        LAUNCH_AT_LOGIN,
        "Launch at login",
        true,
        super::login::enabled(app),
        None::<&str>,
    )?;
    let quit = MenuItem::with_id(app, QUIT, "Quit", true, None::<&str>)?;
    let separator = || PredefinedMenuItem::separator(app);
    let (s1, s2, s3) = (separator()?, separator()?, separator()?);
    let mut items: Vec<&dyn IsMenuItem<Wry>> = vec![&system, &pool, &s1];
    for (line, stop) in lines.iter().zip(&stops) {
        items.push(line);
        items.push(stop);
    }
    if !view.models.is_empty() {
        items.push(&s2);
    }
    items.extend([
        &unload_all as &dyn IsMenuItem<Wry>,
        &open,
        &preferences,
        &launch_at_login,
        &s3,
        &quit,
    ]);
    let menu = Menu::with_items(app, &items)?;
    tray.set_menu(Some(menu))?;
    tracing::info!(
        models = ?view.models.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(),
        "tray menu rebuilt"
    );
    Ok(Items {
        view,
        system,
        pool,
        models: lines,
        launch_at_login,
    })
}

/// Ticks the Launch at login item to match what is in force.
pub(super) fn show_launch_at_login(app: &AppHandle, on: bool) {
    let item = {
        let current = app.state::<Current>();
        let current = current.0.lock().unwrap_or_else(|e| e.into_inner());
        current.as_ref().map(|items| items.launch_at_login.clone())
    };
    // Off the main thread `set_checked` waits for the main thread, which may itself be waiting
    // for the lock to redraw: so never while holding it.
    if let Some(item) = item {
        let _ = item.set_checked(on);
    }
}

/// The menu-bar title: the system's used percent, as a glance (macOS shows titles; Linux trays
/// do not).
fn set_title(tray: &TrayIcon, view: &TrayView) -> tauri::Result<()> {
    if cfg!(target_os = "macos") {
        tray.set_title(view.system_percent.map(|p| format!("{p}%")))?;
    }
    Ok(())
}

fn icon(look: Look) -> tauri::Result<Image<'static>> {
    Image::from_bytes(match look {
        Look::Normal => include_bytes!("../../../icons/tray-normal.png"),
        Look::Constrained => include_bytes!("../../../icons/tray-constrained.png"),
        Look::Critical => include_bytes!("../../../icons/tray-critical.png"),
    })
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
