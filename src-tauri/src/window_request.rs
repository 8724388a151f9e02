//! What the menu-bar process asks of the window process: one request per line on the window
//! process's standard input.
//!
//! The two are separate processes so that WebKit lives only while a window is open: the
//! menu-bar process (tray and server) never links it, and the window process exits when its
//! last window closes, taking WebKit's helper processes with it (docs/design.md, "Two
//! processes").

use crate::panel::Area;

/// The app's windows: each shows one page of the web UI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    Main,
    Preferences,
    /// The menu-bar panel (see `panel`).
    Panel,
}

impl Page {
    /// The window's label, and the word for it in a request.
    pub fn label(self) -> &'static str {
        match self {
            Self::Main => "main",
            Self::Preferences => "preferences",
            Self::Panel => "panel",
        }
    }

    /// The page's path under the server's address.
    pub fn path(self) -> &'static str {
        match self {
            Self::Main => "",
            Self::Preferences => "ui/preferences.html",
            Self::Panel => "?panel",
        }
    }

    fn from_label(label: &str) -> Option<Self> {
        [Self::Main, Self::Preferences, Self::Panel]
            .into_iter()
            .find(|page| page.label() == label)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WindowRequest {
    /// Shows the page's window, creating it if it is not open; the panel then goes where
    /// `panel::origin` puts it without an anchor.
    Show(Page),
    /// A click on the tray icon (macOS): closes the panel if it is open, else opens it under
    /// the icon, whose rectangle on screen (physical pixels) the click gives.
    TogglePanel(Option<Area>),
}

impl WindowRequest {
    /// The request as one line, without its newline: `show main`, `toggle-panel 2400 0 44 74`.
    pub fn to_line(self) -> String {
        match self {
            Self::Show(page) => format!("show {}", page.label()),
            Self::TogglePanel(None) => "toggle-panel".into(),
            Self::TogglePanel(Some(a)) => {
                format!("toggle-panel {} {} {} {}", a.x, a.y, a.width, a.height)
            }
        }
    }

    /// Reads a line `to_line` wrote; None for anything else.
    pub fn parse(line: &str) -> Option<Self> {
        let mut words = line.split_whitespace();
        let request = match words.next()? {
            "show" => Self::Show(Page::from_label(words.next()?)?),
            "toggle-panel" => {
                let numbers: Vec<f64> = words
                    .by_ref()
                    .map(|w| w.parse().ok())
                    .collect::<Option<_>>()?;
                match numbers[..] {
                    [] => Self::TogglePanel(None),
                    [x, y, width, height] if numbers.iter().all(|n| n.is_finite()) => {
                        Self::TogglePanel(Some(Area {
                            x,
                            y,
                            width,
                            height,
                        }))
                    }
                    _ => return None,
                }
            }
            _ => return None,
        };
        words.next().is_none().then_some(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_request_reads_back_as_itself() {
        let icon = Area {
            x: 2400.0,
            y: 0.0,
            width: 44.5,
            height: 74.0,
        };
        for request in [
            WindowRequest::Show(Page::Main),
            WindowRequest::Show(Page::Preferences),
            WindowRequest::Show(Page::Panel),
            WindowRequest::TogglePanel(None),
            WindowRequest::TogglePanel(Some(icon)),
        ] {
            let line = request.to_line();
            assert_eq!(WindowRequest::parse(&line), Some(request), "{line}");
        }
        assert_eq!(
            WindowRequest::TogglePanel(Some(icon)).to_line(),
            "toggle-panel 2400 0 44.5 74"
        );
    }

    #[test]
    fn anything_else_is_refused() {
        for line in [
            "",
            "show",
            "show settings",
            "show main now",
            "toggle-panel 1 2 3",
            "toggle-panel 1 2 3 x",
            "toggle-panel 1 2 3 NaN",
            "open main",
        ] {
            assert_eq!(WindowRequest::parse(line), None, "{line:?}");
        }
    }
}
