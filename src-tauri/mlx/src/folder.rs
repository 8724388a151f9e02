//! An MLX model folder as mlx-community publishes it: `config.json`, one or more
//! `*.safetensors` (MLX-quantized or not), `tokenizer.json`, `tokenizer_config.json`.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use mlx_rs::Array;

use crate::config::ModelConfig;

pub use headroom_core::models::catalog::is_model_folder;

/// The folder's weight files, sorted (`model-00001-of-00002.safetensors`, …).
pub fn weight_files(folder: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(folder)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "safetensors") && p.is_file())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

pub fn read_config(folder: &Path) -> Result<ModelConfig, String> {
    let text = std::fs::read_to_string(folder.join("config.json"))
        .map_err(|e| format!("config.json: {e}"))?;
    ModelConfig::parse(&text)
}

/// Bytes of tensor data in the folder's weight files, from their headers alone: a safetensors
/// file starts with the length of a JSON header that gives each tensor's byte range.
pub fn tensor_bytes(folder: &Path) -> Result<u64, String> {
    let files = weight_files(folder);
    if files.is_empty() {
        return Err("the folder has no .safetensors weights".into());
    }
    let mut total = 0u64;
    for file in files {
        total = total.saturating_add(header_tensor_bytes(&file)?);
    }
    Ok(total)
}

/// Headers larger than this are not safetensors headers (the format caps them at 100 MB).
const MAX_HEADER: u64 = 100 << 20;

fn header_tensor_bytes(file: &Path) -> Result<u64, String> {
    let name = file.file_name().unwrap_or_default().to_string_lossy();
    let bad = |why: String| format!("{name}: {why}");
    let mut f = std::fs::File::open(file).map_err(|e| bad(e.to_string()))?;
    let file_len = f.metadata().map_err(|e| bad(e.to_string()))?.len();
    let mut len = [0u8; 8];
    f.read_exact(&mut len)
        .map_err(|_| bad("too short for a safetensors header; truncated?".into()))?;
    let len = u64::from_le_bytes(len);
    if len > MAX_HEADER || len + 8 > file_len {
        return Err(bad(format!(
            "header length {len} does not fit the file ({file_len} bytes); truncated or not safetensors"
        )));
    }
    let mut header = vec![0u8; len as usize];
    f.read_exact(&mut header).map_err(|e| bad(e.to_string()))?;
    let header: HashMap<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|e| bad(format!("header is not JSON: {e}")))?;
    let mut end = 0u64;
    let mut total = 0u64;
    for (tensor, info) in header.iter().filter(|(k, _)| *k != "__metadata__") {
        let range = info
            .get("data_offsets")
            .and_then(|o| Some((o.get(0)?.as_u64()?, o.get(1)?.as_u64()?)))
            .ok_or_else(|| bad(format!("tensor '{tensor}' has no data_offsets")))?;
        if range.1 < range.0 {
            return Err(bad(format!("tensor '{tensor}' has a negative size")));
        }
        total += range.1 - range.0;
        end = end.max(range.1);
    }
    if 8 + len + end > file_len {
        return Err(bad(format!(
            "the tensors need {} bytes but the file has {file_len}; truncated",
            8 + len + end
        )));
    }
    Ok(total)
}

/// Every tensor of the folder's weight files, by name. MLX reads them into its own memory.
pub fn load_weights(folder: &Path) -> Result<HashMap<String, Array>, String> {
    let mut weights = HashMap::new();
    for file in weight_files(folder) {
        // A damaged file fails here with MLX's own message; checked first for a clearer one.
        header_tensor_bytes(&file)?;
        let arrays = Array::load_safetensors(&file).map_err(|e| {
            format!(
                "{}: MLX could not read it ({e})",
                file.file_name().unwrap_or_default().to_string_lossy()
            )
        })?;
        weights.extend(arrays);
    }
    Ok(weights)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_safetensors(path: &Path, header: &str, data: usize) {
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend(std::iter::repeat_n(0u8, data));
        std::fs::write(path, bytes).expect("write");
    }

    #[test]
    fn sums_tensor_bytes_from_the_headers_and_refuses_truncated_files() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(dir.path().join("config.json"), "{}").expect("write");
        let header = r#"{"__metadata__":{"format":"mlx"},"a":{"dtype":"F16","shape":[4],"data_offsets":[0,8]},"b":{"dtype":"U32","shape":[2],"data_offsets":[8,16]}}"#;
        write_safetensors(&dir.path().join("model.safetensors"), header, 16);
        assert!(is_model_folder(dir.path()));
        assert_eq!(tensor_bytes(dir.path()), Ok(16));
        write_safetensors(&dir.path().join("model.safetensors"), header, 10);
        let err = tensor_bytes(dir.path()).unwrap_err();
        assert!(err.contains("truncated"), "{err}");
        std::fs::write(dir.path().join("model.safetensors"), [1, 2, 3]).expect("write");
        assert!(tensor_bytes(dir.path()).unwrap_err().contains("too short"));
    }

    #[test]
    fn a_folder_without_weights_or_config_is_not_a_model() {
        let dir = tempfile::tempdir().expect("tmp");
        assert!(!is_model_folder(dir.path()));
        std::fs::write(dir.path().join("config.json"), "{}").expect("write");
        assert!(!is_model_folder(dir.path()));
    }
}
