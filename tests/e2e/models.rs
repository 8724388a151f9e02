//! Model discovery, the second test model, and the small endpoints.

use serde_json::json;

use crate::support::{chat_body, Server, GEMMA, SMOLLM2};

#[tokio::test]
async fn models_health_and_ui_are_served() {
    let server = Server::start();
    let (status, health) = server.get("/health").await;
    assert_eq!((status, health), (200, json!({ "status": "ok" })));

    let (status, models) = server.get("/v1/models").await;
    assert_eq!(status, 200);
    assert_eq!(models["object"], "list");
    let ids: Vec<&str> = models["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|m| m["id"].as_str().expect("id"))
        .collect();
    assert!(ids.contains(&SMOLLM2) && ids.contains(&GEMMA), "{ids:?}");
    assert!(models["data"]
        .as_array()
        .expect("data")
        .iter()
        .all(|m| m["object"] == "model"));

    let page = server
        .client
        .get(server.url("/"))
        .send()
        .await
        .expect("sent");
    assert_eq!(page.status(), 200);
    assert!(page
        .text()
        .await
        .expect("html")
        .contains("<title>Headroom</title>"));
    let script = server
        .client
        .get(server.url("/ui/app.js"))
        .send()
        .await
        .expect("sent");
    assert_eq!(script.status(), 200);
}

#[tokio::test]
async fn gemma_3_loads_and_answers() {
    let server = Server::start();
    let (status, body) = server
        .post(
            "/v1/chat/completions",
            &chat_body(GEMMA, "Name a color.", 16, 5),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let text = body["choices"][0]["message"]["content"]
        .as_str()
        .expect("text");
    assert!(!text.trim().is_empty(), "{body}");
    // Gemma's GGUF has no chat template: llama.cpp's built-in Gemma format is used, and the
    // prompt must not leak the turn markers into the answer.
    assert!(
        !text.contains("<start_of_turn>") && !text.contains("<end_of_turn>"),
        "{text:?}"
    );
    let model = server.model_status(GEMMA).await.expect("gemma loaded");
    assert_eq!(model["state"], "ready");
    assert!(model["memory"]["weights"].as_u64().expect("weights") > 100_000_000);
}
