//! llama.cpp's download cache (`llama-server -hf`, the Llama app): GGUF files directly in the
//! folder, named `<org>_<repo>_<file>.gguf`, each with an ETag sidecar; one still downloading
//! ends in `.downloadInProgress`. Ids: `llamacpp:<file name without .gguf>`. Its folder is
//! `LLAMA_CACHE`, else `~/Library/Caches/llama.cpp` on macOS and `~/.cache/llama.cpp` elsewhere.
//! Newer llama.cpp versions can keep a Hugging Face-style cache there too, which
//! `hf_cache` reads.

use std::path::Path;

use super::files::{entries, gguf_models};
use super::{hf_cache, inside, Found};

pub const PREFIX: &str = "llamacpp:";

pub fn scan(cache: &Path) -> Vec<Found> {
    let Ok(root) = cache.canonicalize() else {
        return Vec::new();
    };
    let mut found: Vec<Found> = gguf_models(&entries(&root))
        .into_iter()
        .filter_map(|model| {
            let path = inside(&model.path, &root)?;
            let stem = model.name.strip_suffix(".gguf")?;
            Some(Found {
                id: format!("{PREFIX}{stem}"),
                path,
                size: model.size,
            })
        })
        .collect();
    for mut model in hf_cache::scan(&root) {
        model.id = model.id.replacen(hf_cache::PREFIX, PREFIX, 1);
        found.push(model);
    }
    found
}
