//! The Hugging Face cache, as huggingface_hub (and the Llama app, mlx-lm, LM Studio's hub
//! downloads) lay it out: `<hub>/models--<org>--<name>/` with `refs/main` naming a commit and
//! `snapshots/<commit>/` holding the repo's files as symlinks into the repo's `blobs/`. A blob
//! still downloading is `blobs/<etag>.incomplete` with no link yet, so it is never seen.
//!
//! A repo's models are those of the snapshot `refs/main` names (else the newest one): each GGUF
//! model in it or one folder down (quantizations are often in folders), as
//! `hf:<org>/<name>/<path in the repo>`, and the snapshot itself when it is an MLX folder, as
//! `hf:<org>/<name>`.

use std::path::{Path, PathBuf};

use super::files::{entries, gguf_models};
use super::{inside, Found};
use crate::models::catalog::is_model_folder;

pub const PREFIX: &str = "hf:";

pub fn scan(hub: &Path) -> Vec<Found> {
    let Ok(root) = hub.canonicalize() else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for repo_dir in entries(&root) {
        let Some(repo) = repo_id(&repo_dir) else {
            continue;
        };
        let Some(snapshot) = snapshot(&repo_dir) else {
            continue;
        };
        if is_model_folder(&snapshot) {
            if let Some(folder) = Found::folder(format!("{PREFIX}{repo}"), &snapshot, &root) {
                found.push(folder);
            }
        }
        let mut folders = vec![(snapshot.clone(), String::new())];
        for sub in entries(&snapshot).into_iter().filter(|p| p.is_dir()) {
            if let Some(name) = sub.file_name().and_then(|n| n.to_str()) {
                let prefix = format!("{name}/");
                folders.push((sub.clone(), prefix));
            }
        }
        for (folder, prefix) in folders {
            for model in gguf_models(&entries(&folder)) {
                let Some(path) = inside(&model.path, &root) else {
                    continue;
                };
                found.push(Found {
                    id: format!("{PREFIX}{repo}/{prefix}{}", model.name),
                    path,
                    size: model.size,
                });
            }
        }
    }
    found
}

/// `models--bartowski--Llama-3.2-1B-Instruct-GGUF` → `bartowski/Llama-3.2-1B-Instruct-GGUF`;
/// datasets and spaces are not models.
fn repo_id(dir: &Path) -> Option<String> {
    let name = dir.file_name()?.to_str()?;
    let rest = name.strip_prefix("models--")?;
    if rest.is_empty() {
        return None;
    }
    Some(rest.split("--").collect::<Vec<_>>().join("/"))
}

/// The snapshot `refs/main` names, else the most recently changed one.
fn snapshot(repo_dir: &Path) -> Option<PathBuf> {
    let snapshots = repo_dir.join("snapshots");
    if let Ok(commit) = std::fs::read_to_string(repo_dir.join("refs").join("main")) {
        let commit = commit.trim();
        let named = snapshots.join(commit);
        if !commit.is_empty() && !commit.contains(['/', '\\']) && named.is_dir() {
            return Some(named);
        }
    }
    entries(&snapshots)
        .into_iter()
        .filter(|p| p.is_dir())
        .max_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_ids() {
        let id = |name: &str| repo_id(Path::new(name));
        assert_eq!(
            id("models--bartowski--Llama-3.2-1B-Instruct-GGUF").as_deref(),
            Some("bartowski/Llama-3.2-1B-Instruct-GGUF")
        );
        assert_eq!(id("models--gpt2").as_deref(), Some("gpt2"));
        assert_eq!(id("datasets--squad"), None);
        assert_eq!(id(".locks"), None);
    }
}
