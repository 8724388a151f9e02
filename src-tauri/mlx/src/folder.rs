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

/// What the folder's weight file headers tell before a load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeightsSummary {
    /// Bytes of tensor data.
    pub bytes: u64,
    /// Bytes of one activation element: the widest float type among the norms and the
    /// embedding's output (MLX promotes to it, and the KV cache holds it). GGUF-converted
    /// folders keep their norms in f32, mlx-community's in 16 bits.
    pub activation_bytes: u64,
}

/// The folder's weights from their headers alone: a safetensors file starts with the length of
/// a JSON header that gives each tensor's dtype and byte range.
pub fn summary(folder: &Path) -> Result<WeightsSummary, String> {
    let files = weight_files(folder);
    if files.is_empty() {
        return Err("the folder has no .safetensors weights".into());
    }
    let mut total = WeightsSummary {
        bytes: 0,
        activation_bytes: 0,
    };
    for file in files {
        let part = header_summary(&file)?;
        total.bytes = total.bytes.saturating_add(part.bytes);
        total.activation_bytes = total.activation_bytes.max(part.activation_bytes);
    }
    if total.activation_bytes == 0 {
        total.activation_bytes = 2;
    }
    Ok(total)
}

/// Whether a tensor's dtype sets the activations' (see [`WeightsSummary::activation_bytes`]).
fn sets_activation_type(name: &str) -> bool {
    name.ends_with("norm.weight")
        || name == "model.embed_tokens.scales"
        || name == "model.embed_tokens.weight"
}

fn float_bytes(dtype: &str) -> u64 {
    match dtype {
        "F32" => 4,
        "F16" | "BF16" => 2,
        _ => 0,
    }
}

/// Headers larger than this are not safetensors headers (the format caps them at 100 MB).
const MAX_HEADER: u64 = 100 << 20;

fn header_summary(file: &Path) -> Result<WeightsSummary, String> {
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
    let mut activation_bytes = 0;
    for (tensor, info) in header.iter().filter(|(k, _)| *k != "__metadata__") {
        if sets_activation_type(tensor) {
            let dtype = info.get("dtype").and_then(|d| d.as_str()).unwrap_or("");
            activation_bytes = activation_bytes.max(float_bytes(dtype));
        }
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
    Ok(WeightsSummary {
        bytes: total,
        activation_bytes,
    })
}

/// Every tensor of the folder's weight files, by name. MLX reads them into its own memory.
pub fn load_weights(folder: &Path) -> Result<HashMap<String, Array>, String> {
    let mut weights = HashMap::new();
    for file in weight_files(folder) {
        // A damaged file fails here with MLX's own message; checked first for a clearer one.
        header_summary(&file)?;
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
        let header = r#"{"__metadata__":{"format":"mlx"},"model.norm.weight":{"dtype":"F16","shape":[4],"data_offsets":[0,8]},"b":{"dtype":"U32","shape":[2],"data_offsets":[8,16]}}"#;
        write_safetensors(&dir.path().join("model.safetensors"), header, 16);
        assert!(is_model_folder(dir.path()));
        let found = summary(dir.path()).expect("summary");
        assert_eq!((found.bytes, found.activation_bytes), (16, 2));
        // Norms in f32 (a GGUF's, converted) make the activations f32.
        let wide = header.replace("\"F16\"", "\"F32\"");
        write_safetensors(&dir.path().join("model.safetensors"), &wide, 16);
        assert_eq!(summary(dir.path()).map(|s| s.activation_bytes), Ok(4));
        write_safetensors(&dir.path().join("model.safetensors"), header, 10);
        let err = summary(dir.path()).unwrap_err();
        assert!(err.contains("truncated"), "{err}");
        std::fs::write(dir.path().join("model.safetensors"), [1, 2, 3]).expect("write");
        assert!(summary(dir.path()).unwrap_err().contains("too short"));
    }

    #[test]
    fn a_folder_without_weights_or_config_is_not_a_model() {
        let dir = tempfile::tempdir().expect("tmp");
        assert!(!is_model_folder(dir.path()));
        std::fs::write(dir.path().join("config.json"), "{}").expect("write");
        assert!(!is_model_folder(dir.path()));
    }
}
