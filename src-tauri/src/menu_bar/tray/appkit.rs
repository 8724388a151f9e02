//! The tray on macOS: an NSStatusItem with a native menu (tray-icon and muda, on the AppKit
//! loop `event_loop` runs). A left click opens the panel under the icon; a right click, the menu.

use anyhow::Context as _;
use tray_icon::menu::{CheckMenuItem, IsMenuItem, Menu, MenuItem, PredefinedMenuItem};
use tray_icon::{Icon, TrayIcon, TrayIconBuilder};

use super::super::tray_view::{Look, TrayView};
use super::super::{Action, Proxy};
use super::{LAUNCH_AT_LOGIN, OPEN, PREFERENCES, QUIT, STOP, UNLOAD_ALL};

/// The icon and the menu's items that change in place. Lives on the main thread, where AppKit
/// wants its menus touched.
pub struct Tray {
    icon: TrayIcon,
    items: Option<Items>,
}

struct Items {
    view: TrayView,
    system: MenuItem,
    pool: MenuItem,
    models: Vec<MenuItem>,
    launch_at_login: CheckMenuItem,
}

impl Tray {
    /// The icon with an empty menu until the first view comes.
    pub fn build(proxy: Proxy, _runtime: &tokio::runtime::Handle) -> anyhow::Result<Self> {
        let menu_proxy = proxy.clone();
        tray_icon::menu::MenuEvent::set_event_handler(Some(
            move |event: tray_icon::menu::MenuEvent| {
                menu_proxy.send(Action::Menu(event.id.0));
            },
        ));
        let builder = TrayIconBuilder::new()
            .with_tooltip("Headroom")
            .with_icon(icon(Look::Normal)?)
            .with_menu(Box::new(Menu::new()));
        tray_icon::TrayIconEvent::set_event_handler(Some(
            move |event: tray_icon::TrayIconEvent| {
                if let tray_icon::TrayIconEvent::Click {
                    button: tray_icon::MouseButton::Left,
                    button_state: tray_icon::MouseButtonState::Up,
                    rect,
                    ..
                } = event
                {
                    let anchor = crate::panel::Area {
                        x: rect.position.x,
                        y: rect.position.y,
                        width: f64::from(rect.size.width),
                        height: f64::from(rect.size.height),
                    };
                    let request = crate::window_request::WindowRequest::TogglePanel(Some(anchor));
                    proxy.send(Action::Window(request));
                }
            },
        ));
        let icon = builder
            .with_menu_on_left_click(false)
            .build()
            .context("cannot show the tray icon")?;
        Ok(Self { icon, items: None })
    }

    /// Shows `view`: new text on the same items when the models are the same, else a new menu.
    pub fn show(&mut self, view: TrayView, launch_at_login: bool) -> anyhow::Result<()> {
        let shown = self.items.as_ref().map(|items| &items.view);
        if shown == Some(&view) {
            return Ok(());
        }
        if shown.is_none_or(|shown| shown.look != view.look) {
            self.icon.set_icon(Some(icon(view.look)?))?;
        }
        // The menu-bar title: the system's used percent, as a glance.
        self.icon
            .set_title(view.system_percent.map(|p| format!("{p}%")));
        match self.items.as_mut() {
            Some(items) if items.view.same_items(&view) => {
                items.system.set_text(&view.system);
                items.pool.set_text(&view.pool);
                for (item, line) in items.models.iter().zip(&view.models) {
                    item.set_text(&line.text);
                }
                items.view = view;
            }
            _ => self.items = Some(self.rebuild(view, launch_at_login)?),
        }
        Ok(())
    }

    /// Ticks the Launch at login item to match what is in force.
    pub fn show_launch_at_login(&self, on: bool) {
        if let Some(items) = &self.items {
            items.launch_at_login.set_checked(on);
        }
    }

    fn rebuild(&self, view: TrayView, launch_at_login: bool) -> anyhow::Result<Items> {
        let system = MenuItem::new(&view.system, false, None);
        let pool = MenuItem::new(&view.pool, false, None);
        let mut lines = Vec::new();
        let mut stops = Vec::new();
        for line in &view.models {
            lines.push(MenuItem::new(&line.text, false, None));
            stops.push(MenuItem::with_id(
                format!("{STOP}{}", line.id),
                format!("Stop {}", line.id),
                line.stoppable,
                None,
            ));
        }
        let unload_all = MenuItem::with_id(UNLOAD_ALL, "Unload all", !view.models.is_empty(), None);
        let open = MenuItem::with_id(OPEN, "Open Headroom…", true, None);
        let preferences = MenuItem::with_id(PREFERENCES, "Preferences…", true, None);
        let login = CheckMenuItem::with_id(
            LAUNCH_AT_LOGIN,
            "Launch at login",
            true,
            launch_at_login,
            None,
        );
        let quit = MenuItem::with_id(QUIT, "Quit", true, None);
        let (s1, s2, s3) = (
            PredefinedMenuItem::separator(),
            PredefinedMenuItem::separator(),
            PredefinedMenuItem::separator(),
        );
        let mut items: Vec<&dyn IsMenuItem> = vec![&system, &pool, &s1];
        for (line, stop) in lines.iter().zip(&stops) {
            items.push(line);
            items.push(stop);
        }
        if !view.models.is_empty() {
            items.push(&s2);
        }
        items.extend([
            &unload_all as &dyn IsMenuItem,
            &open,
            &preferences,
            &login,
            &s3,
            &quit,
        ]);
        let menu = Menu::with_items(&items)?;
        self.icon.set_menu(Some(Box::new(menu)));
        tracing::info!(
            models = ?view.models.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(),
            "tray menu rebuilt"
        );
        Ok(Items {
            view,
            system,
            pool,
            models: lines,
            launch_at_login: login,
        })
    }
}

fn icon(look: Look) -> anyhow::Result<Icon> {
    let (rgba, width, height) = super::icon_rgba(look)?;
    Ok(Icon::from_rgba(rgba, width, height)?)
}
