//! `headroom-server`: Headroom's backend (the pool, the APIs, the web UI), and with `--menu-bar`
//! its menu bar too, linked without Tauri or WebKit. `headroom` hands over to it; it takes the
//! same flags.

use std::process::ExitCode;

use clap::Parser;

use headroom_app::cli::Cli;

fn main() -> ExitCode {
    headroom_app::init_logging();
    let cli = Cli::parse();
    if let Some(headroom_app::cli::Command::Pull { repo, file }) = &cli.command {
        return headroom_app::pull(&cli, repo, file.as_deref());
    }
    if cli.window {
        eprintln!("headroom-server: --window is the app binary's (headroom)");
        return ExitCode::from(2);
    }
    #[cfg(feature = "menu-bar")]
    if cli.menu_bar {
        return headroom_app::run_with_settings(&cli, headroom_app::menu_bar::run);
    }
    #[cfg(not(feature = "menu-bar"))]
    if cli.menu_bar {
        tracing::info!("built without the menu bar (feature `menu-bar`); running headless");
    }
    headroom_app::run_with_settings(&cli, |store, dirs| {
        headroom_app::run_headless(&store, &dirs)
    })
}
