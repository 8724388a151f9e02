//! Command-line flags. They win over `HEADROOM_*` variables, which win over the config file.

use std::path::PathBuf;

use clap::Parser;
use std::sync::Arc;

use headroom_core::config::{AppDirs, SettingError, SettingsStore};

#[derive(Debug, Parser)]
#[command(
    name = "headroom",
    version,
    about = "Runs local language models and keeps them from eating the machine"
)]
pub struct Cli {
    /// Run the server without the menu-bar app (the UI is served at the server's address).
    #[arg(long)]
    pub headless: bool,

    /// Port on loopback, 127.0.0.1 and [::1] (0 = any free port) [env: HEADROOM_PORT] [default: 11435]
    #[arg(long)]
    pub port: Option<u16>,

    /// Listen on this address instead of loopback ("0.0.0.0": every address); needs an API key
    /// (HEADROOM_API_KEY or `api_key` in the config file) [env: HEADROOM_BIND]
    #[arg(long, value_name = "ADDRESS")]
    pub bind: Option<String>,

    /// Config file [default: the platform's config folder]/config.toml
    #[arg(long, env = "HEADROOM_CONFIG", global = true)]
    pub config: Option<PathBuf>,

    /// Another folder of .gguf models; repeatable [env: HEADROOM_MODELS_DIR, colon-separated]
    #[arg(long = "models-dir", value_name = "DIR")]
    pub models_dirs: Vec<PathBuf>,

    /// Data folder (holds models/) [default: the platform's data folder]
    #[arg(long, env = "HEADROOM_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,

    /// The menu bar: what `headroom` hands over to when it can show one (internal)
    #[arg(long, hide = true, conflicts_with = "headless")]
    pub menu_bar: bool,

    /// The window process, which the menu bar starts (internal)
    #[arg(long, hide = true, conflicts_with_all = ["headless", "menu_bar"])]
    pub window: bool,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Download a GGUF file, or a whole MLX repo, from Hugging Face into Headroom's model
    /// folder (resumable, checked against the Hub's sha256; HF_ENDPOINT as huggingface_hub reads
    /// it; the token from Preferences, HF_TOKEN or `huggingface-cli login`)
    Pull {
        /// The repo, `org/name`
        repo: String,
        /// The GGUF file in it; left out for an MLX repo, pulled as a folder
        file: Option<String>,
    },
}

impl Cli {
    /// The settings in force and where files live.
    ///
    /// A config file that cannot be used is moved aside (the store says so); a bad
    /// environment variable or flag is an error, since the user just typed it.
    pub fn settings(&self) -> Result<(Arc<SettingsStore>, AppDirs), SettingError> {
        let dirs = AppDirs::resolve(self.data_dir.as_deref(), self.config.as_deref());
        let store = SettingsStore::open(&dirs.config_file);
        let mut settings = store.file();
        settings.apply_env(std::env::vars())?;
        if let Some(port) = self.port {
            settings.port = port;
        }
        if let Some(bind) = &self.bind {
            settings.bind = bind.parse().map_err(|allowed| SettingError {
                source_name: "--bind".into(),
                setting: "bind".into(),
                value: format!("{bind:?}"),
                allowed,
            })?;
        }
        let mut models_dirs = self.models_dirs.clone();
        models_dirs.append(&mut settings.models_dirs);
        settings.models_dirs = models_dirs;
        settings.validate("command line")?;
        store.set_live(settings);
        Ok((Arc::new(store), dirs))
    }
}
