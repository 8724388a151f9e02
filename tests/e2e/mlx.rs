//! The MLX engine through the real server: an MLX model folder (SmolLM2-135M, converted from
//! its GGUF by scripts/convert-mlx-model.py) served beside the GGUF models, held to mlx-lm's
//! own output, and unloaded by the same pool rules as llama.cpp's models.

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::prompt_cache::{
    answer, cached, chat_with_a_stop_before_each_turn, saved_states, stop, turn,
};
use crate::support::{mb, models_dir, sse_data, Options, Server, SMOLLM2};

const MLX_MODEL: &str = "SmolLM2-135M-Instruct-mlx";
const POEM: &str = "Write a short poem about the sea.";

fn greedy_chat(user: &str, max_tokens: u32) -> Value {
    json!({
        "model": MLX_MODEL,
        "messages": [{"role": "user", "content": user}],
        "max_tokens": max_tokens,
        "temperature": 0,
    })
}

/// What mlx-lm itself generates greedily for `user` (tests/e2e/mlx_reference.py), with its KV
/// cache quantized to `kv_bits` if given.
fn mlx_lm_reference(user: &str, max_tokens: u32, kv_bits: Option<u32>) -> Value {
    let script = format!(
        "{}/../tests/e2e/mlx_reference.py",
        env!("CARGO_MANIFEST_DIR")
    );
    let pythonpath = std::env::var("HEADROOM_TEST_MLX_PYTHONPATH")
        .expect("HEADROOM_TEST_MLX_PYTHONPATH: the folder scripts/test.sh installs mlx-lm into");
    let output = Command::new("python3")
        .arg(script)
        .arg(models_dir().join(MLX_MODEL))
        .arg(max_tokens.to_string())
        .arg(user)
        .args(kv_bits.map(|b| b.to_string()))
        .env("PYTHONPATH", pythonpath)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "mlx-lm failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the reference prints JSON")
}

#[tokio::test]
async fn greedy_output_equals_mlx_lm_token_for_token_whole_and_streamed() {
    let server = Server::start();
    let (_, models) = server.get("/api/models").await;
    let listed = models["models"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["id"] == MLX_MODEL).cloned())
        .expect("the MLX folder is listed");
    assert_eq!(listed["engine"], "MLX", "{listed}");
    let gguf = models["models"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["id"] == SMOLLM2).cloned())
        .expect("the GGUF is listed");
    assert_eq!(gguf["engine"], "llama.cpp", "{gguf}");

    let reference = mlx_lm_reference(POEM, 32, None);
    let tokens = reference["tokens"].as_array().map_or(0, Vec::len);
    assert_eq!(
        tokens, 32,
        "the reference should run to its limit: {reference}"
    );

    let (status, whole) = server
        .post("/v1/chat/completions", &greedy_chat(POEM, 32))
        .await;
    assert_eq!(status, 200, "{whole}");
    let text = answer(&whole);
    println!("mlx-lm: {:?}\nHeadroom: {text:?}", reference["text"]);
    assert_eq!(text, reference["text"].as_str().expect("text"));
    assert_eq!(whole["usage"]["completion_tokens"], 32, "{whole}");
    assert_eq!(whole["usage"]["prompt_tokens"], reference["prompt_tokens"]);
    assert_eq!(whole["choices"][0]["finish_reason"], "length");

    let mut body = greedy_chat(POEM, 32);
    body["stream"] = json!(true);
    let response = server
        .client
        .post(server.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .expect("stream");
    let events = sse_data(&response.text().await.expect("body"));
    let streamed: String = events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter_map(|e| {
            e["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(streamed, text);

    let status = server.memory_status(MLX_MODEL).await.expect("loaded");
    assert_eq!(status["engine"], "MLX", "{status}");
    assert_eq!(status["protection"], "in_memory", "{status}");
    // The second request's prompt was the first's: all but its last token came from the cache.
    let cached = status["stats"]["cached_tokens"].as_u64().expect("cached");
    assert_eq!(cached, reference["prompt_tokens"].as_u64().expect("n") - 1);
}

#[tokio::test]
async fn stop_strings_end_the_text_and_a_hang_up_ends_the_generation() {
    let server = Server::start();
    let mut body = greedy_chat("What is the capital of France?", 32);
    body["stop"] = json!([" Paris"]);
    let (status, answer) = server.post("/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["choices"][0]["message"]["content"],
        "The capital of France is"
    );
    assert_eq!(answer["choices"][0]["finish_reason"], "stop");

    // A long stream, hung up after a few events.
    let mut body = greedy_chat(POEM, 1000);
    body["stream"] = json!(true);
    let mut response = server
        .client
        .post(server.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .expect("stream");
    let mut received = 0;
    while received < 4 {
        let chunk = response.chunk().await.expect("read").expect("open");
        received += String::from_utf8_lossy(&chunk).matches("data: ").count();
    }
    drop(response);
    let mut stats = Value::Null;
    for _ in 0..100 {
        stats = server.memory_status(MLX_MODEL).await.expect("loaded")["stats"].clone();
        if stats["cancelled"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("after the hang-up: {stats}");
    assert_eq!(stats["cancelled"], 1, "{stats}");
    assert_eq!(stats["active"], 0, "{stats}");
    let generated = stats["generated_tokens"].as_u64().expect("tokens");
    // The stop-string answer's tokens, the events read, and the few in flight.
    assert!(generated < 5 + received as u64 + 8, "{stats}");
    // The model serves the next request.
    let (status, answer) = server
        .post("/v1/chat/completions", &greedy_chat("Hi", 4))
        .await;
    assert_eq!(status, 200, "{answer}");
}

#[tokio::test]
async fn idle_and_pressure_unload_an_mlx_model_and_give_its_memory_back() {
    let server = Server::start_with(Options::with_env("HEADROOM_IDLE_TIMEOUT", "2s"));
    let events = server.events().await;
    let (status, answer) = server
        .post("/v1/chat/completions", &greedy_chat("Hi", 8))
        .await;
    assert_eq!(status, 200, "{answer}");
    let idle = events
        .wait_for("idle unload", |e| {
            e["type"] == "unloaded" && e["model"] == MLX_MODEL
        })
        .await;
    println!("idle unload: {idle}");
    assert_eq!(idle["reason"], "idle");
    let reclaimed = idle["reclaimed_percent"].as_f64().expect("percent");
    assert!(reclaimed >= 95.0, "{idle}");

    // Loaded again, kept past the idle timeout by the request's keep_alive; critical pressure
    // unloads it.
    let mut body = greedy_chat("Hi", 8);
    body["keep_alive"] = json!("10m");
    let (status, answer) = server.post("/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{answer}");
    server.set_critical_thresholds(true).await;
    let pressure = events
        .wait_for("pressure unload", |e| {
            e["type"] == "unloaded" && e["model"] == MLX_MODEL && e["reason"] == "pressure"
        })
        .await;
    println!("pressure unload: {pressure}");
    assert!(
        pressure["reclaimed_percent"].as_f64().expect("percent") >= 95.0,
        "{pressure}"
    );
    server.set_critical_thresholds(false).await;
}

#[tokio::test]
async fn a_gguf_chosen_for_mlx_is_served_by_mlx() {
    let server = Server::start_with(Options {
        config: Some(format!("engines = {{ \"{SMOLLM2}\" = \"mlx\" }}\n")),
        ..Options::default()
    });
    let (_, models) = server.get("/api/models").await;
    let listed = models["models"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["id"] == SMOLLM2).cloned())
        .expect("listed");
    assert_eq!(listed["engine"], "MLX", "{listed}");
    let mut body = greedy_chat(POEM, 32);
    body["model"] = json!(SMOLLM2);
    let (status, from_gguf) = server.post("/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{from_gguf}");
    let status = server.memory_status(SMOLLM2).await.expect("loaded");
    assert_eq!(status["engine"], "MLX", "{status}");
    // MLX reads the GGUF's Q4_1 and Q8_0 tensors as the converted folder holds them: the same
    // answer as the folder's.
    let (_, from_folder) = server
        .post("/v1/chat/completions", &greedy_chat(POEM, 32))
        .await;
    assert_eq!(
        from_gguf["choices"][0]["message"]["content"],
        from_folder["choices"][0]["message"]["content"]
    );
}

/// A quantized KV cache on MLX: q8_0 and q4_0 store keys and values as mlx-lm's
/// `QuantizedKVCache` does (8 and 4 bits, groups of 64), give mlx-lm's own tokens with the same
/// cache, and hold what the bits say of the unquantized cache, as the estimate says.
#[tokio::test]
async fn a_quantized_kv_cache_on_mlx_gives_mlx_lm_s_tokens_in_less_memory() {
    let mut plain = (0.0, 0.0);
    for (kind, bits) in [("f16", None), ("q8_0", Some(8)), ("q4_0", Some(4))] {
        let server = Server::start_with(Options::with_env("HEADROOM_KV_CACHE_TYPE", kind));
        let (status, whole) = server
            .post("/v1/chat/completions", &greedy_chat(POEM, 32))
            .await;
        assert_eq!(status, 200, "{whole}");
        let text = answer(&whole);
        let status = server.memory_status(MLX_MODEL).await.expect("loaded");
        let kv = status["memory"]["kv"].as_f64().expect("kv bytes");
        let estimate = status["estimate"]["kv"].as_f64().expect("kv estimate");
        if bits.is_none() {
            plain = (kv, estimate);
        }
        let (ratio, estimated) = (kv / plain.0, estimate / plain.1);
        println!(
            "{kind}: KV {:.2} MB, {ratio:.3} of unquantized (estimate {estimated:.3}); \"{text}\"",
            mb(kv as u64)
        );
        // The buffers grow in the same steps whatever their type, so the measured share is the
        // bytes per head's: 64 or 32 bytes and a scale and bias per 64 values, against 128 at
        // 16 bits or 256 at 32 (this GGUF-converted folder's norms make its activations f32).
        assert!(
            (ratio - estimated).abs() < 0.005,
            "{kind}: {ratio:.3} measured, {estimated:.3} estimated"
        );
        let most = match bits {
            Some(8) => 68.0 / 128.0,
            Some(4) => 36.0 / 128.0,
            _ => 1.0,
        };
        assert!(ratio <= most + 0.001, "{kind}: {ratio:.3} of unquantized");
        if let Some(bits) = bits {
            let reference = mlx_lm_reference(POEM, 32, Some(bits));
            println!("mlx-lm with {bits}-bit KV: {:?}", reference["text"]);
            assert_eq!(text, reference["text"].as_str().expect("text"), "{kind}");
            assert!(server.stderr().contains("a quantized KV cache"));
        }
    }
}

/// A conversation on MLX survives its model's unload: the next turn after a Stop restores the
/// KV cache from disk (a safetensors file) and answers as a cold run does; a save made with
/// another KV cache type is refused, deleted, and the turn computed afresh.
#[tokio::test]
async fn a_conversation_on_mlx_survives_an_unload() {
    let data = tempfile::tempdir().expect("data dir");
    let server = Server::start_with(Options {
        data_dir: Some(data.path().to_path_buf()),
        ..Options::default()
    });
    let messages = chat_with_a_stop_before_each_turn(&server, MLX_MODEL).await;
    stop(&server, MLX_MODEL).await;
    drop(server);

    // The same data folder under a q8_0 cache: the 16-bit save is whole (its checksum holds)
    // but not this cache's; it is refused and deleted, and the turn answers from scratch.
    let server = Server::start_with(Options {
        data_dir: Some(data.path().to_path_buf()),
        env: vec![("HEADROOM_KV_CACHE_TYPE", "q8_0".into())],
        ..Options::default()
    });
    let before = saved_states(data.path());
    assert!(!before.is_empty());
    let after = turn(&server, MLX_MODEL, &messages, None).await;
    assert_eq!(cached(&after), 0, "nothing restored: {after}");
    assert!(!answer(&after).is_empty());
    assert!(
        server.stderr().contains("another KV cache type"),
        "the refusal is logged"
    );
    assert!(
        saved_states(data.path()).len() < before.len(),
        "the refused save was deleted"
    );
}
