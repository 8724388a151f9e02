//! The sampler set on a real model: what a request leaves out comes from the model's file or
//! llama-server's defaults, `logit_bias` reaches the logits, and settings the model cannot take
//! are a 400.

use serde_json::{json, Value};

use crate::support::{Server, SMOLLM2};

fn capital_of_france(seed: u64, samplers: &Value) -> Value {
    let mut body = json!({
        "model": SMOLLM2,
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "max_tokens": 64,
        "seed": seed,
    });
    if let (Some(body), Some(extra)) = (body.as_object_mut(), samplers.as_object()) {
        body.extend(extra.clone());
    }
    body
}

/// The README's first request (no sampler named) to the default 135M model, ten seeds: with
/// llama-server's samplers it answers Paris; with OpenAI's defaults (temperature 1, nothing cut
/// off) it wanders off, which is what a newcomer met before.
#[tokio::test]
async fn the_first_request_a_newcomer_types_shows_the_model_at_its_best() {
    let server = Server::start();
    let mut paris = [0, 0];
    let openai = json!({"temperature": 1.0, "top_p": 1.0, "top_k": 0, "min_p": 0.0});
    for seed in 1..=10 {
        for (count, samplers) in paris.iter_mut().zip([json!({}), openai.clone()]) {
            let (status, answer) = server
                .post("/v1/chat/completions", &capital_of_france(seed, &samplers))
                .await;
            assert_eq!(status, 200, "{answer}");
            let text = answer["choices"][0]["message"]["content"]
                .as_str()
                .unwrap_or_default();
            if text.contains("Paris") {
                *count += 1;
            }
        }
    }
    println!(
        "Paris in {} of 10 answers with the defaults, {} of 10 at OpenAI's temperature 1 with nothing cut off",
        paris[0], paris[1]
    );
    assert!(paris[0] >= 7, "{paris:?}");
}

#[tokio::test]
async fn logit_bias_reaches_the_logits_and_is_checked_against_the_vocabulary() {
    let server = Server::start();
    let count = |bias: Value| {
        json!({
            "model": SMOLLM2, "prompt": "1, 2, 3, 4, 5,", "temperature": 0,
            "max_tokens": 6, "logit_bias": bias,
        })
    };
    let (status, plain) = server.post("/v1/completions", &count(json!({}))).await;
    assert_eq!(status, 200, "{plain}");
    // +100 on one token: greedy decoding picks it every time.
    let (status, biased) = server
        .post("/v1/completions", &count(json!({"42": 100})))
        .await;
    assert_eq!(status, 200, "{biased}");
    let plain = plain["choices"][0]["text"].as_str().unwrap_or_default();
    let biased = biased["choices"][0]["text"].as_str().unwrap_or_default();
    println!("greedy count {plain:?}; with token 42 at +100: {biased:?}");
    assert_ne!(plain, biased);
    let piece = &biased[..biased.len() / 6];
    assert_eq!(biased, piece.repeat(6), "one token six times");

    // A token the model does not have.
    let (status, answer) = server
        .post("/v1/completions", &count(json!({"999999": 1})))
        .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["code"], "invalid_logit_bias", "{answer}");
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("999999"), "{message}");
    // Out of range, and not a token id.
    for bias in [json!({"42": 500}), json!({"hello": 1})] {
        let (status, answer) = server.post("/v1/completions", &count(bias)).await;
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["error"]["code"], "invalid_logit_bias", "{answer}");
    }
    // The server is unaffected.
    server.complete_ok(SMOLLM2, 2).await;
}

#[tokio::test]
async fn every_sampler_is_taken_and_the_same_seed_gives_the_same_text() {
    let server = Server::start();
    let body = json!({
        "model": SMOLLM2, "prompt": "Once upon a time", "max_tokens": 24, "seed": 11,
        "temperature": 0.9, "top_k": 30, "top_p": 0.9, "min_p": 0.02, "typical_p": 0.95,
        "repeat_penalty": 1.1, "repeat_last_n": 32, "presence_penalty": 0.3,
        "frequency_penalty": 0.2,
    });
    let (status, one) = server.post("/v1/completions", &body).await;
    assert_eq!(status, 200, "{one}");
    let (_, two) = server.post("/v1/completions", &body).await;
    assert_eq!(one["choices"][0]["text"], two["choices"][0]["text"]);
    for (field, value) in [
        ("top_k", json!(-1)),
        ("min_p", json!(2)),
        ("typical_p", json!(0)),
        ("repeat_penalty", json!(0)),
        ("presence_penalty", json!(5)),
        ("frequency_penalty", json!(-3)),
    ] {
        let mut bad = body.clone();
        bad[field] = value;
        let (status, answer) = server.post("/v1/completions", &bad).await;
        assert_eq!(status, 400, "{field}: {answer}");
        assert_eq!(
            answer["error"]["code"],
            format!("invalid_{field}"),
            "{answer}"
        );
    }
}
