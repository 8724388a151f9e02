//! Ollama's own API, driven by the official `ollama` Python client (`ollama_client.py`, one
//! check per run): chat and generate whole and as NDJSON, tools and `format`, list/ps/show, and
//! `keep_alive: 0` unloading, over the same pool as every other route.

use crate::support::{python_check, Server, MINILM, SMOLLM2};

fn check(server: &Server, name: &str) -> serde_json::Value {
    python_check(
        server,
        "ollama_client.py",
        &server.url(""),
        SMOLLM2,
        name,
        &[MINILM],
    )
}

#[test]
fn chat_and_generate_whole_and_streamed() {
    let server = Server::start();
    check(&server, "chat");
    let generated = check(&server, "generate");
    assert!(
        generated["raw"]
            .as_str()
            .is_some_and(|r| r.trim().starts_with('5')),
        "{generated}"
    );
}

#[test]
fn tools_and_a_format_schema() {
    let server = Server::start();
    let measured = check(&server, "tools_and_format");
    assert!(measured["format"]["city"].is_string(), "{measured}");
}

/// `ps` reports what the model really holds, which the pool's own status agrees with.
#[tokio::test]
async fn list_ps_show_and_keep_alive_zero_unloads() {
    let server = Server::start();
    let measured = check(&server, "list_ps_and_keep_alive");
    assert!(
        measured["ps_size"].as_u64().unwrap_or(0) > 10_000_000,
        "{measured}"
    );
    let (status, memory) = server.get("/api/memory/status").await;
    assert_eq!(status, 200);
    let still_loaded = memory["models"]
        .as_array()
        .is_some_and(|models| models.iter().any(|m| m["id"] == SMOLLM2));
    assert!(!still_loaded, "keep_alive 0 left it loaded: {memory}");
}

#[test]
fn embed_ranks_a_paraphrase_above_an_unrelated_sentence() {
    let server = Server::start();
    let measured = check(&server, "embed");
    assert!(
        measured["paraphrase"].as_f64().unwrap_or(0.0) > 0.9,
        "{measured}"
    );
}
