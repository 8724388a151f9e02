//! LM Studio's models folder: `<models>/<publisher>/<repo>/` holding GGUF files, or an MLX
//! folder (config.json and safetensors). Ids: `lmstudio:<publisher>/<repo>/<file>` and
//! `lmstudio:<publisher>/<repo>`. Its folder is `~/.lmstudio/models` (older versions:
//! `~/.cache/lm-studio/models`), or the one its settings name (`downloadsFolder`).

use std::path::{Path, PathBuf};

use super::files::{entries, gguf_models};
use super::{inside, Found};
use crate::models::catalog::is_model_folder;

pub const PREFIX: &str = "lmstudio:";

pub fn scan(models: &Path) -> Vec<Found> {
    let Ok(root) = models.canonicalize() else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for publisher in entries(&root).into_iter().filter(|p| p.is_dir()) {
        let Some(publisher_name) = name(&publisher) else {
            continue;
        };
        for repo in entries(&publisher).into_iter().filter(|p| p.is_dir()) {
            let Some(repo_name) = name(&repo) else {
                continue;
            };
            let id = format!("{PREFIX}{publisher_name}/{repo_name}");
            if is_model_folder(&repo) {
                found.extend(Found::folder(id.clone(), &repo, &root));
            }
            for model in gguf_models(&entries(&repo)) {
                if let Some(path) = inside(&model.path, &root) {
                    found.push(Found {
                        id: format!("{id}/{}", model.name),
                        path,
                        size: model.size,
                    });
                }
            }
        }
    }
    found
}

/// A folder's name, unless hidden (LM Studio keeps its own state in dot folders).
fn name(path: &Path) -> Option<&str> {
    path.file_name()?.to_str().filter(|n| !n.starts_with('.'))
}

/// Where LM Studio keeps its models under `home`: the folder its settings name, else the
/// current default, else the older one.
pub fn locate(home: &Path) -> Option<PathBuf> {
    let settings = home.join(".lmstudio").join("settings.json");
    let configured = std::fs::read_to_string(settings)
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|v| v.get("downloadsFolder")?.as_str().map(PathBuf::from));
    configured
        .into_iter()
        .chain([
            home.join(".lmstudio").join("models"),
            home.join(".cache").join("lm-studio").join("models"),
        ])
        .find(|p| p.is_dir())
}
