//! Chat and text completions against SmolLM2, whole and streamed.

use serde_json::{json, Value};

use crate::support::{chat_body, sse_data, Server, SMOLLM2};

async fn stream(server: &Server, path: &str, mut body: Value) -> Vec<String> {
    body["stream"] = json!(true);
    let response = server
        .client
        .post(server.url(path))
        .json(&body)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().expect("ascii"),
        "text/event-stream"
    );
    sse_data(&response.text().await.expect("body"))
}

#[tokio::test]
async fn a_chat_completion_answers_with_text_and_exact_usage() {
    let server = Server::start();
    let (status, body) = server
        .post(
            "/v1/chat/completions",
            &chat_body(SMOLLM2, "What is the capital of France?", 24, 7),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "chat.completion");
    assert!(body["id"].as_str().expect("id").starts_with("chatcmpl-"));
    assert_eq!(body["model"], SMOLLM2);
    let choice = &body["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant");
    let text = choice["message"]["content"].as_str().expect("content");
    assert!(!text.trim().is_empty(), "empty answer: {body}");
    let usage = &body["usage"];
    let prompt = usage["prompt_tokens"].as_u64().expect("prompt_tokens");
    let completion = usage["completion_tokens"]
        .as_u64()
        .expect("completion_tokens");
    // SmolLM2's template adds its default system prompt: well over the 8 tokens of the question.
    assert!(prompt > 20, "prompt_tokens {prompt}");
    assert!(
        (1..=24).contains(&completion),
        "completion_tokens {completion}"
    );
    assert_eq!(usage["total_tokens"].as_u64(), Some(prompt + completion));
    let finish = choice["finish_reason"].as_str().expect("finish_reason");
    assert!(
        finish == "stop" || (finish == "length" && completion == 24),
        "{finish} after {completion}"
    );
}

#[tokio::test]
async fn a_streamed_chat_is_well_formed_and_matches_the_same_seed_unstreamed() {
    let server = Server::start();
    let body = chat_body(SMOLLM2, "Write one sentence about the sea.", 40, 1234);
    let (status, whole) = server.post("/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{whole}");
    let events = stream(&server, "/v1/chat/completions", body).await;

    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "{events:?}"
    );
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap_or_else(|_| panic!("chunk is not JSON: {e}")))
        .collect();
    assert!(chunks.len() >= 3, "{events:?}");
    let id = chunks[0]["id"].clone();
    for chunk in &chunks {
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["id"], id, "one id for the whole stream");
        assert_eq!(chunk["model"], SMOLLM2);
    }
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let streamed: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    let last = chunks.last().expect("final chunk");
    for chunk in &chunks[..chunks.len() - 1] {
        assert!(chunk["choices"][0]["finish_reason"].is_null());
    }
    assert_eq!(
        streamed,
        whole["choices"][0]["message"]["content"]
            .as_str()
            .expect("text")
    );
    assert_eq!(
        last["choices"][0]["finish_reason"],
        whole["choices"][0]["finish_reason"]
    );
    assert_eq!(last["usage"], whole["usage"]);
}

#[tokio::test]
async fn text_completions_default_to_16_tokens_and_honour_stop_strings() {
    let server = Server::start();
    let (status, body) = server
        .post(
            "/v1/completions",
            &json!({ "model": SMOLLM2, "prompt": "The quick brown fox", "seed": 3 }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "text_completion");
    assert!(body["usage"]["completion_tokens"].as_u64().expect("usage") <= 16);
    assert!(body["choices"][0]["text"].is_string());

    // Greedy counting: the model writes " 6, 7, 8, ..." and must stop before " 8".
    let counting = json!({
        "model": SMOLLM2, "prompt": "1, 2, 3, 4, 5,", "temperature": 0,
        "max_tokens": 40, "stop": [" 8"],
    });
    let (status, body) = server.post("/v1/completions", &counting).await;
    assert_eq!(status, 200, "{body}");
    let text = body["choices"][0]["text"].as_str().expect("text");
    assert_eq!(body["choices"][0]["finish_reason"], "stop", "{body}");
    assert!(text.starts_with(" 6, 7,"), "{text:?}");
    assert!(!text.contains('8'), "stop string leaked: {text:?}");

    // The same through the stream, where the stop string arrives split over tokens.
    let events = stream(&server, "/v1/completions", counting).await;
    let streamed: String = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str::<Value>(e).expect("JSON"))
        .filter_map(|c| c["choices"][0]["text"].as_str().map(str::to_string))
        .collect();
    assert_eq!(streamed, text);
}

#[tokio::test]
async fn greedy_is_deterministic_and_seeds_matter_when_sampling() {
    let server = Server::start();
    let greedy = json!({ "model": SMOLLM2, "prompt": "Once upon a time", "temperature": 0, "max_tokens": 24 });
    let (_, a) = server.post("/v1/completions", &greedy).await;
    let (_, b) = server.post("/v1/completions", &greedy).await;
    assert_eq!(a["choices"][0]["text"], b["choices"][0]["text"]);

    let sampled = |seed: u64| json!({ "model": SMOLLM2, "prompt": "Once upon a time", "temperature": 1.5, "max_tokens": 24, "seed": seed });
    let mut texts = std::collections::BTreeSet::new();
    for seed in 1..=4 {
        let (_, body) = server.post("/v1/completions", &sampled(seed)).await;
        texts.insert(
            body["choices"][0]["text"]
                .as_str()
                .expect("text")
                .to_string(),
        );
    }
    assert!(
        texts.len() > 1,
        "four seeds at temperature 1.5 gave one text: {texts:?}"
    );
}

#[tokio::test]
async fn include_usage_streams_the_usage_in_a_last_chunk_of_its_own() {
    let server = Server::start();
    let body = json!({
        "model": SMOLLM2,
        "prompt": "1, 2, 3, 4, 5,",
        "max_tokens": 8, "temperature": 0, "stream": true,
        "stream_options": {"include_usage": true},
    });
    let response = server
        .client
        .post(server.url("/v1/completions"))
        .json(&body)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    let text = response.text().await.expect("body");
    let data = sse_data(&text);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{text}");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).expect("json"))
        .collect();
    let (last, rest) = chunks.split_last().expect("chunks");
    assert_eq!(last["choices"], json!([]), "{last}");
    assert_eq!(last["usage"]["completion_tokens"], 8, "{last}");
    assert_eq!(last["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    assert!(rest.iter().all(|c| c["usage"].is_null()), "{text}");
    assert!(rest
        .last()
        .is_some_and(|c| c["choices"][0]["finish_reason"] == "length"));
}
