//! The models other apps already keep: the Hugging Face cache, LM Studio's folder, Ollama's
//! store and llama.cpp's download cache. Headroom reads them and never writes into them.
//!
//! Each source is scanned into `Found` entries: an id in the source's own scheme (docs/api.md,
//! "Model ids") and the path it names, resolved and checked to lie inside the source's folder,
//! so an id reaches a file only through a scan, never by being joined into a path. Symlinks
//! inside a source (the HF cache's snapshots into its blobs) resolve within it; one pointing
//! out of it is skipped.

pub mod files;
mod hf_cache;
mod llama_cpp;
mod lm_studio;
mod ollama;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::catalog::is_model_folder;

/// One app's store of models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    Huggingface,
    LmStudio,
    Ollama,
    LlamaCpp,
}

impl SourceKind {
    pub const ALL: [Self; 4] = [
        Self::Huggingface,
        Self::LmStudio,
        Self::Ollama,
        Self::LlamaCpp,
    ];

    /// The name in settings (`sources = ["huggingface", …]`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Huggingface => "huggingface",
            Self::LmStudio => "lm_studio",
            Self::Ollama => "ollama",
            Self::LlamaCpp => "llama_cpp",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// What its ids start with.
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Huggingface => hf_cache::PREFIX,
            Self::LmStudio => lm_studio::PREFIX,
            Self::Ollama => ollama::PREFIX,
            Self::LlamaCpp => llama_cpp::PREFIX,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Huggingface => "Hugging Face cache",
            Self::LmStudio => "LM Studio",
            Self::Ollama => "Ollama",
            Self::LlamaCpp => "llama.cpp cache",
        }
    }

    fn scan(self, root: &Path) -> Vec<Found> {
        match self {
            Self::Huggingface => hf_cache::scan(root),
            Self::LmStudio => lm_studio::scan(root),
            Self::Ollama => ollama::scan(root),
            Self::LlamaCpp => llama_cpp::scan(root),
        }
    }

    /// Where this source keeps its models on this machine, if the folder is there: the
    /// variable the app itself reads, else its default under `home`.
    pub fn locate(self, var: &dyn Fn(&str) -> Option<String>, home: &Path) -> Option<PathBuf> {
        let cache = var("XDG_CACHE_HOME")
            .filter(|v| !v.is_empty())
            .map_or_else(|| home.join(".cache"), PathBuf::from);
        let found = match self {
            // As huggingface_hub: HF_HUB_CACHE, else HF_HOME/hub, else the cache folder's.
            Self::Huggingface => var("HF_HUB_CACHE")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .or_else(|| {
                    var("HF_HOME")
                        .filter(|v| !v.is_empty())
                        .map(|h| PathBuf::from(h).join("hub"))
                })
                .unwrap_or_else(|| cache.join("huggingface").join("hub")),
            Self::LmStudio => return lm_studio::locate(home),
            Self::Ollama => var("OLLAMA_MODELS")
                .filter(|v| !v.is_empty())
                .map_or_else(|| home.join(".ollama").join("models"), PathBuf::from),
            Self::LlamaCpp => var("LLAMA_CACHE")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    if cfg!(target_os = "macos") {
                        home.join("Library").join("Caches").join("llama.cpp")
                    } else {
                        cache.join("llama.cpp")
                    }
                }),
        };
        found.is_dir().then_some(found)
    }
}

/// A source found on this machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Source {
    pub kind: SourceKind,
    pub root: PathBuf,
}

impl Source {
    /// The sources among `enabled` whose folders exist, as the process's environment and home
    /// folder place them.
    pub fn locate_all(enabled: &[SourceKind]) -> Vec<Self> {
        let Some(home) = std::env::var_os("HOME").map(PathBuf::from) else {
            return Vec::new();
        };
        let var = |name: &str| std::env::var(name).ok();
        enabled
            .iter()
            .filter_map(|&kind| {
                let root = kind.locate(&var, &home)?;
                Some(Self { kind, root })
            })
            .collect()
    }
}

/// A model a scan found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub id: String,
    /// The GGUF file (a split model's first part) or the MLX folder, resolved.
    pub path: PathBuf,
    pub size: u64,
}

impl Found {
    /// An MLX folder, if every file in it resolves inside `root`; its size, its weights'.
    fn folder(id: String, folder: &Path, root: &Path) -> Option<Self> {
        let path = inside(folder, root)?;
        let mut size = 0u64;
        for file in files::entries(&path) {
            let real = inside(&file, root)?;
            // By the entry's name: a link's target (a blob) has none.
            if file.extension().is_some_and(|e| e == "safetensors") {
                size = size.saturating_add(std::fs::metadata(&real).ok()?.len());
            }
        }
        is_model_folder(&path).then_some(Self { id, path, size })
    }
}

/// `path` resolved, if it lies inside `root` (itself resolved).
fn inside(path: &Path, root: &Path) -> Option<PathBuf> {
    let real = path.canonicalize().ok()?;
    if real.starts_with(root) {
        Some(real)
    } else {
        tracing::warn!(path = %path.display(), target = %real.display(), "a model link points outside its app's folder; ignored");
        None
    }
}

/// Whether `id` is in one of the sources' schemes: a known prefix, then a name with no
/// control characters, no `..` component and no backslash. Such ids are only looked up in a
/// scan's results, never joined into a path.
pub fn is_source_id(id: &str) -> bool {
    let Some(rest) = SourceKind::ALL
        .iter()
        .find_map(|k| id.strip_prefix(k.prefix()))
    else {
        return false;
    };
    !(rest.is_empty()
        || id.len() > 500
        || rest.starts_with('/')
        || rest.contains('\\')
        || rest
            .split('/')
            .any(|part| part.is_empty() || part == ".." || part == ".")
        || rest.chars().any(char::is_control))
}

/// How long a scan stands before a lookup scans again: long enough that a burst of requests
/// does not walk the folders each time, short enough that a model just pulled by another app
/// shows up at once.
const FRESH: Duration = Duration::from_secs(2);

/// The sources and their last scan.
#[derive(Debug)]
pub struct Index {
    sources: Vec<Source>,
    last: Mutex<Option<(Instant, Arc<Vec<Found>>)>>,
}

impl Index {
    pub fn new(sources: Vec<Source>) -> Self {
        Self {
            sources,
            last: Mutex::new(None),
        }
    }

    pub fn sources(&self) -> &[Source] {
        &self.sources
    }

    /// Every model in every source, from a scan at most `FRESH` old; a model two sources
    /// share an id for (none of the schemes do) is listed once.
    pub fn models(&self) -> Arc<Vec<Found>> {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, found)) = last.as_ref() {
            if at.elapsed() < FRESH {
                return Arc::clone(found);
            }
        }
        let found = Arc::new(self.scan());
        *last = Some((Instant::now(), Arc::clone(&found)));
        found
    }

    /// Drops the last scan: the next lookup scans again.
    pub fn forget_scan(&self) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// The model `id` names, from a fresh scan if the last one did not have it.
    pub fn find(&self, id: &str) -> Option<Found> {
        if !is_source_id(id) || self.sources.is_empty() {
            return None;
        }
        if let Some(found) = self.models().iter().find(|f| f.id == id) {
            return Some(found.clone());
        }
        self.forget_scan();
        self.models().iter().find(|f| f.id == id).cloned()
    }

    fn scan(&self) -> Vec<Found> {
        let started = Instant::now();
        let mut found: Vec<Found> = Vec::new();
        let mut ids = std::collections::HashSet::new();
        for source in &self.sources {
            for model in source.kind.scan(&source.root) {
                if ids.insert(model.id.clone()) {
                    found.push(model);
                }
            }
        }
        found.sort_by(|a, b| a.id.cmp(&b.id));
        tracing::debug!(models = found.len(), elapsed = ?started.elapsed(), "model sources scanned");
        found
    }
}

#[cfg(test)]
mod tests;
