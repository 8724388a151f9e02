//! A GGUF file served by MLX, when the user chooses MLX for it (`engines` in the settings).
//!
//! MLX reads GGUF itself (mlx-c's `mlx_load_gguf`): Q4_0, Q4_1 and Q8_0 tensors stay quantized
//! as MLX's affine groups of 32, other quantizations are expanded to 16 bits. This module maps
//! llama.cpp's tensor names to the Hugging Face ones the model code uses, builds the config from
//! the header, and the tokenizer from the file's vocabulary and merges. GGUF keeps Llama's Q/K
//! rows in llama.cpp's interleaved order, so RoPE runs in the traditional layout.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use mlx_rs::io::GgufFile;
use mlx_rs::Array;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, Tokenizer};

use headroom_core::engine::template::ChatTemplate;
use headroom_core::models::gguf::read_summary;

use crate::config::{ModelConfig, Quantization};
use crate::llama::Llama;
use crate::tokenizer::{TextFormat, CHATML};

/// llama.cpp's names of a layer's tensors, and Hugging Face's.
const LAYER_NAMES: &[(&str, &str)] = &[
    ("attn_q", "self_attn.q_proj"),
    ("attn_k", "self_attn.k_proj"),
    ("attn_v", "self_attn.v_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
    ("attn_norm", "input_layernorm"),
    ("ffn_norm", "post_attention_layernorm"),
];

/// GGUF token type of control tokens (`<|im_end|>`): matched whole, never split.
const CONTROL: i32 = 3;

/// The config and tensor bytes, from the header alone (as the llama.cpp engine reads it).
pub fn estimate(path: &Path) -> Result<(ModelConfig, u64), String> {
    // Tensor sizes are left to MLX's own reader at load; the header gives the shape.
    let s = read_summary(path, |_| None).map_err(|e| e.to_string())?;
    let missing = |what: &str| format!("the GGUF header has no {what}");
    let heads = s.head_count.ok_or_else(|| missing("head_count"))?;
    let config = ModelConfig {
        model_type: s.architecture.clone(),
        hidden_size: int(s
            .embedding_length
            .ok_or_else(|| missing("embedding_length"))?),
        intermediate_size: int(s
            .feed_forward_length
            .ok_or_else(|| missing("feed_forward_length"))?),
        num_hidden_layers: int(s.block_count.ok_or_else(|| missing("block_count"))?),
        num_attention_heads: int(heads),
        num_key_value_heads: s
            .head_count_kv
            .as_ref()
            .and_then(|kv| kv.iter().max().copied())
            .map(int),
        head_dim: s.key_length.map(int),
        rms_norm_eps: 1e-5,
        rope_theta: 10_000.0,
        rope_traditional: true,
        vocab_size: int(s.vocab_size.ok_or_else(|| missing("vocabulary"))?),
        tie_word_embeddings: false,
        max_position_embeddings: s.context_length,
        quantization: None,
    };
    config.check()?;
    Ok((config, s.tensor_data_bytes))
}

fn int(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

/// Loads the file through MLX's GGUF reader: the model and its text format.
pub fn load(path: &Path) -> Result<(Llama, TextFormat), String> {
    let (mut config, _) = estimate(path)?;
    let file =
        GgufFile::load(path).map_err(|e| format!("MLX could not read the GGUF file: {e}"))?;
    let number = |key: &str| -> Option<f32> {
        let value = file.get_metadata_array(key).ok()??;
        value.try_item_cast::<f32>().ok()
    };
    let arch = &config.model_type;
    if let Some(eps) = number(&format!("{arch}.attention.layer_norm_rms_epsilon")) {
        config.rms_norm_eps = eps;
    }
    if let Some(theta) = number(&format!("{arch}.rope.freq_base")) {
        config.rope_theta = theta;
    }
    let mut weights = HashMap::new();
    for (name, array) in file.arrays().map_err(|e| e.to_string())? {
        weights.insert(hf_name(&name)?, array);
    }
    config.tie_word_embeddings = !weights.contains_key("lm_head.weight");
    config.quantization = quantization(&weights);
    let text = text_format(&file, &config)?;
    drop(file);
    Ok((Llama::from_weights(config, weights)?, text))
}

fn hf_name(name: &str) -> Result<String, String> {
    let (base, part) = name
        .rsplit_once('.')
        .ok_or_else(|| format!("unexpected tensor name '{name}'"))?;
    let mapped = match base {
        "token_embd" => "model.embed_tokens".to_string(),
        "output_norm" => "model.norm".to_string(),
        "output" => "lm_head".to_string(),
        _ => {
            let rest = base.strip_prefix("blk.");
            let (layer, kind) = rest
                .and_then(|r| r.split_once('.'))
                .ok_or_else(|| format!("unexpected tensor '{name}'"))?;
            let (_, hf) = LAYER_NAMES
                .iter()
                .find(|(gguf, _)| *gguf == kind)
                .ok_or_else(|| {
                    format!("tensor '{name}' is not part of a Llama model this engine runs")
                })?;
            format!("model.layers.{layer}.{hf}")
        }
    };
    Ok(format!("{mapped}.{part}"))
}

/// MLX's quantization of each quantized module: groups of 32, bits from the packed width.
fn quantization(weights: &HashMap<String, Array>) -> Option<Quantization> {
    let mut modules = BTreeMap::new();
    for (name, scales) in weights {
        let Some(module) = name.strip_suffix(".scales") else {
            continue;
        };
        let Some(weight) = weights.get(&format!("{module}.weight")) else {
            continue;
        };
        let (packed, groups) = (weight.shape()[1], scales.shape()[1]);
        if groups > 0 {
            modules.insert(
                module.to_string(),
                serde_json::json!({"group_size": 32, "bits": packed / groups}),
            );
        }
    }
    (!modules.is_empty()).then_some(Quantization {
        group_size: 32,
        bits: 4,
        modules,
    })
}

/// The tokenizer from the file's vocabulary (byte-level BPE, as GPT-2 and SmolLM write it).
fn text_format(file: &GgufFile, config: &ModelConfig) -> Result<TextFormat, String> {
    let strings = |key: &str| file.get_metadata_strings(key).ok().flatten();
    let model = file
        .get_metadata_string("tokenizer.ggml.model")
        .ok()
        .flatten()
        .unwrap_or_default();
    let pre = file
        .get_metadata_string("tokenizer.ggml.pre")
        .ok()
        .flatten()
        .unwrap_or_default();
    if model != "gpt2" || !["smollm", "gpt2", "default"].contains(&pre.as_str()) {
        return Err(format!(
            "the MLX engine reads byte-level BPE tokenizers (gpt2, smollm) from GGUF files; this one is '{model}'/'{pre}': serve it with llama.cpp"
        ));
    }
    let tokens = strings("tokenizer.ggml.tokens").ok_or("the GGUF file has no vocabulary")?;
    let merges: Vec<(String, String)> = strings("tokenizer.ggml.merges")
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
        })
        .collect();
    let vocab: tokenizers::models::bpe::Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| format!("the GGUF vocabulary: {e}"))?;
    let mut tokenizer = Tokenizer::new(bpe);
    let byte_level = ByteLevel::new(false, true, true);
    let pre_tokenizer = if pre == "smollm" {
        // llama.cpp's "smollm": single digits first.
        PreTokenizerWrapper::Sequence(Sequence::new(vec![
            PreTokenizerWrapper::Digits(Digits::new(true)),
            PreTokenizerWrapper::ByteLevel(byte_level),
        ]))
    } else {
        PreTokenizerWrapper::ByteLevel(byte_level)
    };
    tokenizer.with_pre_tokenizer(Some(pre_tokenizer));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
    let types: Vec<i32> = file
        .get_metadata_array("tokenizer.ggml.token_type")
        .ok()
        .flatten()
        .and_then(|a| a.as_dtype(mlx_rs::Dtype::Int32).ok())
        .map(|a| a.as_slice::<i32>().to_vec())
        .unwrap_or_default();
    let special: Vec<AddedToken> = types
        .iter()
        .enumerate()
        .filter(|(_, t)| **t == CONTROL)
        .filter_map(|(i, _)| tokens.get(i))
        .map(|t| AddedToken::from(t.clone(), true))
        .collect();
    tokenizer.add_special_tokens(&special);
    let id = |key: &str| -> Option<u32> {
        let v = file.get_metadata_array(key).ok()??;
        v.try_item_cast::<u32>().ok()
    };
    let text_of = |i: Option<u32>| i.and_then(|i| tokens.get(i as usize)).cloned();
    let bos = text_of(id("tokenizer.ggml.bos_token_id"));
    let eos_id =
        id("tokenizer.ggml.eos_token_id").ok_or("the GGUF file names no end-of-turn token")?;
    let eos = text_of(Some(eos_id)).unwrap_or_default();
    let template_source = file
        .get_metadata_string("tokenizer.chat_template")
        .ok()
        .flatten();
    let template = ChatTemplate::new(
        template_source.as_deref().unwrap_or(CHATML),
        bos.as_deref().unwrap_or_default(),
        &eos,
    )
    .map_err(|e| format!("chat template: {e}"))?;
    if tokens.len() != config.vocab_size as usize {
        tracing::debug!(
            tokens = tokens.len(),
            vocab = config.vocab_size,
            "vocabulary sizes differ"
        );
    }
    Ok(TextFormat {
        tokenizer,
        template,
        add_bos: id("tokenizer.ggml.add_bos_token").is_some_and(|v| v != 0),
        bos,
        eos_ids: vec![eos_id],
        template_source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama_cpp_tensor_names_map_to_hugging_face_ones() {
        assert_eq!(
            hf_name("token_embd.scales").as_deref(),
            Ok("model.embed_tokens.scales")
        );
        assert_eq!(
            hf_name("blk.12.attn_output.biases").as_deref(),
            Ok("model.layers.12.self_attn.o_proj.biases")
        );
        assert_eq!(hf_name("output.weight").as_deref(), Ok("lm_head.weight"));
        assert!(hf_name("blk.0.ssm_conv1d.weight")
            .unwrap_err()
            .contains("Llama"));
    }
}
