//! The pool against real models: estimates against measured memory, memory returned on unload,
//! LRU eviction under a limit, pinning, busy models kept, flush, and the event stream.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{mb, total_ram, Options, Server, GEMMA, SMOLLM2};

/// A prompt longer than one 512-token batch, so the compute buffers reach their working size.
fn long_prompt() -> String {
    "The quick brown fox jumps over the lazy dog. ".repeat(70)
}

fn bytes(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("not a byte count: {v}"))
}

async fn estimates(server: &Server) -> (u64, u64) {
    let (status, list) = server.get("/api/models").await;
    assert_eq!(status, 200, "{list}");
    let estimate = |id: &str| {
        let model = list["models"]
            .as_array()
            .and_then(|m| m.iter().find(|m| m["id"] == id))
            .unwrap_or_else(|| panic!("{id} not listed: {list}"));
        assert_eq!(model["fits"], true, "{model}");
        bytes(&model["estimate"]["total"])
    };
    (estimate(SMOLLM2), estimate(GEMMA))
}

/// Runs one short completion.
async fn complete(server: &Server, model: &str, prompt: &str) -> Value {
    let (status, body) = server
        .post(
            "/v1/completions",
            &json!({"model": model, "prompt": prompt, "max_tokens": 2, "temperature": 0}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test]
async fn estimates_are_within_ten_percent_of_measured_memory() {
    let server = Server::start();
    let (smol, gemma) = estimates(&server).await;
    for (id, estimate) in [(SMOLLM2, smol), (GEMMA, gemma)] {
        let (status, loaded) = server
            .call(Method::POST, &format!("/api/memory/models/{id}/load"))
            .await;
        assert_eq!(status, 200, "{loaded}");
        let at_load = bytes(&loaded["memory"]["total"]);
        // A full batch makes the compute buffers resident: the steady state the estimate is for.
        complete(&server, id, &long_prompt()).await;
        let model = server.memory_status(id).await.expect("loaded");
        let memory = &model["memory"];
        let measured = bytes(&memory["total"]);
        let error = (estimate as f64 - measured as f64) / measured as f64 * 100.0;
        let error_at_load = (estimate as f64 - at_load as f64) / at_load as f64 * 100.0;
        println!(
            "{id}: estimate {:.1} MB; measured {:.1} MB (weights {:.1}, kv {:.1}, compute {:.1}): {error:+.1}%; at load {:.1} MB: {error_at_load:+.1}%",
            mb(estimate),
            mb(measured),
            mb(bytes(&memory["weights"])),
            mb(bytes(&memory["kv"])),
            mb(bytes(&memory["compute"])),
            mb(at_load),
        );
        assert!(error.abs() < 10.0, "{id}: {error:+.1}% ({model})");
        assert!(
            error_at_load.abs() < 10.0,
            "{id} at load: {error_at_load:+.1}%"
        );
        let reported = model["estimate_error_percent"].as_f64().expect("error");
        assert!((reported - error).abs() < 0.2, "{reported} vs {error}");
    }
}

/// glibc raises its mmap threshold to the size of each mapped block freed; without the
/// threshold pinned at start, the second load's KV cache and compute buffers came from the heap,
/// and 23–25 MB of them stayed there after the unload. One slot keeps those buffers in the
/// range where that happens. Every cycle must give its memory back, not only the first.
#[tokio::test]
async fn every_unload_returns_the_memory_not_just_the_first() {
    let server = Server::start_with(Options {
        parallel: 1,
        ..Options::default()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before_first_load = server.rss();
    let mut anon_after_first_unload = None;
    for cycle in 1..=3 {
        complete(&server, SMOLLM2, "Hello").await;
        let footprint =
            bytes(&server.memory_status(SMOLLM2).await.expect("loaded")["memory"]["total"]);
        let (status, report) = server
            .call(Method::DELETE, &format!("/api/memory/models/{SMOLLM2}"))
            .await;
        assert_eq!(status, 200, "{report}");
        let left = server.rss().saturating_sub(before_first_load);
        let returned = 100.0 - left as f64 * 100.0 / footprint as f64;
        let anon = server.rss_anon();
        let anon_growth = anon.saturating_sub(*anon_after_first_unload.get_or_insert(anon));
        println!(
            "cycle {cycle}: footprint {:.1} MB, {:.1} MB above the first baseline after the unload \
             ({returned:.1}% returned), anonymous memory {:.1} MB above the first unload's",
            mb(footprint),
            mb(left),
            mb(anon_growth)
        );
        // What the first load leaves for good (6.5 MB here, the same after every cycle) is a
        // larger share of this one-slot footprint than of the usual four-slot one, so the bar
        // is lower than elsewhere; without the pinned threshold, cycle 2 returned 77.9 %.
        assert!(
            returned >= 90.0,
            "cycle {cycle}: only {returned:.1}% came back"
        );
        assert!(
            anon_growth < 4 << 20,
            "cycle {cycle}: the heap kept {:.1} MB more than after the first unload",
            mb(anon_growth)
        );
    }
}

#[tokio::test]
async fn stopping_a_model_returns_its_memory() {
    let server = Server::start();
    let events = server.events().await;
    // Let the idle server settle before the baseline.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before_load = server.rss();
    complete(&server, SMOLLM2, "Hello").await;
    let footprint = bytes(&server.memory_status(SMOLLM2).await.expect("loaded")["memory"]["total"]);

    let (status, report) = server
        .call(Method::DELETE, &format!("/api/memory/models/{SMOLLM2}"))
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["reason"], "requested");
    let after_unload = server.rss();
    let left = after_unload.saturating_sub(before_load);
    let returned = 100.0 - left as f64 * 100.0 / footprint as f64;
    println!(
        "RSS before load {:.1} MB, footprint {:.1} MB, after unload {:.1} MB: {returned:.1}% returned; the server measured {:?}% in {} ms",
        mb(before_load),
        mb(footprint),
        mb(after_unload),
        report["reclaimed_percent"],
        report["duration_ms"],
    );
    assert!(returned >= 90.0, "only {returned:.1}% came back");
    assert!(
        report["reclaimed_percent"].as_f64().expect("percent") >= 90.0,
        "{report}"
    );

    let unloaded = events
        .wait_for("unloaded", |e| {
            e["type"] == "unloaded" && e["model"] == SMOLLM2
        })
        .await;
    assert_eq!(unloaded["reason"], "requested");
    assert_eq!(unloaded["reclaimed"], report["reclaimed"]);
    let (_, status) = server.get("/api/memory/status").await;
    assert_eq!(status["models"], json!([]), "{status}");

    // Stopping it again, or a model that was never there: 404. Loading an unknown one: 404.
    let (code, body) = server
        .call(Method::DELETE, &format!("/api/memory/models/{SMOLLM2}"))
        .await;
    assert_eq!(
        (code, body["error"]["code"].clone()),
        (404, json!("model_not_loaded"))
    );
    let (code, body) = server
        .call(Method::POST, "/api/memory/models/no-such-model/load")
        .await;
    assert_eq!(
        (code, body["error"]["code"].clone()),
        (404, json!("model_not_found"))
    );
    let (code, _) = server
        .call(Method::POST, "/api/memory/models/..%2Fetc%2Fpasswd/load")
        .await;
    assert!(code == 400 || code == 404, "{code}");
}

/// A limit that holds either model alone but not both.
async fn limit_for_one() -> String {
    let probe = Server::start();
    let (smol, gemma) = estimates(&probe).await;
    (gemma + smol / 2).to_string()
}

#[tokio::test]
async fn under_a_limit_for_one_model_the_least_recently_used_is_evicted() {
    let limit = limit_for_one().await;
    let server = Server::start_with(Options::with_env("HEADROOM_MEMORY_LIMIT", &limit));
    let events = server.events().await;
    complete(&server, SMOLLM2, "Hello").await;
    complete(&server, GEMMA, "Hello").await;

    let (_, status) = server.get("/api/memory/status").await;
    let ids: Vec<&Value> = status["models"]
        .as_array()
        .expect("models")
        .iter()
        .map(|m| &m["id"])
        .collect();
    assert_eq!(ids, vec![&json!(GEMMA)], "{status}");
    assert!(
        bytes(&status["pool"]["used"]) <= bytes(&status["pool"]["limit"]),
        "{status}"
    );

    let evicted = events.wait_for("evicted", |e| e["type"] == "evicted").await;
    assert_eq!(
        evicted,
        json!({"type": "evicted", "model": SMOLLM2, "for_model": GEMMA})
    );
    events
        .wait_for("gemma loaded", |e| {
            e["type"] == "loaded" && e["model"] == GEMMA
        })
        .await;
    let all = events.all();
    let at = |kind: &str, model: &str| {
        all.iter()
            .position(|e| e["type"] == kind && e["model"] == model)
            .unwrap_or_else(|| panic!("no {kind} for {model}: {all:#?}"))
    };
    // In order: SmolLM2 loads and serves, is evicted for Gemma and unloaded, then Gemma loads.
    let order = [
        at("loading", SMOLLM2),
        at("loaded", SMOLLM2),
        at("request_started", SMOLLM2),
        at("request_finished", SMOLLM2),
        at("evicted", SMOLLM2),
        at("unloaded", SMOLLM2),
        at("loaded", GEMMA),
    ];
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}: {all:#?}");
    assert_eq!(all[at("unloaded", SMOLLM2)]["reason"], "evicted");

    // Prometheus counts it.
    let metrics = server.metrics().await;
    assert!(metrics.contains("headroom_evictions_total 1"), "{metrics}");
    assert!(
        metrics.contains("headroom_model_unloads_total{reason=\"evicted\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_pinned_model_is_never_evicted_nor_stopped() {
    let limit = limit_for_one().await;
    let server = Server::start_with(Options {
        env: vec![
            ("HEADROOM_MEMORY_LIMIT", limit),
            ("HEADROOM_PINNED", SMOLLM2.to_string()),
        ],
        ..Options::default()
    });
    // Preloaded at startup, without a request.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(model) = server.memory_status(SMOLLM2).await {
            if model["state"] == "ready" {
                assert_eq!(model["pinned"], true);
                break;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the pinned SmolLM2 was not loaded at start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let (status, body) = server.complete(GEMMA, 2).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "insufficient_memory");
    let message = body["error"]["message"].as_str().expect("message");
    println!("{message}");
    assert!(
        message.contains(&format!("'{SMOLLM2}'")) && message.contains("pinned"),
        "{message}"
    );
    assert!(message.contains("more is needed"), "{message}");

    let (status, body) = server
        .call(Method::DELETE, &format!("/api/memory/models/{SMOLLM2}"))
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "model_pinned");
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("message")
            .contains("unpin it"),
        "{body}"
    );

    // A flush leaves it too.
    let (status, flushed) = server.call(Method::POST, "/api/memory/flush").await;
    assert_eq!(status, 200, "{flushed}");
    assert_eq!(flushed["unloaded"], json!([]));
    assert!(server.memory_status(SMOLLM2).await.is_some());
}

#[tokio::test]
async fn a_model_serving_a_request_is_not_evicted_and_its_request_completes() {
    let limit = limit_for_one().await;
    let server = Server::start_with(Options::with_env("HEADROOM_MEMORY_LIMIT", &limit));
    let stream = server.start_counting_stream(200).await;

    let (status, retry_after, body) = server
        .post_with_retry_after(
            "/v1/completions",
            &json!({"model": GEMMA, "prompt": "Hi", "max_tokens": 2}),
        )
        .await;
    assert_eq!(status, 503, "{body}");
    assert!(retry_after);
    assert_eq!(body["error"]["code"], "insufficient_memory");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(message.contains("busy with 1 request"), "{message}");

    // SmolLM2's request runs to its end.
    let last = crate::support::read_to_full_length(stream).await;
    assert_eq!(last["usage"]["completion_tokens"], 200);
    // The server lets go of the request just after the client has read its end.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let model = server.memory_status(SMOLLM2).await.expect("still loaded");
        if model["state"] == "ready" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{model}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn flush_waits_for_requests_and_stop_ends_them_with_an_error() {
    let server = Server::start();
    let events = server.events().await;
    for id in [SMOLLM2, GEMMA] {
        let (status, body) = server
            .call(Method::POST, &format!("/api/memory/models/{id}/load"))
            .await;
        assert_eq!(status, 200, "{body}");
    }
    // A flush lets a running request finish, then unloads everything.
    let stream = server.start_counting_stream(40).await;
    let (status, flushed) = server.call(Method::POST, "/api/memory/flush").await;
    assert_eq!(status, 200, "{flushed}");
    let text = stream.text().await.expect("stream body");
    assert!(!text.contains("\"error\""), "{text}");
    let mut unloaded: Vec<&str> = flushed["unloaded"]
        .as_array()
        .expect("unloaded")
        .iter()
        .map(|r| r["model"].as_str().expect("id"))
        .collect();
    unloaded.sort_unstable();
    assert_eq!(unloaded, vec![SMOLLM2, GEMMA]);
    println!(
        "flush: released {:.1} MB in {} ms",
        mb(bytes(&flushed["released"])),
        flushed["duration_ms"]
    );
    assert!(bytes(&flushed["released"]) > 300_000_000, "{flushed}");
    let (_, status) = server.get("/api/memory/status").await;
    assert_eq!(status["models"], json!([]));
    // The event stream may trail the flush's answer by a moment.
    events
        .wait_for("SmolLM2 unloaded", |e| {
            e["type"] == "unloaded" && e["model"] == SMOLLM2
        })
        .await;
    let finished = events.position("request_finished", SMOLLM2);
    assert!(finished.is_some() && finished < events.position("unloaded", SMOLLM2));

    // A stop ends a running request with an error event, then [DONE]; nothing is cut off.
    let stream = server.start_counting_stream(400).await;
    events
        .wait_for("request started again", |e| {
            e["type"] == "request_started" && e["model"] == SMOLLM2
        })
        .await;
    let (status, report) = server
        .call(Method::DELETE, &format!("/api/memory/models/{SMOLLM2}"))
        .await;
    assert_eq!(status, 200, "{report}");
    let text = stream.text().await.expect("stream body");
    let data = crate::support::sse_data(&text);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{text}");
    let error: Value = serde_json::from_str(&data[data.len() - 2]).expect("error event");
    let message = error["error"]["message"].as_str().expect("message");
    assert!(message.contains("was stopped"), "{message}");
}

#[tokio::test]
async fn loads_that_would_squeeze_the_machine_are_refused() {
    let nearly_all = (total_ram() - (1 << 20)).to_string();
    // The margin: no load may leave less than this available.
    let server = Server::start_with(Options::with_env("HEADROOM_HEADROOM_MARGIN", &nearly_all));
    let (status, body) = server.complete(SMOLLM2, 2).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "insufficient_memory");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(
        message.contains("Close apps or lower context_size"),
        "{message}"
    );
    let (_, listed) = server.get("/api/models").await;
    assert!(
        listed["models"]
            .as_array()
            .expect("models")
            .iter()
            .all(|m| m["fits"] == false),
        "{listed}"
    );
    drop(server);

    // The floor: under it, requests that need a load are told to come back later.
    let server = Server::start_with(Options::with_env("HEADROOM_MEMORY_FLOOR", &nearly_all));
    let (status, retry_after, body) = server
        .post_with_retry_after(
            "/v1/completions",
            &json!({"model": SMOLLM2, "prompt": "Hi", "max_tokens": 2}),
        )
        .await;
    assert_eq!(status, 503, "{body}");
    assert!(retry_after);
    assert_eq!(body["error"]["code"], "low_memory", "{body}");
    let (_, status) = server.get("/api/memory/status").await;
    assert_eq!(status["models"], json!([]));
}

#[tokio::test]
async fn generations_are_measured_and_exported() {
    let server = Server::start();
    let (status, body) = server
        .post(
            "/v1/chat/completions",
            &crate::support::chat_body(SMOLLM2, "Name a colour.", 12, 1),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, recent) = server.get("/api/metrics/generations").await;
    let records = recent["generations"].as_array().expect("records");
    assert_eq!(records.len(), 1, "{recent}");
    let record = &records[0];
    assert_eq!(record["model"], SMOLLM2);
    assert_eq!(
        record["generated_tokens"],
        body["usage"]["completion_tokens"]
    );
    assert_eq!(record["prompt_tokens"], body["usage"]["prompt_tokens"]);
    assert!(record["ttft_ms"].as_f64().expect("ttft") > 0.0, "{record}");
    assert!(record["model_memory"].as_u64().expect("memory") > 100_000_000);
    println!("generation: {record}");

    let metrics = server.metrics().await;
    let generated = body["usage"]["completion_tokens"].as_u64().expect("tokens");
    for needle in [
        format!("headroom_generated_tokens_total{{model=\"{SMOLLM2}\"}} {generated}"),
        format!("headroom_model_loads_total{{model=\"{SMOLLM2}\"}} 1"),
        format!("headroom_time_to_first_token_seconds_count{{model=\"{SMOLLM2}\"}} 1"),
        format!("headroom_model_memory_bytes{{model=\"{SMOLLM2}\",part=\"total\"}}"),
        "headroom_models_loaded 1".to_string(),
        "headroom_pool_limit_bytes".to_string(),
    ] {
        assert!(metrics.contains(&needle), "no {needle:?} in:\n{metrics}");
    }
}
