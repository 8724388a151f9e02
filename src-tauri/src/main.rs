//! `headroom`: the menu-bar app, or with `--headless` the same backend without a display.

mod cli;
#[cfg(feature = "gui")]
mod gui;
mod shutdown;

use clap::Parser;
use std::sync::Arc;

use headroom_core::config::{AppDirs, SettingsStore};
use headroom_core::server::Server;

use cli::Cli;

fn main() -> std::process::ExitCode {
    init_logging();
    let cli = Cli::parse();
    let (store, dirs) = match cli.settings() {
        Ok(found) => found,
        Err(e) => {
            eprintln!("headroom: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let result = if cli.headless || !gui_possible() {
        run_headless(&store, &dirs)
    } else {
        run_app(store, dirs)
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("headroom: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run_headless(store: &Arc<SettingsStore>, dirs: &AppDirs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let server = Server::start(store, dirs).await?;
        announce(&server, dirs);
        server.serve(shutdown::signal(), shutdown::GRACE).await
    })
}

/// The one line scripts and tests read to find the server.
fn announce(server: &Server, dirs: &AppDirs) {
    let address = server.address();
    tracing::info!(%address, models = %dirs.models().display(), config = %dirs.config_file.display(), "Headroom is serving");
    println!("Headroom listening on http://{address}");
}

#[cfg(feature = "gui")]
fn run_app(store: Arc<SettingsStore>, dirs: AppDirs) -> anyhow::Result<()> {
    gui::run(store, dirs)
}

#[cfg(not(feature = "gui"))]
fn run_app(store: Arc<SettingsStore>, dirs: AppDirs) -> anyhow::Result<()> {
    tracing::info!("built without the desktop app (feature `gui`); running headless");
    run_headless(&store, &dirs)
}

/// Whether a window can be shown. On Linux without X11 or Wayland the app falls back to
/// headless and says so, rather than failing to open a display.
fn gui_possible() -> bool {
    if !cfg!(feature = "gui") {
        return false;
    }
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

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    // llama.cpp reports every tensor at info level; its warnings are what matter day to day.
    let filter = EnvFilter::try_from_env("HEADROOM_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info,llama-cpp-2=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
