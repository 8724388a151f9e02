//! What a GGUF model will hold in memory once llama.cpp has loaded it, from the file's header
//! alone, before loading it: the pool admits or refuses a load on this figure.
//!
//! The KV-cache arithmetic follows llama.cpp (0.1.160's `llama-context.cpp` and
//! `llama-kv-cache-iswa.cpp`) exactly; the weights and compute parts carry terms that were
//! measured on the two test models (SmolLM2-135M Q4_1, Gemma 3 270M Q4_K_M) and are named
//! below, so a change in llama.cpp shows up as a failing estimate test rather than a silent 2×.

use headroom_core::engine::{Footprint, KvCacheType, LoadOptions};
use headroom_core::models::gguf::GgufSummary;

use crate::BATCH_TOKENS;

/// llama.cpp pads every KV stream (and the context) to a multiple of this many cells.
const KV_PAD: u64 = 256;
/// What llama.cpp allocates besides the tensors when it loads a model: the vocabulary (token
/// text, the text→id map and the piece cache, ~185 bytes a token) and load-time buffers
/// (~8 MiB). Measured as anonymous memory added by the load: 17.5 MB for SmolLM2's 49 152
/// tokens, 57 MB for Gemma 3's 262 144 (of which 13 MB are tensors repacked for AVX2 kernels).
const VOCAB_BYTES_PER_TOKEN: u64 = 185;
const LOAD_OVERHEAD: u64 = 8 << 20;
/// The context's own bookkeeping beside the KV cache and logits: 2.4–3.2 MB measured.
const CONTEXT_OVERHEAD: u64 = 3 << 20;
/// The resident part of the CPU compute buffer after a full batch measured 5.0× one batch's
/// FFN activation (tokens × n_ff × 4 bytes) on both test models: ggml-alloc keeps the gate,
/// the up projection, their product and two residual-stream tensors live at once. (llama.cpp
/// reserves far more, e.g. 525 MiB for Gemma 3's full-vocabulary logits, but a server that
/// asks for the last token's logits only never touches it.)
const COMPUTE_FFN_ACTIVATIONS: u64 = 5;

/// Sliding-window layer patterns llama.cpp hard-codes per architecture: every `n`th layer
/// attends to the full context, the others only to the window (`src/models/*.cpp`).
fn swa_pattern(architecture: &str) -> Option<u32> {
    match architecture {
        "gemma2" | "gpt-oss" => Some(2),
        "gemma3" | "gemma-embedding" => Some(6),
        "gemma3n" => Some(5),
        "cohere2" | "llama4" | "exaone4" | "olmo2" => Some(4),
        _ => None,
    }
}

/// The estimated footprint of `summary`'s model loaded with `options`.
pub fn estimate(summary: &GgufSummary, options: &LoadOptions) -> Footprint {
    let vocab = u64::from(summary.vocab_size.unwrap_or(0));
    let weights = summary
        .tensor_data_bytes
        .saturating_add(vocab.saturating_mul(VOCAB_BYTES_PER_TOKEN))
        .saturating_add(LOAD_OVERHEAD);

    let slots = u64::from(options.parallel.max(1));
    let per_slot = round_up(u64::from(options.context_per_slot.max(16)), KV_PAD);
    let ubatch = u64::from(BATCH_TOKENS).min(per_slot * slots);
    let kv = kv_cache_bytes(summary, options.kv_cache, per_slot, slots, ubatch)
        // The logits buffer: one row per sequence.
        .saturating_add(vocab.saturating_mul(slots).saturating_mul(4))
        .saturating_add(CONTEXT_OVERHEAD);

    let embd = u64::from(summary.embedding_length.unwrap_or(0));
    let ff = summary
        .feed_forward_length
        .map_or(embd.saturating_mul(4), u64::from);
    let compute = COMPUTE_FFN_ACTIVATIONS
        .saturating_mul(ubatch)
        .saturating_mul(ff)
        .saturating_mul(4);

    Footprint::new(weights, kv, compute)
}

/// K and V for every layer: one stream per slot of `per_slot` cells, sliding-window layers
/// only `window + ubatch` cells (llama.cpp's iSWA cache with `swa_full` off), each cell a row
/// of the cache type (whole blocks of 32 for the quantized ones).
fn kv_cache_bytes(
    summary: &GgufSummary,
    kind: KvCacheType,
    per_slot: u64,
    slots: u64,
    ubatch: u64,
) -> u64 {
    let layers = summary.block_count.unwrap_or(0);
    let heads = u64::from(summary.head_count.unwrap_or(1).max(1));
    let embd = u64::from(summary.embedding_length.unwrap_or(0));
    let head_dim = embd / heads;
    let key_dim = summary.key_length.map_or(head_dim, u64::from);
    let value_dim = summary.value_length.map_or(head_dim, u64::from);
    let kv_heads = summary.head_count_kv.as_deref().unwrap_or(&[]);
    let swa_cells = match (summary.sliding_window, swa_pattern(&summary.architecture)) {
        (Some(window), Some(_)) => {
            round_up(u64::from(window).saturating_add(ubatch), KV_PAD).min(per_slot)
        }
        _ => per_slot,
    };
    (0..layers)
        .map(|layer| {
            // A per-layer list gives each layer its own count; a single value is for all.
            let heads_kv = match kv_heads {
                [] => heads,
                [one] => u64::from(*one),
                many => many.get(layer as usize).map_or(heads, |h| u64::from(*h)),
            };
            let is_swa = summary.sliding_window.is_some()
                && swa_pattern(&summary.architecture).is_some_and(|n| layer % n < n - 1);
            let cells = if is_swa { swa_cells } else { per_slot };
            let row = kind
                .bytes(heads_kv.saturating_mul(key_dim))
                .saturating_add(kind.bytes(heads_kv.saturating_mul(value_dim)));
            cells.saturating_mul(slots).saturating_mul(row)
        })
        .fold(0u64, u64::saturating_add)
}

fn round_up(value: u64, to: u64) -> u64 {
    value.div_ceil(to).saturating_mul(to)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The two test models' headers, as `gguf::read_summary` reads them.
    fn smollm2() -> GgufSummary {
        GgufSummary {
            architecture: "llama".into(),
            name: None,
            file_bytes: 98_362_432,
            tensor_data_offset: 1_785_664,
            tensor_data_bytes: 96_576_768,
            tensor_count: 272,
            block_count: Some(30),
            context_length: Some(8192),
            embedding_length: Some(576),
            feed_forward_length: Some(1536),
            head_count: Some(9),
            head_count_kv: Some(vec![3]),
            key_length: None,
            value_length: None,
            sliding_window: None,
            vocab_size: Some(49152),
            has_chat_template: true,
        }
    }

    fn gemma3() -> GgufSummary {
        GgufSummary {
            architecture: "gemma3".into(),
            file_bytes: 253_113_024,
            tensor_data_offset: 6_525_120,
            tensor_data_bytes: 246_587_904,
            tensor_count: 236,
            block_count: Some(18),
            context_length: Some(32768),
            embedding_length: Some(640),
            feed_forward_length: Some(2048),
            head_count: Some(4),
            head_count_kv: Some(vec![1]),
            key_length: Some(256),
            value_length: Some(256),
            sliding_window: Some(512),
            vocab_size: Some(262_144),
            has_chat_template: false,
            ..smollm2()
        }
    }

    fn options(parallel: u32, context: u32) -> LoadOptions {
        LoadOptions {
            map_weights: true,
            context_per_slot: context,
            parallel,
            queue: 1,
            threads: 1,
            kv_cache: KvCacheType::F16,
            kv_cache_by_model: Default::default(),
            conversations: None,
            engine: Default::default(),
            engine_by_model: Default::default(),
            allocator_cache_limit: 0,
        }
    }

    const MIB: u64 = 1 << 20;

    #[test]
    fn kv_cache_matches_what_llama_cpp_allocates() {
        // llama.cpp logged "CPU KV buffer size = 180.00 MiB" for SmolLM2 at 2 × 4096:
        // 30 layers × 8192 cells × 3 heads × (64 + 64) × 2 bytes.
        let s = smollm2();
        assert_eq!(
            kv_cache_bytes(&s, KvCacheType::F16, 4096, 2, 512),
            180 * MIB
        );
        // Gemma 3 at 2 × 4096: 3 full layers × 8192 cells (24 MiB) and 15 sliding-window
        // layers × 2 × pad(512 + 512) cells (30 MiB), 1 head × (256 + 256) × 2 bytes each.
        assert_eq!(
            kv_cache_bytes(&gemma3(), KvCacheType::F16, 4096, 2, 512),
            54 * MIB
        );
        // A context shorter than the window: every layer keeps the whole context.
        assert_eq!(
            kv_cache_bytes(&gemma3(), KvCacheType::F16, 256, 1, 256),
            18 * 256 * 1024
        );
        // q8_0 stores 32 values in 34 bytes, q4_0 in 18: 180 MiB becomes 95.625 and 50.625.
        assert_eq!(
            kv_cache_bytes(&s, KvCacheType::Q8_0, 4096, 2, 512),
            180 * MIB * 17 / 32
        );
        assert_eq!(
            kv_cache_bytes(&s, KvCacheType::Q4_0, 4096, 2, 512),
            180 * MIB * 9 / 32
        );
    }

    #[test]
    fn footprints_match_the_measured_ones() {
        // Measured (RSS, 4 slots × 1024 tokens, after a 700-token prompt), in MB: SmolLM2
        // weights 114.0, KV 97.6, compute 16.4–16.8; Gemma 3 weights 301.4–303.6, KV 82.9,
        // compute 19.2–21.9 (the compute part varies run to run by a few MB). The e2e tests
        // measure them again against the real models.
        let within = |estimate: u64, measured: f64, tolerance: f64| {
            let error = (estimate as f64 - measured * 1e6).abs() / (measured * 1e6);
            assert!(
                error < tolerance,
                "estimate {estimate} vs measured {measured} MB"
            );
        };
        let s = estimate(&smollm2(), &options(4, 1024));
        within(s.weights, 114.0, 0.03);
        within(s.kv, 97.6, 0.03);
        within(s.compute, 16.6, 0.15);
        within(s.total, 228.4, 0.05);
        let g = estimate(&gemma3(), &options(4, 1024));
        within(g.weights, 302.5, 0.03);
        within(g.kv, 82.9, 0.03);
        within(g.compute, 20.5, 0.15);
        within(g.total, 406.3, 0.05);
    }

    #[test]
    fn a_header_without_hyperparameters_still_counts_its_weights() {
        let bare = GgufSummary {
            block_count: None,
            embedding_length: None,
            feed_forward_length: None,
            head_count: None,
            head_count_kv: None,
            vocab_size: None,
            ..smollm2()
        };
        let e = estimate(&bare, &options(2, 4096));
        assert_eq!(e.weights, 96_576_768 + LOAD_OVERHEAD);
        assert_eq!(e.total, e.weights + CONTEXT_OVERHEAD);
    }
}
