//! The menu-bar panel: a compact window with the two gauges and the loaded models with their
//! memory and Stop, anchored under the tray icon, gone when it loses focus.
//!
//! On macOS a left click on the icon opens it under the icon (the click gives the icon's
//! rectangle); a right click keeps the native menu. Linux indicators report no clicks, so the
//! menu's "Open Headroom…" opens it in the tray's corner of the screen: the top right of the
//! work area (the screen less the panels that reserve space, the tray's among them).
//!
//! It is the main page in its compact form (`?panel`): the same gauges and rows, the rest
//! hidden by the page. Closing it destroys its webview; opening it again makes a new one.

/// The panel's size in logical pixels.
pub const WIDTH: f64 = 360.0;
pub const HEIGHT: f64 = 420.0;

/// A rectangle on screen, in physical pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Area {
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
}

impl Area {
    fn right(&self) -> f64 {
        self.x + self.width
    }

    fn bottom(&self) -> f64 {
        self.y + self.height
    }
}

/// Where the panel's top-left corner goes, in physical pixels: centred under the tray icon
/// (`anchor`) when it is in the top half of the work area, above it when in the bottom half (a
/// panel at the bottom of the screen), kept inside the work area; without an anchor, the work
/// area's top right corner. `size` is the panel's size in physical pixels.
pub fn origin(anchor: Option<Area>, size: (f64, f64), work: Area) -> (f64, f64) {
    let (width, height) = size;
    let Some(icon) = anchor else {
        return (work.right() - width, work.y);
    };
    let x = icon.x + icon.width / 2.0 - width / 2.0;
    let y = if icon.y + icon.height / 2.0 < work.y + work.height / 2.0 {
        icon.bottom()
    } else {
        icon.y - height
    };
    (
        x.clamp(work.x, (work.right() - width).max(work.x)),
        y.clamp(work.y, (work.bottom() - height).max(work.y)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 1512 × 982 point MacBook screen at 2× (3024 × 1964 pixels), the menu bar 74 pixels
    /// high (37 points): the work area starts under it.
    const MAC: Area = Area {
        x: 0.0,
        y: 74.0,
        width: 3024.0,
        height: 1890.0,
    };
    const PANEL: (f64, f64) = (WIDTH * 2.0, HEIGHT * 2.0);

    #[test]
    fn under_the_icon_centred() {
        // An icon 44 pixels wide at x = 2400 in the menu bar (y 0–74): the panel's middle is the
        // icon's (2422), its top the menu bar's bottom.
        let icon = Area {
            x: 2400.0,
            y: 0.0,
            width: 44.0,
            height: 74.0,
        };
        assert_eq!(origin(Some(icon), PANEL, MAC), (2422.0 - 360.0, 74.0));
    }

    #[test]
    fn kept_on_screen_near_its_edge() {
        // The rightmost icon: centred, the panel would pass the screen's edge by 338 pixels.
        let icon = Area {
            x: 2980.0,
            y: 0.0,
            width: 44.0,
            height: 74.0,
        };
        assert_eq!(origin(Some(icon), PANEL, MAC), (3024.0 - 720.0, 74.0));
    }

    #[test]
    fn above_an_icon_at_the_bottom_of_the_screen() {
        // A bottom panel (1920 × 1080, 40 pixels high): the work area ends above it.
        let work = Area {
            x: 0.0,
            y: 0.0,
            width: 1920.0,
            height: 1040.0,
        };
        let icon = Area {
            x: 1800.0,
            y: 1044.0,
            width: 32.0,
            height: 32.0,
        };
        assert_eq!(
            origin(Some(icon), (360.0, 420.0), work),
            (1920.0 - 360.0, 1040.0 - 420.0)
        );
    }

    #[test]
    fn without_an_anchor_in_the_work_area_s_top_right_corner() {
        // Linux under a top panel 32 pixels high (the test's trayer): right under it.
        let work = Area {
            x: 0.0,
            y: 32.0,
            width: 1280.0,
            height: 768.0,
        };
        assert_eq!(origin(None, (360.0, 420.0), work), (920.0, 32.0));
    }
}
