//! A client that hangs up mid-stream stops its generation, in every dialect.

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

#[tokio::test]
async fn many_clients_hanging_up_at_once_leave_no_generation_task_or_connection_behind() {
    let server = Server::start();
    server.complete_ok(SMOLLM2, 1).await;
    let tasks_before = server.metric("headroom_runtime_tasks_alive").await;
    let connections_before = server.metric("headroom_connections_open").await;

    // Sixteen streamed counts on four slots: four generate, twelve wait in the queue. Each
    // client has its own connection, as separate programs would.
    let clients: Vec<_> = (0..16)
        .map(|_| {
            let url = server.url("/v1/completions");
            tokio::spawn(async move {
                let body = json!({"model": SMOLLM2, "prompt": "1, 2, 3, 4, 5,", "temperature": 0,
                                  "max_tokens": 1000, "stream": true});
                let mut response = reqwest::Client::new()
                    .post(url)
                    .json(&body)
                    .send()
                    .await
                    .expect("sent");
                while let Ok(Some(_)) = response.chunk().await {}
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let model = server.model_status(SMOLLM2).await.expect("loaded");
        if model["stats"]["active"] == 4 && model["stats"]["queued"] == 12 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never 4 running and 12 waiting: {model}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let busy_tasks = server.metric("headroom_runtime_tasks_alive").await;
    let busy_connections = server.metric("headroom_connections_open").await;
    // All hang up at once.
    for client in &clients {
        client.abort();
    }

    let deadline = Instant::now() + Duration::from_secs(10);
    let (stats, tasks, connections) = loop {
        let model = server.model_status(SMOLLM2).await.expect("loaded");
        let tasks = server.metric("headroom_runtime_tasks_alive").await;
        let connections = server.metric("headroom_connections_open").await;
        let settled = model["stats"]["active"] == 0
            && model["stats"]["queued"] == 0
            && model["in_flight"] == 0
            && tasks <= tasks_before
            && connections <= connections_before;
        if settled || Instant::now() > deadline {
            break (model["stats"].clone(), tasks, connections);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!(
        "16 clients hung up: tasks {tasks_before} → {busy_tasks} busy → {tasks}; connections \
         {connections_before} → {busy_connections} → {connections}; stats {stats}"
    );
    assert_eq!(stats["active"], 0, "{stats}");
    assert_eq!(stats["queued"], 0, "{stats}");
    assert!(busy_tasks > tasks_before, "the streams ran as tasks");
    assert!(
        tasks <= tasks_before,
        "tasks left behind: {tasks} alive, {tasks_before} before"
    );
    assert!(
        connections <= connections_before,
        "connections left open: {connections}"
    );
    // None ran on to its 1000 tokens.
    assert!(stats["cancelled"].as_u64() >= Some(4), "{stats}");
    assert_eq!(stats["completed"], 1, "only the warm-up completed: {stats}");
    server.complete_ok(SMOLLM2, 4).await;
}

/// Every dialect's stream (Ollama's NDJSON, Anthropic's and the Responses API's events) stops
/// its generation when the client hangs up, and the record names the dialect.
#[tokio::test]
async fn each_dialects_stream_stops_when_its_client_hangs_up() {
    let server = Server::start();
    server.complete_ok(SMOLLM2, 1).await;
    let count = "Count from 1 to 1000, separated by commas: 1, 2, 3,";
    let dialects = [
        (
            "ollama_chat",
            "/api/chat",
            json!({"model": SMOLLM2, "messages": [{"role": "user", "content": count}],
                   "options": {"num_predict": 1000, "temperature": 0}}),
        ),
        (
            "ollama_generate",
            "/api/generate",
            json!({"model": SMOLLM2, "prompt": "1, 2, 3, 4, 5,", "raw": true,
                   "options": {"num_predict": 1000, "temperature": 0}}),
        ),
        (
            "anthropic_messages",
            "/v1/messages",
            json!({"model": SMOLLM2, "max_tokens": 1000, "temperature": 0, "stream": true,
                   "messages": [{"role": "user", "content": count}]}),
        ),
        (
            "openai_responses",
            "/v1/responses",
            json!({"model": SMOLLM2, "max_output_tokens": 1000, "temperature": 0, "stream": true,
                   "input": count}),
        ),
    ];
    for (cancelled, (dialect, path, body)) in dialects.into_iter().enumerate() {
        let model = server.model_status(SMOLLM2).await.expect("loaded");
        let before = model["stats"]["generated_tokens"].as_u64().unwrap_or(0);
        let mut response = server
            .client
            .post(server.url(path))
            .json(&body)
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 200, "{path}");
        // A dozen lines: a few NDJSON objects, or a few events of three lines each.
        let mut lines = 0;
        while lines < 12 {
            let chunk = response
                .chunk()
                .await
                .expect("read")
                .expect("stream still open");
            lines += chunk.iter().filter(|&&b| b == b'\n').count();
        }
        drop(response);
        let stats = stats_once(&server, "cancelled", cancelled as u64 + 1).await;
        assert_eq!(stats["active"], 0, "{path}: {stats}");
        let (_, recent) = server.get("/api/metrics/generations").await;
        let last = recent["generations"]
            .as_array()
            .and_then(|records| records.last())
            .cloned()
            .unwrap_or_default();
        let generated = stats["generated_tokens"].as_u64().unwrap_or(u64::MAX) - before;
        println!(
            "{path}: hung up after {lines} lines, {generated} tokens generated; recorded {last}"
        );
        assert_eq!(last["dialect"], dialect, "{recent}");
        assert_eq!(last["outcome"], "cancelled", "{last}");
        assert!(generated < 60, "{path} kept generating: {stats}");
    }
    assert_eq!(
        stats_once(&server, "completed", 1).await["completed"],
        1,
        "only the warm-up completed"
    );
}

/// SmolLM2's generation counters as soon as one generation has been cancelled.
async fn stats_once_cancelled(server: &Server) -> serde_json::Value {
    stats_once(server, "cancelled", 1).await
}

/// SmolLM2's generation counters once `counter` has reached `n`.
async fn stats_once(server: &Server, counter: &str, n: u64) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let model = server.model_status(SMOLLM2).await.expect("loaded");
        if model["stats"][counter].as_u64() >= Some(n) {
            return model["stats"].clone();
        }
        assert!(
            Instant::now() < deadline,
            "generation not cancelled: {model}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
