//! Model discovery. A model is a `.gguf` file directly inside one of the model folders, its id
//! the file name without the extension; or an MLX model folder there (a `config.json` and
//! `.safetensors` weights), its id the folder's name. An id is only ever looked up, never joined
//! into a path as given: no separators, no `..`, and a symlink must resolve inside a model
//! folder. Other apps' models (`sources`) have ids in their own schemes (`hf:…`, `ollama:…`),
//! found only in a scan of their stores.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;

use super::sources::{is_source_id, Found, Index, Source, SourceKind};

/// The model folders, in priority order (the first folder wins when two hold the same id), and
/// other apps' stores.
#[derive(Debug, Clone)]
pub struct Catalog {
    dirs: Vec<PathBuf>,
    sources: Arc<Index>,
}

/// One model file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelFile {
    pub id: String,
    pub path: PathBuf,
    pub size: u64,
    /// The app whose store it is in; none for Headroom's own folders.
    pub source: Option<SourceKind>,
    /// Which contents the file had when it was looked up.
    #[serde(skip)]
    pub version: FileVersion,
}

/// Which contents a file has: another file renamed over it (how careful downloaders finish)
/// has another inode; a file rewritten in place another length or modification time. The pool
/// compares the loaded model's with the file's at each request. `Default`: not known.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct FileVersion {
    pub inode: u64,
    pub len: u64,
    pub modified: Option<SystemTime>,
}

impl FileVersion {
    pub fn of(meta: &std::fs::Metadata) -> Self {
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(meta);
        #[cfg(not(unix))]
        let inode = 0;
        Self {
            inode,
            len: meta.len(),
            modified: meta.modified().ok(),
        }
    }

    /// A model folder's: its inode, its weights' bytes, and the newest change among its files
    /// (a weight file rewritten in place changes the folder's version).
    pub fn of_folder(folder: &Path, meta: &std::fs::Metadata) -> Self {
        let mut version = Self::of(meta);
        version.len = 0;
        for file in folder_files(folder) {
            if let Ok(m) = std::fs::metadata(&file) {
                if file.extension().is_some_and(|e| e == WEIGHTS) {
                    version.len = version.len.saturating_add(m.len());
                }
                version.modified = version.modified.max(m.modified().ok());
            }
        }
        version
    }

    pub fn is_known(&self) -> bool {
        *self != Self::default()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CatalogError {
    #[error("'{0}' is not a valid model id: ids are file names without '.gguf', with no path separators")]
    InvalidId(String),
    #[error("model '{0}' was not found in the model folders")]
    NotFound(String),
}

const EXTENSION: &str = "gguf";
/// Longer names than this cannot be file names on the platforms we run on.
const MAX_ID_BYTES: usize = 250;

impl Catalog {
    pub fn new(dirs: Vec<PathBuf>) -> Self {
        Self::with_sources(dirs, Vec::new())
    }

    pub fn with_sources(dirs: Vec<PathBuf>, sources: Vec<Source>) -> Self {
        Self {
            dirs,
            sources: Arc::new(Index::new(sources)),
        }
    }

    /// Watches the model folders and the stores, announcing changes through `publish` (see
    /// `models::watch`); the watch lasts as long as the value returned.
    pub fn watch(
        &self,
        publish: crate::vocab::Publish<super::watch::ModelsChanged>,
    ) -> Option<super::watch::Watch> {
        let mut folders = self.dirs.clone();
        folders.extend(self.sources().iter().map(|s| s.root.clone()));
        super::watch::start(&folders, Arc::clone(&self.sources), publish)
    }

    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Other apps' stores found on this machine.
    pub fn sources(&self) -> &[Source] {
        self.sources.sources()
    }

    /// Each store found, with how many models it holds (from a scan at most seconds old).
    pub fn source_counts(&self) -> Vec<(Source, usize)> {
        let models = self.sources.models();
        self.sources()
            .iter()
            .map(|source| {
                let prefix = source.kind.prefix();
                let count = models.iter().filter(|m| m.id.starts_with(prefix)).count();
                (source.clone(), count)
            })
            .collect()
    }

    /// Every model in every folder, sorted by id. Unreadable folders are skipped (and logged):
    /// one missing external drive must not hide the other models.
    pub fn list(&self) -> Vec<ModelFile> {
        let mut found: Vec<ModelFile> = Vec::new();
        for dir in &self.dirs {
            let entries = match std::fs::read_dir(dir) {
                Ok(entries) => entries,
                Err(e) => {
                    tracing::debug!(dir = %dir.display(), error = %e, "model folder not readable");
                    continue;
                }
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let Some(id) = id_of(&path).or_else(|| folder_id_of(&path)) else {
                    continue;
                };
                if found.iter().any(|m| m.id == id) {
                    continue;
                }
                if let Ok(model) = self.find(&id) {
                    found.push(model);
                }
            }
        }
        found.extend(
            self.sources
                .models()
                .iter()
                .filter_map(|f| self.source_file(f)),
        );
        found.sort_by(|a, b| a.id.cmp(&b.id));
        found
    }

    /// The file behind `id`, if it is a regular file that really lives in a model folder, or
    /// a model a scan of another app's store found under that id.
    pub fn find(&self, id: &str) -> Result<ModelFile, CatalogError> {
        if is_source_id(id) {
            return self
                .sources
                .find(id)
                .and_then(|f| self.source_file(&f))
                .ok_or_else(|| CatalogError::NotFound(id.to_string()));
        }
        validate_id(id)?;
        for dir in &self.dirs {
            let Ok(root) = dir.canonicalize() else {
                continue;
            };
            let candidate = root.join(format!("{id}.{EXTENSION}"));
            let Ok(real) = candidate
                .canonicalize()
                .or_else(|_| root.join(id).canonicalize())
            else {
                continue;
            };
            if !self.is_inside_a_model_folder(&real) {
                tracing::warn!(id, target = %real.display(), "model symlink points outside the model folders; ignored");
                continue;
            }
            match std::fs::metadata(&real) {
                Ok(meta) => {
                    if let Some(model) = model_file(id, &real, &meta, None) {
                        return Ok(model);
                    }
                }
                Err(_) => continue,
            }
        }
        Err(CatalogError::NotFound(id.to_string()))
    }

    fn source_file(&self, found: &Found) -> Option<ModelFile> {
        let kind = self
            .sources()
            .iter()
            .map(|s| s.kind)
            .find(|k| found.id.starts_with(k.prefix()))?;
        let meta = std::fs::metadata(&found.path).ok()?;
        let mut model = model_file(&found.id, &found.path, &meta, Some(kind))?;
        // A split GGUF's size is all its parts'.
        model.size = model.size.max(found.size);
        Some(model)
    }

    fn is_inside_a_model_folder(&self, real: &Path) -> bool {
        self.dirs
            .iter()
            .filter_map(|d| d.canonicalize().ok())
            .any(|root| real.parent() == Some(root.as_path()))
    }
}

/// A model file or MLX folder at `real` (resolved), as `id`; None for anything else.
fn model_file(
    id: &str,
    real: &Path,
    meta: &std::fs::Metadata,
    source: Option<SourceKind>,
) -> Option<ModelFile> {
    if meta.is_file() {
        return Some(ModelFile {
            id: id.to_string(),
            path: real.to_path_buf(),
            size: meta.len(),
            source,
            version: FileVersion::of(meta),
        });
    }
    if meta.is_dir() && is_model_folder(real) {
        let version = FileVersion::of_folder(real, meta);
        return Some(ModelFile {
            id: id.to_string(),
            size: version.len,
            path: real.to_path_buf(),
            source,
            version,
        });
    }
    None
}

/// The weights of an MLX model folder.
const WEIGHTS: &str = "safetensors";

/// Whether `path` is an MLX model folder (mlx-community's layout): a `config.json` and
/// `.safetensors` weights beside it.
pub fn is_model_folder(path: &Path) -> bool {
    path.join("config.json").is_file()
        && folder_files(path)
            .iter()
            .any(|f| f.extension().is_some_and(|e| e == WEIGHTS))
}

fn folder_files(folder: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(folder)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

fn folder_id_of(path: &Path) -> Option<String> {
    if !path.is_dir() || !is_model_folder(path) {
        return None;
    }
    let id = path.file_name()?.to_str()?.to_string();
    validate_id(&id).ok()?;
    Some(id)
}

fn id_of(path: &Path) -> Option<String> {
    if path.extension()?.to_str()? != EXTENSION {
        return None;
    }
    let id = path.file_stem()?.to_str()?.to_string();
    validate_id(&id).ok()?;
    Some(id)
}

fn validate_id(id: &str) -> Result<(), CatalogError> {
    if !is_plain_id(id) {
        return Err(CatalogError::InvalidId(id.to_string()));
    }
    Ok(())
}

/// Whether `id` could name a model: a plain file name, never a path, or an id in another app's
/// store's scheme (`sources::is_source_id`).
pub fn is_valid_id(id: &str) -> bool {
    is_source_id(id) || is_plain_id(id)
}

fn is_plain_id(id: &str) -> bool {
    !(id.is_empty()
        || id.len() > MAX_ID_BYTES
        || id.starts_with('.')
        || id.contains(['/', '\\', '\0'])
        || id.chars().any(char::is_control))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path, bytes: usize) {
        std::fs::write(path, vec![0u8; bytes]).expect("write");
    }

    #[test]
    fn lists_gguf_files_by_id_with_the_first_folder_winning() {
        let a = tempfile::tempdir().expect("tmp");
        let b = tempfile::tempdir().expect("tmp");
        touch(&a.path().join("alpha.gguf"), 3);
        touch(&a.path().join("notes.txt"), 1);
        touch(&b.path().join("alpha.gguf"), 5);
        touch(&b.path().join("beta.gguf"), 7);
        std::fs::create_dir(b.path().join("dir.gguf")).expect("mkdir");
        let catalog = Catalog::new(vec![
            a.path().into(),
            b.path().into(),
            "/nonexistent".into(),
        ]);
        let listed: Vec<(String, u64)> =
            catalog.list().into_iter().map(|m| (m.id, m.size)).collect();
        assert_eq!(listed, vec![("alpha".into(), 3), ("beta".into(), 7)]);
    }

    #[test]
    fn mlx_folders_are_models_named_by_the_folder() {
        let dir = tempfile::tempdir().expect("tmp");
        let mlx = dir.path().join("SmolLM2-mlx");
        std::fs::create_dir(&mlx).expect("mkdir");
        touch(&mlx.join("config.json"), 2);
        touch(&mlx.join("model-00001-of-00002.safetensors"), 5);
        touch(&mlx.join("model-00002-of-00002.safetensors"), 6);
        // A folder without weights (a download in progress) is not one.
        let partial = dir.path().join("partial");
        std::fs::create_dir(&partial).expect("mkdir");
        touch(&partial.join("config.json"), 2);
        touch(&dir.path().join("tiny.gguf"), 3);
        let catalog = Catalog::new(vec![dir.path().into()]);
        let listed: Vec<(String, u64)> =
            catalog.list().into_iter().map(|m| (m.id, m.size)).collect();
        assert_eq!(listed, vec![("SmolLM2-mlx".into(), 11), ("tiny".into(), 3)]);
        let found = catalog.find("SmolLM2-mlx").expect("found");
        assert!(found.path.is_dir());
        assert_eq!(
            catalog.find("partial"),
            Err(CatalogError::NotFound("partial".into()))
        );
        // Rewriting a weight file changes the folder's version.
        let before = found.version;
        touch(&mlx.join("model-00002-of-00002.safetensors"), 7);
        assert_ne!(catalog.find("SmolLM2-mlx").expect("found").version, before);
    }

    #[test]
    fn ids_that_look_like_paths_are_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let catalog = Catalog::new(vec![dir.path().into()]);
        for id in ["../x", "a/b", "..", "", ".hidden", "a\\b", "nul\0"] {
            assert_eq!(
                catalog.find(id),
                Err(CatalogError::InvalidId(id.into())),
                "{id:?}"
            );
        }
        assert_eq!(
            catalog.find("absent"),
            Err(CatalogError::NotFound("absent".into()))
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_out_of_the_folders_is_not_a_model() {
        let models = tempfile::tempdir().expect("tmp");
        let outside = tempfile::tempdir().expect("tmp");
        touch(&outside.path().join("secret.gguf"), 4);
        std::os::unix::fs::symlink(
            outside.path().join("secret.gguf"),
            models.path().join("escape.gguf"),
        )
        .expect("symlink");
        touch(&models.path().join("real.gguf"), 4);
        std::os::unix::fs::symlink(
            models.path().join("real.gguf"),
            models.path().join("alias.gguf"),
        )
        .expect("symlink");
        let catalog = Catalog::new(vec![models.path().into()]);
        assert_eq!(
            catalog.find("escape"),
            Err(CatalogError::NotFound("escape".into()))
        );
        assert!(catalog.find("alias").is_ok());
        let ids: Vec<String> = catalog.list().into_iter().map(|m| m.id).collect();
        assert_eq!(ids, vec!["alias".to_string(), "real".to_string()]);
    }
}
