//! The config file on disk and the settings in force.
//!
//! Two rules: the user's file is never left half-written (every save writes a temporary file in
//! the same folder, syncs it, and renames it over the old one, so a crash or a full disk leaves
//! either the old file or the new one), and a file that cannot be used never stops the app (it
//! is moved aside to `config.toml.bak-<time>` and the app starts on defaults, saying so).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::Settings;

/// The config file and the settings in force.
pub struct SettingsStore {
    path: PathBuf,
    /// What the file says (defaults where it is silent). Saves start from this, so values that
    /// came from the environment are not written into the file.
    file: Mutex<Settings>,
    /// What is in force: the file, then the environment and flags at start, then live changes.
    live: Mutex<Settings>,
    /// Things the user should be told (a file moved aside).
    notices: Vec<String>,
}

/// Why settings could not be saved; the file on disk is unchanged.
#[derive(Debug, thiserror::Error)]
#[error("could not save the settings to {path}: {source}; the file is unchanged")]
pub struct SaveError {
    pub path: String,
    #[source]
    pub source: std::io::Error,
}

impl SettingsStore {
    /// Reads `path`. A missing file means defaults; one that does not parse or holds a value
    /// that is not allowed is renamed to `<name>.bak-<unix time>` and defaults are used.
    pub fn open(path: &Path) -> Self {
        remove_interrupted_saves(path);
        let mut notices = Vec::new();
        let file = match Settings::from_file(path) {
            Ok(settings) => settings,
            Err(problem) => {
                let aside = set_aside_name(path);
                let notice = match std::fs::rename(path, &aside) {
                    Ok(()) => format!(
                        "the config file could not be used ({problem}); it was moved to {} and Headroom started with default settings",
                        aside.display()
                    ),
                    Err(e) => format!(
                        "the config file could not be used ({problem}) nor moved aside ({e}); Headroom started with default settings"
                    ),
                };
                tracing::warn!("{notice}");
                notices.push(notice);
                Settings::default()
            }
        };
        Self {
            path: path.to_path_buf(),
            live: Mutex::new(file.clone()),
            file: Mutex::new(file),
            notices,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn notices(&self) -> &[String] {
        &self.notices
    }

    /// What the file holds.
    pub fn file(&self) -> Settings {
        self.file
            .lock()
            .map(|s| s.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    /// What is in force.
    pub fn live(&self) -> Settings {
        self.live
            .lock()
            .map(|s| s.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    /// The API key in force, read on every request, so it is not a copy of all the settings.
    pub fn api_key(&self) -> Option<String> {
        match self.live.lock() {
            Ok(live) => live.api_key.clone(),
            Err(e) => e.into_inner().api_key.clone(),
        }
    }

    /// Sets what is in force without saving (the environment and flags at start).
    pub fn set_live(&self, settings: Settings) {
        match self.live.lock() {
            Ok(mut live) => *live = settings,
            Err(e) => *e.into_inner() = settings,
        }
    }

    /// Writes `file` to disk atomically, then makes `live` the settings in force. On error
    /// neither the file nor the settings in force change.
    pub fn save(&self, file: Settings, live: Settings) -> Result<(), SaveError> {
        let text = toml::to_string_pretty(&file).map_err(|e| SaveError {
            path: self.path.display().to_string(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let header = "# Headroom settings. Written by Headroom; edits by hand are kept.\n\
                      # Every setting and its default: see docs/configuration.md.\n\n";
        write_atomically(&self.path, format!("{header}{text}").as_bytes()).map_err(|source| {
            SaveError {
                path: self.path.display().to_string(),
                source,
            }
        })?;
        match self.file.lock() {
            Ok(mut f) => *f = file,
            Err(e) => *e.into_inner() = file,
        }
        self.set_live(live);
        Ok(())
    }
}

/// The temporary files of saves cut short by a crash or a kill (they never replaced the config
/// file, which is whole); without this each one would stay in the folder for good.
fn remove_interrupted_saves(path: &Path) {
    let Some(dir) = path.parent() else { return };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(TEMP_PREFIX) && name.ends_with(TEMP_SUFFIX) {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => {
                    tracing::info!(file = %name, "removed the remains of an interrupted settings save")
                }
                Err(e) => {
                    tracing::debug!(file = %name, error = %e, "cannot remove an old temporary file")
                }
            }
        }
    }
}

const TEMP_PREFIX: &str = ".config-";
const TEMP_SUFFIX: &str = ".tmp";

fn set_aside_name(path: &Path) -> PathBuf {
    let time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".bak-{time}"));
    path.with_file_name(name)
}

/// Replaces `path` with `bytes` so that a reader (or a crash) sees the old file or the new one,
/// never a mix: a temporary file in the same folder, synced, renamed over `path`, and the folder
/// synced so the rename itself survives a power cut. The file is readable by its owner only.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let mut builder = tempfile::Builder::new();
    builder.prefix(TEMP_PREFIX).suffix(TEMP_SUFFIX);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o600));
    }
    let mut temp = builder.tempfile_in(dir)?;
    temp.write_all(bytes)?;
    temp.as_file().sync_all()?;
    // On failure the temporary file is removed when `temp` drops.
    temp.persist(path).map_err(|e| e.error)?;
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::{IdleTimeout, MemoryLimit};

    #[test]
    fn settings_round_trip_through_the_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("config.toml");
        let store = SettingsStore::open(&path);
        assert!(store.notices().is_empty());
        let mut changed = store.file();
        changed.idle_timeout = IdleTimeout::After(std::time::Duration::from_secs(1800));
        changed.memory_limit = MemoryLimit::Percent(60.0);
        changed.pinned = vec!["m".into()];
        changed.idle_timeouts.insert("m".into(), IdleTimeout::Never);
        store.save(changed.clone(), changed.clone()).expect("saved");
        assert_eq!(SettingsStore::open(&path).file(), changed);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Nothing else is left in the folder.
        assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 1);
    }

    #[test]
    fn a_file_that_cannot_be_used_is_moved_aside() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "parallel = [oops\n").expect("write");
        let store = SettingsStore::open(&path);
        assert_eq!(store.file(), Settings::default());
        assert_eq!(store.notices().len(), 1);
        assert!(!path.exists());
        let aside: Vec<_> = std::fs::read_dir(dir.path())
            .expect("dir")
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(aside.len(), 1);
        assert!(aside[0].starts_with("config.toml.bak-"), "{aside:?}");
        let kept = std::fs::read_to_string(dir.path().join(&aside[0])).expect("kept");
        assert_eq!(kept, "parallel = [oops\n");
    }

    #[test]
    fn a_failed_write_changes_nothing() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "port = 9000\n").expect("write");
        let store = SettingsStore::open(&path);
        // Replace the file by a folder: the rename over it fails after the temporary file
        // was written, which must then be gone again.
        std::fs::remove_file(&path).expect("rm");
        std::fs::create_dir(&path).expect("dir");
        std::fs::write(path.join("x"), "").expect("fill");
        let mut changed = store.file();
        changed.port = 9001;
        let e = store.save(changed.clone(), changed).unwrap_err();
        assert!(e.to_string().contains("the file is unchanged"), "{e}");
        assert_eq!(store.file().port, 9000);
        assert_eq!(store.live().port, 9000);
        assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 1);
    }
}
