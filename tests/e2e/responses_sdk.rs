//! OpenAI's Responses API (`/v1/responses`) driven by the official `openai` Python client
//! (`responses_client.py`, one check per run): plain and streamed answers, a cut-off answer,
//! function calls and their outputs, JSON schema output, reasoning items and bad input.

use serde_json::Value;

use crate::support::{python_check, retemplated, Options, Server, GEMMA, SMOLLM2};

fn check(server: &Server, model: &str, name: &str) -> Value {
    python_check(
        server,
        "responses_client.py",
        &server.url("/v1"),
        model,
        name,
        &[],
    )
}

#[test]
fn plain_and_streamed_responses_agree() {
    let server = Server::start();
    for model in [SMOLLM2, GEMMA] {
        let measured = check(&server, model, "plain");
        assert!(measured["events"].as_u64().unwrap_or(0) > 4, "{measured}");
    }
    check(&server, SMOLLM2, "incomplete");
}

#[test]
fn a_function_call_and_its_output_make_a_round_trip() {
    let server = Server::start();
    for model in [SMOLLM2, GEMMA] {
        let measured = check(&server, model, "function_call");
        assert!(measured["arguments"]["city"].is_string(), "{measured}");
    }
}

#[test]
fn json_schema_output_validates_and_parses() {
    let server = Server::start();
    for model in [SMOLLM2, GEMMA] {
        check(&server, model, "json_schema");
    }
}

/// SmolLM2 given a template whose generation prompt opens `<think>` (a fixture), as
/// reasoning models' templates do.
#[test]
fn thinking_is_a_reasoning_item() {
    let dir = tempfile::tempdir().expect("temp dir");
    let model = "SmolLM2-135M-thinking";
    retemplated(dir.path(), model, "thinking.jinja");
    let server = Server::start_with(Options {
        extra_models_dir: Some(dir.path().to_path_buf()),
        ..Default::default()
    });
    let measured = check(&server, model, "reasoning");
    assert_eq!(measured["items"][0], "reasoning", "{measured}");
}

#[test]
fn what_cannot_be_served_is_refused_in_openais_shape() {
    let server = Server::start();
    let seen = check(&server, SMOLLM2, "bad_input");
    assert_eq!(
        seen["previous_response_id"]["code"],
        "stored_responses_unsupported"
    );
    assert_eq!(seen["web_search tool"]["code"], "invalid_tools");
    assert_eq!(seen["bad schema"]["code"], "invalid_response_format");
    assert_eq!(seen["image input"]["code"], "invalid_input");
    assert_eq!(seen["unknown item type"]["code"], "invalid_input");
    assert_eq!(seen["unknown model"]["status"], 404);
    assert_eq!(seen["retrieve"]["code"], "response_not_found");
}
