//! Unloading an MLX model gives its memory back to MLX and, through the cleared allocator
//! cache, to the system. Its own test binary: MLX's memory counters are process-wide, and the
//! other tests load models at the same time.

use std::path::PathBuf;

use headroom_core::engine::sampling::SERVER_DEFAULTS;
use headroom_core::engine::{
    ChatMessage, Engine, GenerateRequest, GenerationEvent, LoadOptions, SamplingParams,
};
use headroom_mlx::MlxEngine;
use mlx_rs::memory::{active_memory, cache_memory};

#[tokio::test]
async fn an_unload_returns_the_arrays_and_the_cache() {
    let folder = PathBuf::from(
        std::env::var_os("HEADROOM_TEST_MODELS_DIR").expect("HEADROOM_TEST_MODELS_DIR"),
    )
    .join("SmolLM2-135M-Instruct-mlx");
    let options = LoadOptions {
        context_per_slot: 1024,
        parallel: 1,
        queue: 1,
        threads: 2,
        map_weights: true,
        kv_cache: Default::default(),
        kv_cache_by_model: Default::default(),
        conversations: None,
        engine: Default::default(),
        engine_by_model: Default::default(),
        allocator_cache_limit: 256 << 20,
    };
    let engine = MlxEngine::new();
    let before = active_memory().expect("active");
    let model = engine.load(&folder, &options).expect("load");
    let prompt = model
        .render_chat(&[ChatMessage::new("user", "Count to twenty.")], None)
        .expect("render");
    let mut generation = model
        .generate(GenerateRequest {
            prompt,
            sampling: SamplingParams {
                temperature: 0.0,
                ..SERVER_DEFAULTS.clone()
            },
            max_tokens: Some(48),
            stop: Vec::new(),
            constraint: None,
            logprobs: None,
            cache_prompt: true,
        })
        .expect("generate");
    while let Some(event) = generation.next().await {
        if matches!(
            event,
            GenerationEvent::Done { .. } | GenerationEvent::Failed(_)
        ) {
            break;
        }
    }
    let footprint = model.footprint();
    let held = active_memory().expect("active") - before;
    println!(
        "MLX active memory held by the model: {held} bytes; footprint {footprint:?}; cache {}",
        cache_memory().unwrap_or(0)
    );
    // The arrays MLX holds are the weights and the KV buffers the footprint names.
    assert!(
        held as u64 >= footprint.weights + footprint.kv,
        "{held} < {footprint:?}"
    );
    assert!(
        (held as u64) < footprint.total + (8 << 20),
        "{held} ≫ {footprint:?}"
    );
    assert!(footprint.compute > 0, "{footprint:?}");

    drop(generation);
    drop(model);
    let after = active_memory().expect("active");
    let returned = (before + held).saturating_sub(after) as f64 / held as f64 * 100.0;
    println!(
        "after the unload: active {after} bytes (was {before} before the load), cache {}; {returned:.1} % returned",
        cache_memory().unwrap_or(0)
    );
    assert!(returned >= 95.0, "{returned}");
    assert_eq!(cache_memory().expect("cache"), 0);
}
