//! Anthropic's Messages API, driven by the official `anthropic` Python client
//! (`anthropic_client.py`, one check per run) over the same pool and generation as the OpenAI
//! routes.

use crate::support::{python_check, Options, Server, SMOLLM2};

fn check(server: &Server, name: &str) -> serde_json::Value {
    python_check(
        server,
        "anthropic_client.py",
        &server.url(""),
        SMOLLM2,
        name,
        &[],
    )
}

#[test]
fn messages_whole_and_streamed_through_the_sdk() {
    let server = Server::start();
    let whole = check(&server, "create");
    assert!(
        whole["text"].as_str().is_some_and(|t| t.contains("Paris")),
        "{whole}"
    );
    check(&server, "stream");
    let stopped = check(&server, "stop_sequence");
    assert!(
        stopped["without"]
            .as_str()
            .is_some_and(|t| t.contains("Paris")),
        "without the stop sequence the answer goes on: {stopped}"
    );
}

#[test]
fn a_forced_tool_use_and_its_result_turn() {
    let server = Server::start();
    let forced = check(&server, "forced_tool_use");
    assert_eq!(forced["input"]["city"], "Paris", "{forced}");
    check(&server, "streamed_tool_use");
}

#[test]
fn count_tokens_agrees_with_the_generation() {
    let server = Server::start();
    let counted = check(&server, "count_tokens");
    assert!(
        counted["input_tokens"].as_u64().unwrap_or(0) > 0,
        "{counted}"
    );
}

/// Mistakes in Anthropic's shape, and the key accepted as the SDK sends it (`x-api-key`).
#[test]
fn bad_input_answers_in_anthropics_shape_and_x_api_key_is_a_key() {
    let server = Server::start_with(Options {
        // The key anthropic_client.py sends.
        api_key: Some("headroom-e2e-key-0123456789abcdef".into()),
        ..Default::default()
    });
    let seen = check(&server, "bad_input");
    assert_eq!(seen["missing max_tokens"]["type"], "invalid_request_error");
    assert_eq!(seen["unknown model"]["type"], "not_found_error");
}
