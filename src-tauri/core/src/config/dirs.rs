//! Where Headroom keeps its files: the platform's folders (via `directories`), unless told
//! otherwise (`--data-dir`, `--config`), which is what the tests and portable setups use.

use std::path::{Path, PathBuf};

/// The folders and files of one Headroom installation.
#[derive(Debug, Clone)]
pub struct AppDirs {
    /// Holds `models/`.
    pub data: PathBuf,
    pub config_file: PathBuf,
}

impl AppDirs {
    /// The platform's folders: `~/.local/share/headroom` and `~/.config/headroom/config.toml`
    /// on Linux, `~/Library/Application Support/dev.headroom.Headroom` on macOS.
    pub fn platform() -> Option<Self> {
        let dirs = directories::ProjectDirs::from("dev", "headroom", "Headroom")?;
        Some(Self {
            data: dirs.data_dir().to_path_buf(),
            config_file: dirs.config_dir().join("config.toml"),
        })
    }

    /// Overrides either path; falls back to the platform's, then to the working directory.
    pub fn resolve(data: Option<&Path>, config_file: Option<&Path>) -> Self {
        let platform = Self::platform().unwrap_or_else(|| Self {
            data: PathBuf::from(".headroom"),
            config_file: PathBuf::from(".headroom/config.toml"),
        });
        Self {
            data: data.map_or(platform.data, Path::to_path_buf),
            config_file: config_file.map_or(platform.config_file, Path::to_path_buf),
        }
    }

    /// The data folder's own model folder, always searched first.
    pub fn models(&self) -> PathBuf {
        self.data.join("models")
    }
}
