//! `headroom`: the menu-bar app, or with `--headless` the same backend without a display.
//!
//! Either way this binary hands over to `headroom-server` when it is installed beside it (see
//! `hand_over_to_server`); it stays itself only as the window process (`--window`), the one
//! part of Headroom that needs WebKit.

#[cfg(feature = "gui")]
mod gui;

use std::process::ExitCode;

use clap::Parser;

use headroom_app::cli::Cli;

fn main() -> ExitCode {
    headroom_app::init_logging();
    let cli = Cli::parse();
    if let Some(headroom_app::cli::Command::Pull { repo, file }) = &cli.command {
        return headroom_app::pull(&cli, repo, file.as_deref());
    }
    #[cfg(feature = "gui")]
    if cli.window {
        return gui::run();
    }
    #[cfg(feature = "gui")]
    if !cli.headless && gui_possible() {
        #[cfg(unix)]
        hand_over_to_server(Some("--menu-bar"));
        return headroom_app::run_with_settings(&cli, headroom_app::menu_bar::run);
    }
    #[cfg(not(feature = "gui"))]
    if !cli.headless {
        tracing::info!("built without the desktop app (feature `gui`); running headless");
    }
    #[cfg(all(unix, feature = "gui"))]
    hand_over_to_server(None);
    headroom_app::run_with_settings(&cli, |store, dirs| {
        headroom_app::run_headless(&store, &dirs)
    })
}

/// Whether a window can be shown. On Linux without X11 or Wayland the app falls back to
/// headless and says so, rather than failing to open a display.
#[cfg(feature = "gui")]
fn gui_possible() -> bool {
    if cfg!(target_os = "linux") {
        let has_display = ["DISPLAY", "WAYLAND_DISPLAY"]
            .iter()
            .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()));
        if !has_display {
            tracing::info!("no display (DISPLAY and WAYLAND_DISPLAY unset): running headless");
        }
        return has_display;
    }
    true
}

/// Becomes `headroom-server`, the same backend (and menu bar) linked without Tauri, when it is
/// installed beside this binary: same flags plus `mode`, same environment, same process id.
/// Returns only if it is not there or cannot be started; this process then serves.
///
/// The backend and the menu bar never call WebKit, but this binary links it, and the loader
/// maps and relocates it at start: on Linux that alone keeps ~45 MB resident (WebKit, its
/// speech voices, ICU) in a process that has no use for it, against ~11 MB in all without.
#[cfg(all(unix, feature = "gui"))]
fn hand_over_to_server(mode: Option<&str>) {
    use std::os::unix::process::CommandExt;
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let server = exe.with_file_name(headroom_app::SERVER_BINARY);
    if !server.is_file() {
        tracing::info!(missing = %server.display(), "no backend binary beside the app; serving from the app binary");
        return;
    }
    let error = std::process::Command::new(&server)
        .args(mode)
        .args(std::env::args_os().skip(1))
        .exec();
    tracing::warn!(server = %server.display(), %error, "could not start the backend binary; serving from the app binary");
}
