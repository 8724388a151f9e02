//! Where Headroom's pulled models came from: `<models>/.pulled.json`, model id → repo, file,
//! and the name an Ollama client pulled it by (`hf.co/org/repo:Q4_K_M`), so that client can go
//! on using that name. Written atomically when a pull ends well and when a model is deleted;
//! a record that cannot be read is treated as empty (the models themselves do not depend on
//! it).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where one pulled model came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    pub repo: String,
    /// The GGUF file; None for an MLX repo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The name an Ollama client pulled it by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ollama_name: Option<String>,
}

fn path(folder: &Path) -> PathBuf {
    folder.join(".pulled.json")
}

/// Every pulled model's origin, by id.
pub fn read(folder: &Path) -> BTreeMap<String, Origin> {
    std::fs::read(path(folder))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// Records (or, with None, forgets) the origin of model `id`.
pub fn set(folder: &Path, id: &str, origin: Option<Origin>) -> std::io::Result<()> {
    let mut all = read(folder);
    match origin {
        Some(origin) => {
            all.insert(id.to_string(), origin);
        }
        None => {
            if all.remove(id).is_none() {
                return Ok(());
            }
        }
    }
    let bytes = serde_json::to_vec_pretty(&all).map_err(std::io::Error::other)?;
    crate::config::write_atomically(&path(folder), &bytes)
}

/// The model an Ollama client pulled by `name`, if one was.
pub fn by_ollama_name(folder: &Path, name: &str) -> Option<String> {
    read(folder)
        .into_iter()
        .find(|(_, o)| o.ollama_name.as_deref() == Some(name))
        .map(|(id, _)| id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_kept_found_by_ollama_name_and_forgotten() {
        let dir = tempfile::tempdir().expect("tmp");
        assert!(read(dir.path()).is_empty());
        let origin = Origin {
            repo: "bartowski/SmolLM2-135M-Instruct-GGUF".into(),
            file: Some("SmolLM2-135M-Instruct-Q4_1.gguf".into()),
            ollama_name: Some("hf.co/bartowski/SmolLM2-135M-Instruct-GGUF:Q4_1".into()),
        };
        set(
            dir.path(),
            "SmolLM2-135M-Instruct-Q4_1",
            Some(origin.clone()),
        )
        .expect("set");
        assert_eq!(
            read(dir.path()).get("SmolLM2-135M-Instruct-Q4_1"),
            Some(&origin)
        );
        assert_eq!(
            by_ollama_name(
                dir.path(),
                "hf.co/bartowski/SmolLM2-135M-Instruct-GGUF:Q4_1"
            )
            .as_deref(),
            Some("SmolLM2-135M-Instruct-Q4_1")
        );
        set(dir.path(), "SmolLM2-135M-Instruct-Q4_1", None).expect("forget");
        assert!(read(dir.path()).is_empty());
        std::fs::write(dir.path().join(".pulled.json"), "{not json").expect("write");
        assert!(read(dir.path()).is_empty(), "a bad record reads as empty");
    }
}
