//! A model's `config.json`, as mlx-community's folders (and Hugging Face's) write it.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::cache::Storage;

/// The architectures this engine runs: Llama and the families that share its layers.
pub const ARCHITECTURES: &[&str] = &["llama", "mistral", "qwen2"];

/// The shape of a Llama-family model.
#[derive(Debug, Clone, Deserialize)]
pub struct ModelConfig {
    pub model_type: String,
    pub hidden_size: i32,
    pub intermediate_size: i32,
    pub num_hidden_layers: i32,
    pub num_attention_heads: i32,
    #[serde(default)]
    pub num_key_value_heads: Option<i32>,
    #[serde(default)]
    pub head_dim: Option<i32>,
    pub rms_norm_eps: f32,
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f32,
    /// llama.cpp's interleaved Q/K layout (weights taken from a GGUF) rather than Hugging
    /// Face's halves; mlx-lm reads the same key.
    #[serde(default)]
    pub rope_traditional: bool,
    pub vocab_size: i32,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default)]
    pub max_position_embeddings: Option<u32>,
    #[serde(default)]
    pub quantization: Option<Quantization>,
}

fn default_rope_theta() -> f32 {
    10_000.0
}

/// MLX's affine quantization: a default, and per-module exceptions (a Q4_1 GGUF keeps its
/// embedding at 8 bits).
#[derive(Debug, Clone, Deserialize)]
pub struct Quantization {
    pub group_size: i32,
    pub bits: i32,
    #[serde(flatten)]
    pub modules: BTreeMap<String, serde_json::Value>,
}

/// How one module's weights are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuantSpec {
    pub group_size: i32,
    pub bits: i32,
}

impl Quantization {
    /// The spec of `module` ("model.layers.0.self_attn.q_proj").
    pub fn spec(&self, module: &str) -> QuantSpec {
        let own = self.modules.get(module).and_then(|value| {
            Some(QuantSpec {
                group_size: i32::try_from(value.get("group_size")?.as_i64()?).ok()?,
                bits: i32::try_from(value.get("bits")?.as_i64()?).ok()?,
            })
        });
        own.unwrap_or(QuantSpec {
            group_size: self.group_size,
            bits: self.bits,
        })
    }
}

impl ModelConfig {
    pub fn parse(text: &str) -> Result<Self, String> {
        let config: Self = serde_json::from_str(text).map_err(|e| format!("config.json: {e}"))?;
        config.check()?;
        Ok(config)
    }

    /// Whether this engine can run a model of this shape.
    pub fn check(&self) -> Result<(), String> {
        if !ARCHITECTURES.contains(&self.model_type.as_str()) {
            return Err(format!(
                "model_type '{}' is not one this engine runs ({})",
                self.model_type,
                ARCHITECTURES.join(", ")
            ));
        }
        let positive = [
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.kv_heads()),
            ("head_dim", self.head_dim()),
            ("vocab_size", self.vocab_size),
        ];
        if let Some((name, value)) = positive.iter().find(|(_, v)| *v <= 0 || *v > 1 << 20) {
            return Err(format!("config.json: {name} = {value} is out of range"));
        }
        if self.num_attention_heads % self.kv_heads() != 0 {
            return Err(
                "config.json: num_attention_heads is not a multiple of num_key_value_heads".into(),
            );
        }
        Ok(())
    }

    pub fn kv_heads(&self) -> i32 {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    pub fn head_dim(&self) -> i32 {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// Bytes of K and V per token over all layers, stored as `storage` says, for activations
    /// of `element_bytes` each.
    pub fn kv_bytes_per_token(&self, storage: Storage, element_bytes: u64) -> u64 {
        let head = storage.bytes_per_head(u64::from(self.head_dim().unsigned_abs()), element_bytes);
        2 * head
            * u64::from(self.kv_heads().unsigned_abs())
            * u64::from(self.num_hidden_layers.unsigned_abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMOLLM2: &str = r#"{
        "model_type": "llama", "hidden_size": 576, "intermediate_size": 1536,
        "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
        "rms_norm_eps": 1e-5, "rope_theta": 100000.0, "rope_traditional": true,
        "vocab_size": 49152, "tie_word_embeddings": true,
        "quantization": {"group_size": 32, "bits": 4,
                         "model.embed_tokens": {"group_size": 32, "bits": 8}}
    }"#;

    #[test]
    fn reads_a_quantized_llama_config_with_per_module_bits() {
        let c = ModelConfig::parse(SMOLLM2).expect("parses");
        assert_eq!((c.head_dim(), c.kv_heads()), (64, 3));
        let q = c.quantization.clone().expect("quantized");
        assert_eq!(q.spec("model.embed_tokens").bits, 8);
        assert_eq!(q.spec("model.layers.0.mlp.up_proj").bits, 4);
        // 30 layers × (K + V) × 3 heads × 64 × 2 bytes.
        assert_eq!(c.kv_bytes_per_token(Storage::Plain, 2), 23_040);
        // 8 bits: 64 bytes and a 16-bit scale and bias per head of 64; 4 bits: 32 and the same.
        assert_eq!(
            c.kv_bytes_per_token(Storage::Quantized { bits: 8 }, 2),
            12_240
        );
        assert_eq!(
            c.kv_bytes_per_token(Storage::Quantized { bits: 4 }, 2),
            6_480
        );
    }

    #[test]
    fn refuses_other_architectures_and_absurd_shapes() {
        let gemma = SMOLLM2.replace("\"llama\"", "\"gemma3\"");
        assert!(ModelConfig::parse(&gemma).unwrap_err().contains("gemma3"));
        let zero = SMOLLM2.replace("\"num_hidden_layers\": 30", "\"num_hidden_layers\": 0");
        assert!(ModelConfig::parse(&zero)
            .unwrap_err()
            .contains("num_hidden_layers"));
        assert!(ModelConfig::parse("{").unwrap_err().contains("config.json"));
    }
}
