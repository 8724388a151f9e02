//! The tray on Linux: a StatusNotifierItem with a D-Bus menu (ksni), which KDE, GNOME (with
//! its AppIndicator extension), XFCE, Cinnamon and MATE show. It needs no toolkit, so the menu
//! bar links no GTK. A left click (Activate) opens the panel where it was clicked; the menu is
//! the same as on macOS.
//!
//! Trays that speak only the older XEmbed protocol (trayer, stalonetray) do not show it; the
//! app still opens its window at start and on a second launch (docs/platforms.md).

use ksni::menu::{CheckmarkItem, StandardItem};
use ksni::{MenuItem, TrayMethods as _};

use super::super::tray_view::{Look, TrayView};
use super::super::{Action, Proxy};
use super::{LAUNCH_AT_LOGIN, OPEN, PREFERENCES, QUIT, STOP, UNLOAD_ALL};
use crate::panel::Area;
use crate::window_request::WindowRequest;

/// The running item, as the main loop holds it.
pub struct Tray {
    handle: ksni::Handle<Item>,
    runtime: tokio::runtime::Handle,
    shown: Option<TrayView>,
}

/// What the D-Bus service reads its properties and menu from.
struct Item {
    proxy: Proxy,
    view: Option<TrayView>,
    launch_at_login: bool,
    /// ARGB32 pixmaps, one per look.
    icons: Vec<(Look, ksni::Icon)>,
}

impl Tray {
    /// Registers the item with the session's StatusNotifierWatcher, or with the next one to
    /// appear (a tray that starts after the app, as at login).
    pub fn build(proxy: Proxy, runtime: &tokio::runtime::Handle) -> anyhow::Result<Self> {
        let mut icons = Vec::new();
        for look in [Look::Normal, Look::Constrained, Look::Critical] {
            icons.push((look, argb(look)?));
        }
        let item = Item {
            proxy,
            view: None,
            launch_at_login: false,
            icons,
        };
        let handle = runtime
            .block_on(item.assume_sni_available(true).spawn())
            .map_err(|e| anyhow::anyhow!("cannot show the tray icon: {e}"))?;
        Ok(Self {
            handle,
            runtime: runtime.clone(),
            shown: None,
        })
    }

    /// Shows `view`: the item's properties and menu change, and hosts are told.
    pub fn show(&mut self, view: TrayView, launch_at_login: bool) -> anyhow::Result<()> {
        if self.shown.as_ref() == Some(&view) {
            return Ok(());
        }
        let rebuilt = !self.shown.as_ref().is_some_and(|s| s.same_items(&view));
        if rebuilt {
            tracing::info!(
                models = ?view.models.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(),
                "tray menu rebuilt"
            );
        }
        self.shown = Some(view.clone());
        self.runtime.block_on(self.handle.update(move |item| {
            item.view = Some(view);
            item.launch_at_login = launch_at_login;
        }));
        Ok(())
    }

    /// Ticks the Launch at login item to match what is in force.
    pub fn show_launch_at_login(&self, on: bool) {
        self.runtime
            .block_on(self.handle.update(move |item| item.launch_at_login = on));
    }
}

impl ksni::Tray for Item {
    fn id(&self) -> String {
        "headroom".into()
    }

    fn title(&self) -> String {
        "Headroom".into()
    }

    fn icon_pixmap(&self) -> Vec<ksni::Icon> {
        let look = self.view.as_ref().map_or(Look::Normal, |v| v.look);
        self.icons
            .iter()
            .filter(|(l, _)| *l == look)
            .map(|(_, icon)| icon.clone())
            .collect()
    }

    fn tool_tip(&self) -> ksni::ToolTip {
        ksni::ToolTip {
            title: "Headroom".into(),
            description: self
                .view
                .as_ref()
                .map(|v| v.system.clone())
                .unwrap_or_default(),
            ..Default::default()
        }
    }

    fn activate(&mut self, x: i32, y: i32) {
        let click = Area {
            x: f64::from(x),
            y: f64::from(y),
            width: 0.0,
            height: 0.0,
        };
        self.proxy
            .send(Action::Window(WindowRequest::TogglePanel(Some(click))));
    }

    fn menu(&self) -> Vec<MenuItem<Self>> {
        let Some(view) = &self.view else {
            return Vec::new();
        };
        let line = |label: &str| -> MenuItem<Self> {
            StandardItem {
                label: label.into(),
                enabled: false,
                ..Default::default()
            }
            .into()
        };
        let action = |id: String, label: String, enabled: bool| -> MenuItem<Self> {
            StandardItem {
                label,
                enabled,
                activate: Box::new(move |item: &mut Self| {
                    item.proxy.send(Action::Menu(id.clone()));
                }),
                ..Default::default()
            }
            .into()
        };
        let mut items = vec![line(&view.system), line(&view.pool), MenuItem::Separator];
        for model in &view.models {
            items.push(line(&model.text));
            items.push(action(
                format!("{STOP}{}", model.id),
                format!("Stop {}", model.id),
                model.stoppable,
            ));
        }
        if !view.models.is_empty() {
            items.push(MenuItem::Separator);
        }
        items.extend([
            action(
                UNLOAD_ALL.into(),
                "Unload all".into(),
                !view.models.is_empty(),
            ),
            action(OPEN.into(), "Open Headroom…".into(), true),
            action(PREFERENCES.into(), "Preferences…".into(), true),
            CheckmarkItem {
                label: "Launch at login".into(),
                checked: self.launch_at_login,
                activate: Box::new(|item: &mut Self| {
                    item.proxy.send(Action::Menu(LAUNCH_AT_LOGIN.into()));
                }),
                ..Default::default()
            }
            .into(),
            MenuItem::Separator,
            action(QUIT.into(), "Quit".into(), true),
        ]);
        items
    }
}

/// The icon as the StatusNotifierItem spec wants it: ARGB32, in network byte order.
fn argb(look: Look) -> anyhow::Result<ksni::Icon> {
    let (rgba, width, height) = super::icon_rgba(look)?;
    let data = rgba
        .chunks_exact(4)
        .flat_map(|p| [p[3], p[0], p[1], p[2]])
        .collect();
    Ok(ksni::Icon {
        width: i32::try_from(width)?,
        height: i32::try_from(height)?,
        data,
    })
}
