//! Which files in another app's folder are models: GGUF files (a split model's parts as one,
//! its first part standing for it; vision projectors and partial downloads skipped) and MLX
//! folders (`catalog::is_model_folder`).

use std::path::{Path, PathBuf};

/// A GGUF model found in a folder: the file to load (a split model's first part), the name it
/// goes by (a split model's without the part numbers) and its size (all parts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GgufModel {
    pub path: PathBuf,
    pub name: String,
    pub size: u64,
}

/// The GGUF models among `files` (paths in one folder). Files are followed through symlinks
/// for their size; one that does not resolve (a blob still downloading) is skipped.
pub fn gguf_models(files: &[PathBuf]) -> Vec<GgufModel> {
    let mut models = Vec::new();
    for file in files {
        let Some(name) = file.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if !name.ends_with(".gguf") || is_projector(name) {
            continue;
        }
        let Ok(meta) = std::fs::metadata(file) else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        match split_part(name) {
            // A split model: its first part stands for it, when every part is there.
            Some((stem, 1, count)) => {
                let parts: Vec<PathBuf> = (1..=count)
                    .map(|n| file.with_file_name(format!("{stem}-{n:05}-of-{count:05}.gguf")))
                    .collect();
                let sizes: Option<Vec<u64>> = parts
                    .iter()
                    .map(|p| {
                        std::fs::metadata(p)
                            .ok()
                            .filter(|m| m.is_file())
                            .map(|m| m.len())
                    })
                    .collect();
                if let Some(sizes) = sizes {
                    models.push(GgufModel {
                        path: file.clone(),
                        name: format!("{stem}.gguf"),
                        size: sizes.iter().sum(),
                    });
                }
            }
            Some(_) => {}
            None => models.push(GgufModel {
                path: file.clone(),
                name: name.to_string(),
                size: meta.len(),
            }),
        }
    }
    models.sort_by(|a, b| a.name.cmp(&b.name));
    models
}

/// `name-00002-of-00003.gguf` → ("name", 2, 3).
fn split_part(name: &str) -> Option<(&str, u32, u32)> {
    let rest = name.strip_suffix(".gguf")?;
    let (rest, count) = rest.rsplit_once("-of-")?;
    let (stem, part) = rest.rsplit_once('-')?;
    let digits = |s: &str| s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(part) || !digits(count) {
        return None;
    }
    let (part, count) = (part.parse().ok()?, count.parse().ok()?);
    (part >= 1 && part <= count).then_some((stem, part, count))
}

/// Vision projectors ship beside the model they belong to; alone they are not a model.
fn is_projector(name: &str) -> bool {
    name.to_ascii_lowercase().starts_with("mmproj")
}

/// The entries of `folder`, sorted; none if it cannot be read.
pub fn entries(folder: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(folder)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path, bytes: usize) {
        std::fs::write(path, vec![0u8; bytes]).expect("write");
    }

    #[test]
    fn split_models_count_once_and_projectors_and_partials_not_at_all() {
        let dir = tempfile::tempdir().expect("tmp");
        let d = dir.path();
        touch(&d.join("small.gguf"), 10);
        touch(&d.join("big-00001-of-00003.gguf"), 100);
        touch(&d.join("big-00002-of-00003.gguf"), 100);
        touch(&d.join("big-00003-of-00003.gguf"), 50);
        // Two of three parts: still downloading.
        touch(&d.join("half-00001-of-00003.gguf"), 100);
        touch(&d.join("half-00002-of-00003.gguf"), 100);
        touch(&d.join("mmproj-model-f16.gguf"), 10);
        touch(&d.join("partial.gguf.part"), 10);
        touch(&d.join("other.gguf.incomplete"), 10);
        let found = gguf_models(&entries(d));
        let names: Vec<(&str, u64)> = found.iter().map(|m| (m.name.as_str(), m.size)).collect();
        assert_eq!(names, [("big.gguf", 250), ("small.gguf", 10)]);
        assert_eq!(found[0].path, d.join("big-00001-of-00003.gguf"));
    }

    #[test]
    fn split_names() {
        assert_eq!(split_part("m-00001-of-00002.gguf"), Some(("m", 1, 2)));
        assert_eq!(split_part("a-b-00002-of-00002.gguf"), Some(("a-b", 2, 2)));
        assert_eq!(split_part("m-1-of-2.gguf"), None);
        assert_eq!(split_part("m-00003-of-00002.gguf"), None);
        assert_eq!(split_part("m.gguf"), None);
    }
}
