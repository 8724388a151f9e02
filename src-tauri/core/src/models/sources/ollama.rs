//! Ollama's store: `<models>/manifests/<registry>/<namespace>/<name>/<tag>`, each an OCI
//! manifest whose layers name blobs in `<models>/blobs/sha256-<hex>`; the layer of media type
//! `application/vnd.ollama.image.model` is the GGUF. Names are as Ollama shows them:
//! `llama3.2:3b` for its own library, `<namespace>/<name>:<tag>` for others on its registry,
//! `<registry>/<namespace>/<name>:<tag>` elsewhere (`hf.co/…`). Ids: `ollama:<name>`. Its folder
//! is `OLLAMA_MODELS`, else `~/.ollama/models`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::files::entries;
use super::{inside, Found};

pub const PREFIX: &str = "ollama:";
const REGISTRY: &str = "registry.ollama.ai";
const LIBRARY: &str = "library";
const MODEL_LAYER: &str = "application/vnd.ollama.image.model";

#[derive(Debug, Deserialize)]
pub struct Manifest {
    pub layers: Vec<Layer>,
}

#[derive(Debug, Deserialize)]
pub struct Layer {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: String,
}

impl Manifest {
    /// The model layer's blob file name: `sha256:<hex>` → `sha256-<hex>`, if the digest is
    /// one (64 hex digits, nothing that could leave the blobs folder).
    pub fn model_blob(&self) -> Option<String> {
        let layer = self.layers.iter().find(|l| l.media_type == MODEL_LAYER)?;
        let hex = layer.digest.strip_prefix("sha256:")?;
        (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| format!("sha256-{hex}"))
    }
}

pub fn scan(models: &Path) -> Vec<Found> {
    let Ok(root) = models.canonicalize() else {
        return Vec::new();
    };
    let blobs = root.join("blobs");
    let mut found = Vec::new();
    for registry in dirs(&root.join("manifests")) {
        for namespace in dirs(&registry) {
            for model in dirs(&namespace) {
                for tag in entries(&model).into_iter().filter(|p| p.is_file()) {
                    if let Some(entry) = read(&tag, &blobs, &root) {
                        found.push(entry);
                    }
                }
            }
        }
    }
    found
}

/// One manifest: its name from where it lies, its GGUF from its model layer.
fn read(manifest: &Path, blobs: &Path, root: &Path) -> Option<Found> {
    let name = name_of(manifest)?;
    let text = std::fs::read_to_string(manifest).ok()?;
    let parsed: Manifest = serde_json::from_str(&text)
        .map_err(|e| tracing::debug!(manifest = %manifest.display(), "not an Ollama manifest: {e}"))
        .ok()?;
    let blob = blobs.join(parsed.model_blob()?);
    let path = inside(&blob, root)?;
    let size = std::fs::metadata(&path).ok().filter(|m| m.is_file())?.len();
    Some(Found {
        id: format!("{PREFIX}{name}"),
        path,
        size,
    })
}

/// `manifests/registry.ollama.ai/library/llama3.2/3b` → `llama3.2:3b`.
fn name_of(manifest: &Path) -> Option<String> {
    let part =
        |p: Option<&Path>| -> Option<String> { p?.file_name()?.to_str().map(str::to_string) };
    let tag = part(Some(manifest))?;
    let model_dir = manifest.parent();
    let model = part(model_dir)?;
    let namespace_dir = model_dir.and_then(Path::parent);
    let namespace = part(namespace_dir)?;
    let registry = part(namespace_dir.and_then(Path::parent))?;
    if [&tag, &model, &namespace, &registry]
        .iter()
        .any(|p| p.starts_with('.'))
    {
        return None;
    }
    Some(match (registry.as_str(), namespace.as_str()) {
        (REGISTRY, LIBRARY) => format!("{model}:{tag}"),
        (REGISTRY, _) => format!("{namespace}/{model}:{tag}"),
        _ => format!("{registry}/{namespace}/{model}:{tag}"),
    })
}

fn dirs(folder: &Path) -> Vec<PathBuf> {
    entries(folder).into_iter().filter(|p| p.is_dir()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of a real manifest (`ollama pull llama3.2:1b`, digests shortened to fit).
    const MANIFEST: &str = r#"{
      "schemaVersion": 2,
      "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
      "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                 "digest": "sha256:4f659a1e86d7f5a33c389f7991e7224b7ee6ad0358b53437d54c02d2e1b1118d", "size": 485},
      "layers": [
        {"mediaType": "application/vnd.ollama.image.model",
         "digest": "sha256:74701a8c35f6c8d9a4b91f3f3497643001d63e0c7a84e085bed452548fa88d45", "size": 1321082688},
        {"mediaType": "application/vnd.ollama.image.template",
         "digest": "sha256:966de95ca8a62200913e3f8bfbf84c8494536f1b94b49166851e76644e966396", "size": 1429},
        {"mediaType": "application/vnd.ollama.image.license",
         "digest": "sha256:fcc5a6bec9daf9b561a68827b67ab6088e1dba9d1fa2a50d7bbcc8384e0a265d", "size": 7711},
        {"mediaType": "application/vnd.ollama.image.params",
         "digest": "sha256:a70ff7e570d97baaf4e62ac6e6ad9975e04caa6d900d3742d37698494479e0cd", "size": 96}
      ]
    }"#;

    #[test]
    fn the_model_layer_names_the_blob() {
        let manifest: Manifest = serde_json::from_str(MANIFEST).expect("manifest");
        assert_eq!(
            manifest.model_blob().as_deref(),
            Some("sha256-74701a8c35f6c8d9a4b91f3f3497643001d63e0c7a84e085bed452548fa88d45")
        );
        // A digest that could name something else is not followed.
        let bad = MANIFEST.replace(
            "sha256:74701a8c35f6c8d9a4b91f3f3497643001d63e0c7a84e085bed452548fa88d45",
            "sha256:../../../etc/passwd",
        );
        let manifest: Manifest = serde_json::from_str(&bad).expect("manifest");
        assert_eq!(manifest.model_blob(), None);
    }

    #[test]
    fn names_as_ollama_shows_them() {
        let name = |p: &str| name_of(Path::new(p));
        assert_eq!(
            name("m/manifests/registry.ollama.ai/library/llama3.2/3b").as_deref(),
            Some("llama3.2:3b")
        );
        assert_eq!(
            name("m/manifests/registry.ollama.ai/jmorgan/tiny/latest").as_deref(),
            Some("jmorgan/tiny:latest")
        );
        assert_eq!(
            name("m/manifests/hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF/Q4_K_M").as_deref(),
            Some("hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M")
        );
    }
}
