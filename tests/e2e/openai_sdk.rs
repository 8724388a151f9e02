//! Tool calls, structured output, log-probabilities, reasoning and embeddings, driven by the
//! official `openai` Python client (`openai_client.py`, one check per run) against both test models, whose templates
//! know no tools: they get the generic format, its grammar and its system message.

use serde_json::Value;

use crate::support::{python_check, retemplated, Server, GEMMA, MINILM, SMOLLM2};

/// Runs one check of `openai_client.py`; panics with its output if it fails.
fn check(server: &Server, model: &str, name: &str) -> Value {
    check_with(server, model, name, &[])
}

fn check_with(server: &Server, model: &str, name: &str, extra: &[&str]) -> Value {
    python_check(
        server,
        "openai_client.py",
        &server.url("/v1"),
        model,
        name,
        extra,
    )
}

#[test]
fn a_forced_call_satisfies_its_schema_and_the_answer_goes_back() {
    let server = Server::start();
    for model in [SMOLLM2, GEMMA] {
        let measured = check(&server, model, "forced_call");
        assert_eq!(measured["arguments"]["city"], "Paris", "{measured}");
    }
}

#[test]
fn a_streamed_call_is_reassembled_by_the_client() {
    let server = Server::start();
    for model in [SMOLLM2, GEMMA] {
        check(&server, model, "streamed_call");
    }
}

#[test]
fn required_and_auto_choices_give_valid_calls_or_answers() {
    let server = Server::start();
    check(&server, SMOLLM2, "required_parallel");
    check(&server, SMOLLM2, "auto_choice");
}

#[test]
fn json_schema_and_json_object_answers_validate() {
    let server = Server::start();
    for model in [SMOLLM2, GEMMA] {
        check(&server, model, "json_schema");
    }
    check(&server, SMOLLM2, "json_object");
}

#[test]
fn logprobs_are_the_models_own_and_sum_sensibly() {
    let server = Server::start();
    for model in [SMOLLM2, GEMMA] {
        let measured = check(&server, model, "logprobs");
        assert!(measured["tokens"].as_u64().unwrap_or(0) > 0, "{measured}");
    }
}

#[test]
fn bad_tools_schemas_and_settings_are_400s_and_the_server_goes_on() {
    let server = Server::start();
    let seen = check(&server, SMOLLM2, "bad_input");
    assert_eq!(seen["malformed tool schema"]["code"], "invalid_tools");
    assert_eq!(seen["not JSON Schema"]["code"], "invalid_tools");
    assert_eq!(
        seen["tool_choice names no tool"]["code"],
        "invalid_tool_choice"
    );
    assert_eq!(seen["top_logprobs 99"]["code"], "invalid_logprobs");
    assert_eq!(
        seen["bad response schema"]["code"],
        "invalid_response_format"
    );
    assert_eq!(seen["10 MB logit_bias"]["code"], "request_too_large");
    assert_eq!(
        seen["5000 logit_bias entries"]["code"],
        "invalid_logit_bias"
    );
}

/// The embedding model (all-MiniLM-L6-v2, converted from PyPI) through the same pool: loaded
/// on the first request and shown with its measured memory like any model.
#[tokio::test]
async fn embeddings_rank_a_paraphrase_above_an_unrelated_sentence() {
    let server = Server::start();
    let measured = check_with(&server, MINILM, "embeddings", &[SMOLLM2]);
    assert_eq!(measured["dimension"], 384);
    let (status, memory) = server.get("/api/memory/status").await;
    assert_eq!(status, 200);
    let model = memory["models"]
        .as_array()
        .and_then(|models| models.iter().find(|m| m["id"] == MINILM))
        .cloned()
        .unwrap_or_default();
    assert_eq!(model["state"], "ready", "{memory}");
    let total = model["memory"]["total"].as_u64().unwrap_or(0);
    println!("all-MiniLM-L6-v2 holds {total} bytes");
    assert!(total > 20_000_000, "{model}");
}

/// The native path: SmolLM2 given a template written as Qwen 2.5's, so it is offered the tools
/// in `<tools>` and its calls are constrained to, and read from, `<tool_call>` blocks.
#[test]
fn a_hermes_template_gets_hermes_calls() {
    let dir = tempfile::tempdir().expect("temp dir");
    let model = "SmolLM2-135M-hermes";
    retemplated(dir.path(), model, "hermes.jinja");
    let server = Server::start_with(crate::support::Options {
        extra_models_dir: Some(dir.path().to_path_buf()),
        ..Default::default()
    });
    let forced = check(&server, model, "forced_call");
    assert_eq!(forced["arguments"]["city"], "Paris", "{forced}");
    check(&server, model, "streamed_call");
    check(&server, model, "auto_choice");
    assert!(
        server.stderr().contains("tool calls in the hermes format"),
        "{}",
        server.stderr()
    );
}

/// Reasoning: SmolLM2 given a template whose generation prompt opens `<think>`, as DeepSeek-R1's
/// and Qwen3's do; no thinking model small enough is on PyPI.
#[test]
fn thinking_goes_to_reasoning_content() {
    let dir = tempfile::tempdir().expect("temp dir");
    let model = "SmolLM2-135M-thinking";
    retemplated(dir.path(), model, "thinking.jinja");
    let server = Server::start_with(crate::support::Options {
        extra_models_dir: Some(dir.path().to_path_buf()),
        ..Default::default()
    });
    let measured = check(&server, model, "reasoning");
    assert!(
        measured["reasoning_chars"].as_u64().unwrap_or(0) > 0,
        "{measured}"
    );
}
