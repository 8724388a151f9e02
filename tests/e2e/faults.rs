//! Faults while work is under way: the server is stopped during a load, a model file vanishes
//! while it loads, settings change and models are flushed while requests stream. Each ends in
//! a clear answer and a pool that says what is true.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{model_path, read_to_full_length, Options, Server, GEMMA, SMOLLM2};

#[tokio::test]
async fn sigterm_during_a_load_exits_cleanly() {
    let mut server = Server::start();
    let events = server.events().await;
    let client = server.client.clone();
    let url = server.url(&format!("/api/memory/models/{GEMMA}/load"));
    let load = tokio::spawn(async move { client.post(url).send().await });
    events
        .wait_for("loading", |e| e["type"] == "loading" && e["model"] == GEMMA)
        .await;
    assert_eq!(server.terminate(Duration::from_secs(30)), Some(0));
    // The client got an answer or a closed connection, never a hang.
    let answer = tokio::time::timeout(Duration::from_secs(5), load)
        .await
        .expect("the load request ended");
    println!("load request during shutdown: {answer:?}");
    assert!(!server.stderr().contains("panicked"), "{}", server.stderr());
}

#[tokio::test]
async fn sigterm_during_a_stream_ends_it_with_an_error_event_and_exits_cleanly() {
    let mut server = Server::start();
    // 5000 tokens would run far past the 5 s grace.
    let mut stream = server.start_counting_stream(5000).await;
    let mut text = String::new();
    while text.matches("data: ").count() < 3 {
        let chunk = stream.chunk().await.expect("read").expect("open");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let pid = server.pid();
    let reader = tokio::spawn(async move {
        while let Ok(Some(chunk)) = stream.chunk().await {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
        text
    });
    let started = std::time::Instant::now();
    assert_eq!(server.terminate(Duration::from_secs(30)), Some(0));
    let took = started.elapsed();
    let text = tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .expect("the stream ended")
        .expect("reader");
    let events = crate::support::sse_data(&text);
    println!(
        "pid {pid}: exited 0 after {took:?}; the stream's last events: {:?}",
        &events[events.len().saturating_sub(2)..]
    );
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{text}");
    let error = &events[events.len() - 2];
    assert!(
        error.contains("\"error\""),
        "an error event before [DONE]: {error}"
    );
    assert!(!server.stderr().contains("panicked"), "{}", server.stderr());
}

#[tokio::test]
async fn a_model_file_deleted_while_it_loads_leaves_a_true_pool() {
    let dir = tempfile::tempdir().expect("tmp");
    let doomed = dir.path().join("doomed.gguf");
    std::fs::copy(model_path(SMOLLM2), &doomed).expect("copy");
    let server = Server::start_with(Options {
        extra_models_dir: Some(dir.path().to_path_buf()),
        ..Options::default()
    });
    let events = server.events().await;
    let client = server.client.clone();
    let url = server.url("/api/memory/models/doomed/load");
    let load = tokio::spawn(async move { client.post(url).send().await });
    events
        .wait_for("loading", |e| {
            e["type"] == "loading" && e["model"] == "doomed"
        })
        .await;
    std::fs::remove_file(&doomed).expect("delete");
    let response = load.await.expect("task").expect("an answer");
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("JSON");
    println!("load of a file deleted mid-load: {status} {body}");
    let loaded = server.model_status("doomed").await;
    match status {
        // The file was open already: the model is whole in memory and answers.
        200 => {
            assert!(loaded.is_some());
            let (status, answer) = server.complete("doomed", 2).await;
            // Requests look the model up on disk first: gone is gone, clearly.
            assert!(status == 200 || status == 404, "{status} {answer}");
        }
        // Or the load failed, said so, and left nothing behind.
        _ => {
            assert_eq!(status, 500, "{body}");
            assert_eq!(body["error"]["code"], "model_load_failed", "{body}");
            let message = body["error"]["message"].as_str().unwrap_or_default();
            assert!(message.contains("removed"), "{message}");
            assert!(loaded.is_none());
        }
    }
    let (status, _) = server.get("/health").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn settings_changes_and_a_flush_while_streams_run() {
    let server = Server::start();
    let events = server.events().await;
    let first = server.start_counting_stream(200).await;
    let second = server.start_counting_stream(200).await;
    // Settings change under the streams: timeouts, thresholds, the pool limit.
    for patch in [
        json!({"idle_timeout": "1m"}),
        json!({"pressure": {"elevated": 70}}),
        json!({"memory_limit": "50%"}),
    ] {
        let (status, body) = server.send_json(Method::PUT, "/api/settings", &patch).await;
        assert_eq!(status, 200, "{patch}: {body}");
    }
    // A flush waits for them (up to its grace period) and then unloads.
    let (status, report) = server.call(Method::POST, "/api/memory/flush").await;
    assert_eq!(status, 200, "{report}");
    for stream in [first, second] {
        read_to_full_length(stream).await;
    }
    let unloaded = events
        .wait_for("the flush's unload", |e| {
            e["type"] == "unloaded" && e["model"] == SMOLLM2
        })
        .await;
    assert_eq!(unloaded["reason"], "flush", "{unloaded}");
    // The flush came after both requests finished.
    let all = events.all();
    let finished = all
        .iter()
        .filter(|e| e["type"] == "request_finished")
        .count();
    assert!(finished >= 2, "{all:?}");
}
