//! What the two binaries share: `headroom` (the app: it hands over to `headroom-server`, and
//! run as `headroom --window` it is the window process) and `headroom-server` (the backend,
//! headless or with the menu bar). The Tauri windows are the app binary's own module, not part
//! of this library, so `headroom-server` links neither Tauri nor WebKit.

pub mod cli;
#[cfg(feature = "menu-bar")]
pub mod menu_bar;
pub mod panel;
pub mod shutdown;
pub mod window_request;

use std::process::ExitCode;
use std::sync::Arc;

use headroom_core::config::{AppDirs, SettingsStore};
use headroom_core::engine::Engine;
use headroom_core::engine::Router;
use headroom_core::server::Server;
use headroom_llama::LlamaEngine;
use headroom_mlx::MlxEngine;

use cli::Cli;

/// The backend's binary, installed beside the app's.
pub const SERVER_BINARY: &str = "headroom-server";
/// The app's binary: what a user starts, and the window process.
pub const APP_BINARY: &str = "headroom";

/// The app binary beside the running one (which may be it), if it is there.
pub fn app_binary() -> Option<std::path::PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let app = exe.with_file_name(format!("{APP_BINARY}{}", std::env::consts::EXE_SUFFIX));
    app.is_file().then_some(app)
}

/// Reads the settings the flags point at, then runs `run` with them; what either fails with
/// is printed, and becomes the exit code.
pub fn run_with_settings(
    cli: &Cli,
    run: impl FnOnce(Arc<SettingsStore>, AppDirs) -> anyhow::Result<()>,
) -> ExitCode {
    let (store, dirs) = match cli.settings() {
        Ok(found) => found,
        Err(e) => {
            eprintln!("headroom: {e}");
            return ExitCode::from(2);
        }
    };
    match run(store, dirs) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("headroom: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Serves until SIGTERM or Ctrl-C, on a runtime of its own.
pub fn run_headless(store: &Arc<SettingsStore>, dirs: &AppDirs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let server = Server::start(store, dirs, engine).await?;
        announce(&server, dirs);
        server.serve(shutdown::signal(), shutdown::GRACE).await
    })
}

/// `headroom pull REPO FILE`: the same pull as `POST /api/models/pull`, into the model folder
/// the flags and settings name, its progress on stderr.
pub fn pull(cli: &Cli, repo: &str, file: Option<&str>) -> ExitCode {
    run_with_settings(cli, |store, dirs| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            let folder = dirs.models();
            std::fs::create_dir_all(&folder)?;
            let progress: headroom_core::vocab::Publish<headroom_core::pull::PullEvent> =
                Arc::new(|event: headroom_core::pull::PullEvent| {
                    let s = event.status;
                    let mb = |b: u64| b as f64 / 1e6;
                    let left = s
                        .seconds_left
                        .map_or_else(String::new, |t| format!(", {t:.0} s left"));
                    eprint!(
                        "\r{}: {:.1} of {:.1} MB, {:.1} MB/s{left}   ",
                        s.model,
                        mb(s.received),
                        mb(s.total),
                        s.bytes_per_second / 1e6
                    );
                });
            let token = store.live().hub_token;
            let pulls = headroom_core::pull::Pulls::new(
                folder.clone(),
                headroom_core::pull::hub::endpoint(),
                Arc::new(move || headroom_core::pull::hub::token(token.as_deref())),
                progress,
            );
            let started = pulls.start(repo, file).await?;
            let ended = pulls
                .wait(&started.model)
                .await
                .ok_or_else(|| anyhow::anyhow!("the pull vanished"))?;
            eprintln!();
            match ended.state {
                headroom_core::pull::PullState::Done => {
                    let what = match &ended.file {
                        Some(file) => format!("{}/{file}", ended.repo),
                        None => ended.repo.clone(),
                    };
                    println!(
                        "pulled {what} into {} as model '{}'",
                        folder.display(),
                        ended.model
                    );
                    Ok(())
                }
                _ => Err(anyhow::anyhow!(
                    "{}",
                    ended.error.unwrap_or_else(|| "cancelled".into())
                )),
            }
        })
    })
}

/// The engines the binaries serve models with, one chosen per model (`engine` in the settings):
/// llama.cpp, for GGUF files; MLX, for MLX model folders.
pub fn engine() -> anyhow::Result<Arc<dyn Engine>> {
    Ok(Arc::new(Router::new(vec![
        Arc::new(LlamaEngine::new()?),
        Arc::new(MlxEngine::new()),
    ])))
}

/// The one line scripts and tests read to find the server.
pub fn announce(server: &Server, dirs: &AppDirs) {
    let address = server.address();
    tracing::info!(%address, models = %dirs.models().display(), config = %dirs.config_file.display(), "Headroom is serving");
    println!("Headroom listening on http://{address}");
}

/// Log lines go to stderr; `HEADROOM_LOG` (or `RUST_LOG`) filters them.
pub fn init_logging() {
    use std::io::IsTerminal;

    use tracing_subscriber::EnvFilter;
    // llama.cpp reports every tensor at info level; its warnings are what matter day to day.
    let filter = EnvFilter::try_from_env("HEADROOM_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info,llama-cpp-2=warn"));
    // Colours only on a terminal: a log redirected to a file stays plain text.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
