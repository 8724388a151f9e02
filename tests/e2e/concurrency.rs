//! Concurrent requests share one loaded model.

use std::time::Duration;

use crate::support::{chat_body, file_size, mb, model_path, PeakRss, Server, SMOLLM2};

#[tokio::test]
async fn four_concurrent_requests_share_one_load_of_the_weights() {
    let server = Server::start();
    let file = file_size(&model_path(SMOLLM2));
    let idle_rss = server.rss();

    // One request loads the model and pages its weights in.
    let (status, body) = server
        .post("/v1/chat/completions", &chat_body(SMOLLM2, "Hi", 8, 1))
        .await;
    assert_eq!(status, 200, "{body}");
    let loaded_rss = server.rss();

    // Sample the server's RSS while four requests run at once, keeping the peak.
    let sampler = PeakRss::start(server.pid(), loaded_rss);
    let prompts = [
        "Tell me about cats.",
        "Tell me about dogs.",
        "Describe a forest.",
        "Explain rain.",
    ];
    let requests = prompts.iter().enumerate().map(|(i, prompt)| {
        let body = chat_body(SMOLLM2, prompt, 48, i as u64);
        let server = &server;
        async move { server.post("/v1/chat/completions", &body).await }
    });
    let results = futures::future::join_all(requests).await;
    let peak = sampler.stop();

    for (status, body) in &results {
        assert_eq!(*status, 200, "{body}");
        assert!(!body["choices"][0]["message"]["content"]
            .as_str()
            .expect("text")
            .is_empty());
    }
    let status = server.status().await;
    assert_eq!(status["pool"]["loads"][SMOLLM2], 1, "{status}");
    let model = server.model_status(SMOLLM2).await.expect("loaded");
    assert_eq!(model["stats"]["completed"], 5, "{model}");
    let context = model["memory"]["kv"].as_u64().expect("kv bytes")
        + model["memory"]["compute"].as_u64().expect("compute bytes");

    let concurrent_growth = peak.saturating_sub(loaded_rss);
    let total_growth = peak.saturating_sub(idle_rss);
    println!(
        "model file {:.1} MB; RSS idle {:.1} MB, loaded {:.1} MB, peak with 4 concurrent {:.1} MB; \
         concurrent growth {:.1} MB; growth from idle {:.1} MB of which KV+compute {:.1} MB",
        mb(file), mb(idle_rss), mb(loaded_rss), mb(peak), mb(concurrent_growth), mb(total_growth), mb(context)
    );
    // Four requests at once add less than half a model: nobody loaded a second copy.
    assert!(
        concurrent_growth * 2 < file * 3,
        "growth {concurrent_growth} vs file {file}"
    );
    // And from idle, memory is one copy of the weights plus the context the server reports.
    assert!(
        total_growth * 2 < file * 3 + context * 2,
        "growth from idle {total_growth}, file {file}, context {context}"
    );
}

#[tokio::test]
async fn requests_beyond_the_slots_wait_and_complete() {
    let server = Server::start_with(crate::support::Options {
        parallel: 2,
        ..Default::default()
    });
    let requests = (0..5).map(|i| {
        let body = chat_body(SMOLLM2, "Count to five.", 16, i);
        let server = &server;
        async move { server.post("/v1/chat/completions", &body).await }
    });
    for (status, body) in futures::future::join_all(requests).await {
        assert_eq!(status, 200, "{body}");
    }
    let model = server.model_status(SMOLLM2).await.expect("loaded");
    assert_eq!(model["stats"]["completed"], 5);
    assert_eq!(model["stats"]["queued"], 0);
    assert_eq!(model["stats"]["active"], 0);
}

#[tokio::test]
async fn a_full_queue_is_refused_with_503_and_retry_after() {
    let server = Server::start_with(crate::support::Options {
        parallel: 1,
        queue_size: 1,
        ..Default::default()
    });
    let long = serde_json::json!({"model": SMOLLM2, "prompt": "1, 2, 3,", "max_tokens": 200, "temperature": 0});
    let short = serde_json::json!({"model": SMOLLM2, "prompt": "1, 2, 3,", "max_tokens": 4, "temperature": 0});
    // Occupy the only slot, and wait until the worker has taken the request from the queue.
    let running = {
        let request = server
            .client
            .post(server.url("/v1/completions"))
            .json(&long)
            .send();
        tokio::spawn(request)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while server
        .model_status(SMOLLM2)
        .await
        .is_none_or(|m| m["stats"]["active"] != 1)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the long request never started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Five more: one fits the queue, four are refused.
    let requests = (0..5).map(|_| {
        let request = server
            .client
            .post(server.url("/v1/completions"))
            .json(&short)
            .send();
        async move {
            let response = request.await.expect("sent");
            let retry_after = response
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap_or("").to_string());
            (
                response.status().as_u16(),
                retry_after,
                response.json::<serde_json::Value>().await.expect("json"),
            )
        }
    });
    let results = futures::future::join_all(requests).await;
    let ok = results.iter().filter(|(s, _, _)| *s == 200).count();
    let refused: Vec<_> = results.iter().filter(|(s, _, _)| *s == 503).collect();
    assert_eq!((ok, refused.len()), (1, 4), "{results:?}");
    for (_, retry_after, body) in refused {
        assert_eq!(retry_after.as_deref(), Some("1"));
        assert_eq!(body["error"]["code"], "queue_full");
    }
    let first = running.await.expect("task").expect("sent");
    assert_eq!(first.status(), 200);
}
