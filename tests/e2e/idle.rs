//! Idle unload: the global timeout, per-model timeouts, and `keep_alive` / `ttl` per request.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{Options, Server, SMOLLM2};

fn request(extra: Value) -> Value {
    let mut body = json!({"model": SMOLLM2, "prompt": "Hello", "max_tokens": 2, "temperature": 0});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    body
}

async fn complete(server: &Server, extra: Value) {
    let (status, body) = server.post("/v1/completions", &request(extra)).await;
    assert_eq!(status, 200, "{body}");
}

fn idle_after(timeout: &str) -> Options {
    Options::with_env("HEADROOM_IDLE_TIMEOUT", timeout)
}

#[tokio::test]
async fn a_model_unloads_after_its_idle_timeout_but_never_during_a_request() {
    let server = Server::start_with(idle_after("2s"));
    let events = server.events().await;

    // A stream that runs well past the timeout is not cut.
    let started = Instant::now();
    let stream = server.start_counting_stream(300).await;
    crate::support::read_to_full_length(stream).await;
    let ran = started.elapsed();
    assert!(ran > Duration::from_secs(2), "the stream took only {ran:?}");
    let ended = Instant::now();

    let unloaded = events
        .wait_for("idle unload", |e| {
            e["type"] == "unloaded" && e["model"] == SMOLLM2
        })
        .await;
    let after = ended.elapsed();
    println!("stream ran {ran:?}; unloaded {after:?} after it ended");
    assert_eq!(unloaded["reason"], "idle");
    assert!(
        after > Duration::from_millis(1500) && after < Duration::from_secs(4),
        "unloaded {after:?} after the request ended"
    );
    let all = events.all();
    let unloading = all
        .iter()
        .position(|e| e["type"] == "unloading")
        .expect("unloading");
    let finished = all
        .iter()
        .position(|e| e["type"] == "request_finished")
        .expect("finished");
    assert!(finished < unloading, "{all:#?}");
}

#[tokio::test]
async fn keep_alive_and_ttl_set_the_timeout_per_request() {
    let server = Server::start_with(idle_after("2s"));
    let events = server.events().await;

    // Negative: kept past the global timeout, with no deadline.
    complete(&server, json!({"keep_alive": "-1"})).await;
    assert_eq!(server.expires_in(SMOLLM2).await, None);
    tokio::time::sleep(Duration::from_millis(3000)).await;
    assert!(
        server.memory_status(SMOLLM2).await.is_some(),
        "unloaded despite keep_alive -1"
    );

    // ttl in seconds (LM Studio): the deadline moves to 3 s from the end of this request.
    complete(&server, json!({"ttl": 3})).await;
    let left = server.expires_in(SMOLLM2).await.expect("a deadline");
    assert!((2.5..=3.1).contains(&left), "expires in {left} s");

    // 0: unloaded as soon as the request ends.
    let started = Instant::now();
    complete(&server, json!({"keep_alive": 0})).await;
    let unloaded = events
        .wait_for("unload", |e| {
            e["type"] == "unloaded" && e["model"] == SMOLLM2
        })
        .await;
    println!(
        "keep_alive 0: unloaded {:?} after the request began",
        started.elapsed()
    );
    assert_eq!(unloaded["reason"], "idle");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // Ollama's duration strings.
    complete(&server, json!({"keep_alive": "1h30m"})).await;
    let left = server.expires_in(SMOLLM2).await.expect("a deadline");
    assert!((5390.0..=5400.0).contains(&left), "expires in {left} s");

    // Nonsense is a 400 that names the field, and the model stays as it was.
    for (field, value) in [
        ("keep_alive", json!("soon")),
        ("ttl", json!([1])),
        ("keep_alive", json!(true)),
    ] {
        let (status, body) = server
            .post("/v1/completions", &request(json!({ field: value })))
            .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["code"], "invalid_keep_alive");
        let message = body["error"]["message"].as_str().expect("message");
        assert!(message.contains(&format!("'{field}'")), "{message}");
    }
    assert!(server.memory_status(SMOLLM2).await.is_some());
}

#[tokio::test]
async fn the_config_sets_a_timeout_per_model_and_never() {
    let server = Server::start_with(Options {
        config: Some(format!(
            "idle_timeout = \"never\"\n[idle_timeouts]\n\"{SMOLLM2}\" = \"45m\"\n"
        )),
        ..Options::default()
    });
    complete(&server, json!({})).await;
    let left = server.expires_in(SMOLLM2).await.expect("a deadline");
    assert!((2690.0..=2700.0).contains(&left), "expires in {left} s");

    // A pinned model has no deadline, whatever the timeouts say.
    let server = Server::start_with(Options {
        env: vec![
            ("HEADROOM_PINNED", SMOLLM2.to_string()),
            ("HEADROOM_IDLE_TIMEOUT", "1s".to_string()),
        ],
        ..Options::default()
    });
    complete(&server, json!({"keep_alive": "1s"})).await;
    assert_eq!(server.expires_in(SMOLLM2).await, None);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(server.memory_status(SMOLLM2).await.is_some());
}
