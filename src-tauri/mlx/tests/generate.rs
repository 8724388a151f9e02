//! The MLX engine on a real model folder (SmolLM2-135M converted from its GGUF by
//! scripts/convert-mlx-model.py, which scripts/test.sh runs).

use std::path::PathBuf;

use headroom_core::engine::sampling::SERVER_DEFAULTS;
use headroom_core::engine::{
    ChatMessage, Engine, FinishReason, GenerateRequest, GenerationEvent, LoadOptions,
    SamplingParams,
};
use headroom_mlx::MlxEngine;

fn models_dir() -> PathBuf {
    let dir = std::env::var_os("HEADROOM_TEST_MODELS_DIR")
        .expect("HEADROOM_TEST_MODELS_DIR is not set: run the tests through scripts/test.sh");
    PathBuf::from(dir)
}

fn model_folder() -> PathBuf {
    models_dir().join("SmolLM2-135M-Instruct-mlx")
}

fn options() -> LoadOptions {
    LoadOptions {
        context_per_slot: 1024,
        parallel: 1,
        queue: 4,
        threads: 2,
        map_weights: true,
        kv_cache: Default::default(),
        kv_cache_by_model: Default::default(),
        conversations: None,
        engine: Default::default(),
        engine_by_model: Default::default(),
        allocator_cache_limit: 256 << 20,
    }
}

fn greedy(prompt: String, max_tokens: u32, stop: Vec<String>) -> GenerateRequest {
    GenerateRequest {
        prompt,
        sampling: SamplingParams {
            temperature: 0.0,
            ..SERVER_DEFAULTS.clone()
        },
        max_tokens: Some(max_tokens),
        stop,
        constraint: None,
        logprobs: None,
        cache_prompt: true,
    }
}

async fn collect(mut generation: headroom_core::engine::Generation) -> (String, GenerationEvent) {
    let mut text = String::new();
    while let Some(event) = generation.next().await {
        match event {
            GenerationEvent::Text(t) => text.push_str(&t),
            GenerationEvent::Logprob(_) => {}
            end => return (text, end),
        }
    }
    panic!("the generation ended without Done or Failed");
}

#[tokio::test]
async fn answers_a_chat_and_reuses_the_prompt_on_the_next_turn() {
    let engine = MlxEngine::new();
    let folder = model_folder();
    let estimate = engine.estimate(&folder, &options()).expect("estimate");
    let model = engine.load(&folder, &options()).expect("load");
    let footprint = model.footprint();
    // The arrays MLX holds are the safetensors' tensor bytes.
    assert_eq!(footprint.weights, estimate.weights);
    let messages = vec![ChatMessage::new("user", "What is the capital of France?")];
    let prompt = model.render_chat(&messages, None).expect("render");
    assert!(prompt.contains("<|im_start|>assistant\n"), "{prompt}");
    let (text, end) = collect(
        model
            .generate(greedy(prompt.clone(), 32, vec![]))
            .expect("generate"),
    )
    .await;
    assert_eq!(text, "The capital of France is Paris.");
    let GenerationEvent::Done {
        finish_reason,
        usage,
        ..
    } = end
    else {
        panic!("{end:?}")
    };
    assert_eq!(finish_reason, FinishReason::Stop);
    assert_eq!(usage.cached_tokens, 0);
    // The same prompt again: all but its last token come from the cache.
    let (again, end) = collect(
        model
            .generate(greedy(prompt, 32, vec![]))
            .expect("generate"),
    )
    .await;
    assert_eq!(again, text);
    let GenerationEvent::Done { usage, .. } = end else {
        panic!("{end:?}")
    };
    assert_eq!(usage.cached_tokens, usage.prompt_tokens - 1);
    assert!(model.footprint().kv > 0);
}

#[tokio::test]
async fn a_stop_string_ends_the_text_before_it() {
    let engine = MlxEngine::new();
    let model = engine.load(&model_folder(), &options()).expect("load");
    let messages = vec![ChatMessage::new("user", "What is the capital of France?")];
    let prompt = model.render_chat(&messages, None).expect("render");
    let (text, end) = collect(
        model
            .generate(greedy(prompt, 32, vec![" is".into()]))
            .expect("generate"),
    )
    .await;
    assert_eq!(text, "The capital of France");
    let GenerationEvent::Done { stop_sequence, .. } = end else {
        panic!("{end:?}")
    };
    assert_eq!(stop_sequence.as_deref(), Some(" is"));
}

#[tokio::test]
async fn a_gguf_served_by_mlx_answers_as_its_converted_folder_does() {
    let engine = MlxEngine::new();
    let gguf = models_dir().join("SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(!engine.is_native_format(&gguf));
    let estimate = engine.estimate(&gguf, &options()).expect("estimate");
    let from_gguf = engine.load(&gguf, &options()).expect("load the GGUF");
    let from_folder = engine
        .load(&model_folder(), &options())
        .expect("load the folder");
    // MLX keeps Q4_1 and Q8_0 quantized: the same arrays either way.
    assert_eq!(
        from_gguf.footprint().weights,
        from_folder.footprint().weights
    );
    // The header's tensor data, within the few bytes of alignment padding.
    let weights = from_gguf.footprint().weights as f64;
    assert!(
        (estimate.weights as f64 - weights).abs() / weights < 0.02,
        "{estimate:?}"
    );
    let messages = vec![ChatMessage::new(
        "user",
        "Write a short poem about the sea.",
    )];
    let mut answers = Vec::new();
    for model in [&from_gguf, &from_folder] {
        let prompt = model.render_chat(&messages, None).expect("render");
        let (text, end) = collect(
            model
                .generate(greedy(prompt, 32, vec![]))
                .expect("generate"),
        )
        .await;
        let GenerationEvent::Done { usage, .. } = end else {
            panic!("{end:?}")
        };
        answers.push((text, usage.prompt_tokens, usage.completion_tokens));
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0].2, 32);
}
