//! A client that hangs up mid-stream stops its generation.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{Server, SMOLLM2};

#[tokio::test]
async fn a_client_that_disconnects_mid_stream_stops_the_generation_within_a_few_tokens() {
    let server = Server::start();
    // 1000 tokens would take many seconds.
    let mut response = server.start_counting_stream(1000).await;
    let mut received = 0;
    while received < 5 {
        let chunk = response
            .chunk()
            .await
            .expect("read")
            .expect("stream still open");
        received += String::from_utf8_lossy(&chunk).matches("data: ").count();
    }
    drop(response);

    let stats = stats_once_cancelled(&server).await;
    let generated = stats["generated_tokens"].as_u64().expect("tokens");
    println!(
        "client read {received} events, then hung up; the server generated {generated} tokens"
    );
    assert_eq!(stats["completed"], 0, "{stats}");
    assert_eq!(stats["active"], 0, "{stats}");
    assert!(
        generated <= received as u64 + 8,
        "kept generating after the hang-up: {stats}"
    );

    // The slot is free again: a new request is served at once.
    server.complete_ok(SMOLLM2, 4).await;
}

#[tokio::test]
async fn a_client_that_gives_up_on_a_whole_answer_stops_the_generation_too() {
    let server = Server::start();
    // Load first, so the request below is cancelled while generating, not while loading.
    server.complete_ok(SMOLLM2, 1).await;
    let request = server
        .client
        .post(server.url("/v1/completions"))
        .json(&json!({"model": SMOLLM2, "prompt": "1, 2, 3, 4, 5,", "temperature": 0, "max_tokens": 2000}))
        .send();
    // The client stops waiting (a timeout, a closed tab) long before 2000 tokens are done.
    assert!(tokio::time::timeout(Duration::from_millis(500), request)
        .await
        .is_err());

    let stats = stats_once_cancelled(&server).await;
    assert_eq!(stats["active"], 0, "{stats}");
    assert_eq!(
        stats["completed"], 1,
        "only the first request completed: {stats}"
    );
}

/// SmolLM2's generation counters as soon as one generation has been cancelled.
async fn stats_once_cancelled(server: &Server) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let model = server.model_status(SMOLLM2).await.expect("loaded");
        if model["stats"]["cancelled"] == 1 {
            return model["stats"].clone();
        }
        assert!(
            Instant::now() < deadline,
            "generation not cancelled: {model}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
