//! The tray (menu-bar) icon and its menu: System and Pool lines, a line and a Stop item per
//! loaded model, Unload all, Open, Preferences, Launch at login, Quit.
//!
//! What it says is `TrayView`, computed off the main thread by one task (`feed`): it re-reads
//! the pool when the pool publishes an event (and every few seconds for the machine's figures)
//! and sends the view to the main loop, which owns the icon (`Tray::show`). Each platform
//! draws it its own way: an NSStatusItem on macOS (`appkit`), a StatusNotifierItem on D-Bus
//! elsewhere (`sni`). Both keep the items while the loaded models stay the same, so an open
//! menu is not snatched away by a redraw every second.

#[cfg(target_os = "macos")]
mod appkit;
#[cfg(not(target_os = "macos"))]
mod sni;

#[cfg(target_os = "macos")]
pub use appkit::Tray;
#[cfg(not(target_os = "macos"))]
pub use sni::Tray;

use std::time::Duration;

use anyhow::Context as _;
use headroom_core::api::AppState;
use tokio::sync::broadcast::error::RecvError;

use super::tray_view::{Look, TrayView};
use super::{Action, Proxy};

/// Menu item ids; a model's Stop item is `stop:<id>`.
pub const STOP: &str = "stop:";
pub const UNLOAD_ALL: &str = "unload_all";
pub const OPEN: &str = "open";
pub const PREFERENCES: &str = "preferences";
pub const LAUNCH_AT_LOGIN: &str = "launch_at_login";
pub const QUIT: &str = "quit";
/// The machine's figures move without pool events.
const REFRESH: Duration = Duration::from_secs(5);

/// Keeps the tray in step with the pool until the pool shuts down.
pub async fn feed(proxy: Proxy, core: AppState) {
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
        let view = TrayView::new(
            pool,
            core.probe.system(),
            headroom_core::vocab::now_unix_ms(),
        );
        if !proxy.send(Action::Redraw(view)) {
            return;
        }
    }
}

/// An icon as RGBA pixels, 8 bits a channel: (pixels, width, height).
fn icon_rgba(look: Look) -> anyhow::Result<(Vec<u8>, u32, u32)> {
    let png = match look {
        Look::Normal => &include_bytes!("../../../../icons/tray-normal.png")[..],
        Look::Constrained => include_bytes!("../../../../icons/tray-constrained.png"),
        Look::Critical => include_bytes!("../../../../icons/tray-critical.png"),
    };
    let mut decoder = png::Decoder::new(std::io::Cursor::new(png));
    // Whatever the file's colour type, RGBA with 8 bits a channel is what the trays take.
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::ALPHA);
    let mut reader = decoder.read_info().context("tray icon")?;
    let size = reader
        .output_buffer_size()
        .context("tray icon: too large")?;
    let mut rgba = vec![0; size];
    let frame = reader.next_frame(&mut rgba).context("tray icon")?;
    rgba.truncate(frame.buffer_size());
    Ok((rgba, frame.width, frame.height))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_icon_decodes_to_rgba() {
        for look in [Look::Normal, Look::Constrained, Look::Critical] {
            let (rgba, width, height) = icon_rgba(look).expect("icon");
            assert_eq!((width, height), (32, 32), "{look:?}");
            assert_eq!(rgba.len(), 32 * 32 * 4, "{look:?}");
        }
    }
}
