//! The prompt cache: a chat's next turn reuses the KV of the conversation so far, answers
//! exactly what a cold run answers, and every dialect reports the reused tokens.

use std::time::Instant;

use serde_json::{json, Value};

use crate::support::{Options, Server, GEMMA, SMOLLM2};

const QUESTIONS: [&str; 3] = [
    "What is the capital of France?",
    "And what river runs through it?",
    "Name one famous museum there.",
];

/// One greedy chat turn; returns the answer and the whole response.
async fn turn(server: &Server, model: &str, messages: &[Value], cache: Option<bool>) -> Value {
    let mut body =
        json!({"model": model, "messages": messages, "temperature": 0, "max_tokens": 40});
    if let Some(cache) = cache {
        body["cache_prompt"] = json!(cache);
    }
    let (status, response) = server.post("/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{response}");
    response
}

fn answer(response: &Value) -> String {
    response["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn cached(response: &Value) -> u64 {
    response["usage"]["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap_or(u64::MAX)
}

/// A three-turn chat, each turn appending the server's own answer: from the second turn on, the
/// conversation so far comes from the cache, and the answer is the one the same turn gives with
/// the cache off. Gemma 3 has sliding-window layers, SmolLM2 none.
#[tokio::test]
async fn the_next_turn_reuses_the_conversation_and_answers_as_a_cold_run_does() {
    let server = Server::start();
    for model in [SMOLLM2, GEMMA] {
        let mut messages = Vec::new();
        let mut previous_prompt = 0;
        for (n, question) in QUESTIONS.iter().enumerate() {
            messages.push(json!({"role": "user", "content": question}));
            let warm_started = Instant::now();
            let warm = turn(&server, model, &messages, None).await;
            let warm_ms = warm_started.elapsed().as_millis();
            // The cold run goes to the other slot, leaving this conversation's alone.
            let cold_started = Instant::now();
            let cold = turn(&server, model, &messages, Some(false)).await;
            let cold_ms = cold_started.elapsed().as_millis();
            let prompt = warm["usage"]["prompt_tokens"].as_u64().unwrap_or(0);
            println!(
                "{model} turn {}: prompt {prompt} tokens, {} cached; {warm_ms} ms warm, {cold_ms} ms cold",
                n + 1,
                cached(&warm)
            );
            assert_eq!(
                cached(&cold),
                0,
                "cache_prompt false computes it all: {cold}"
            );
            assert_eq!(answer(&warm), answer(&cold), "turn {}", n + 1);
            if n == 0 {
                assert_eq!(cached(&warm), 0, "nothing to reuse yet: {warm}");
            } else {
                // At least the previous turn's prompt is reused (the answer too, where the
                // template writes it back as the model wrote it).
                assert!(
                    cached(&warm) >= previous_prompt && cached(&warm) < prompt,
                    "turn {}: {} cached of {prompt}, previous prompt {previous_prompt}",
                    n + 1,
                    cached(&warm)
                );
            }
            previous_prompt = prompt;
            messages.push(json!({"role": "assistant", "content": answer(&warm)}));
        }
    }
    let cached_total = server
        .metric("headroom_prompt_tokens_cached_total{model=\"SmolLM2-135M-Instruct.Q4_1\"}")
        .await;
    assert!(cached_total > 0.0, "/metrics counts cached prompt tokens");
}

/// Two conversations taking turns on a model with two slots: each goes back to the slot that
/// holds it, so neither pushes the other out.
#[tokio::test]
async fn two_conversations_taking_turns_each_keep_their_slot() {
    let server = Server::start_with(Options {
        parallel: 2,
        ..Default::default()
    });
    let mut chats = [
        vec![json!({"role": "system", "content": "You are a geography teacher."})],
        vec![json!({"role": "system", "content": "You answer questions about cooking."})],
    ];
    let topics = [
        ["What is the capital of Italy?", "What is its population?"],
        ["How do I boil an egg?", "How long for a soft one?"],
    ];
    for round in 0..2 {
        for (chat, topic) in chats.iter_mut().zip(&topics) {
            chat.push(json!({"role": "user", "content": topic[round]}));
            let response = turn(&server, SMOLLM2, chat, None).await;
            let prompt = response["usage"]["prompt_tokens"].as_u64().unwrap_or(0);
            println!("round {round}: {} of {prompt} cached", cached(&response));
            if round == 1 {
                assert!(
                    cached(&response) * 2 > prompt,
                    "the conversation's own slot was reused: {response}"
                );
            }
            chat.push(json!({"role": "assistant", "content": answer(&response)}));
        }
    }
}

/// The other dialects report the reuse in their own words: Anthropic's
/// `cache_read_input_tokens` (with `input_tokens` the rest), Ollama's `prompt_eval_count` (the
/// tokens it evaluated), the Responses API's `input_tokens_details.cached_tokens`. The
/// `cache_prompt` setting turns it off for requests that do not say.
#[tokio::test]
async fn every_dialect_reports_the_reused_tokens_and_the_setting_turns_it_off() {
    let server = Server::start();
    let question = [json!({"role": "user", "content": "What is the capital of France?"})];
    // The same request twice: the second reuses all of its prompt but the last token.
    let anthropic = json!({"model": SMOLLM2, "max_tokens": 8, "messages": question});
    server.post("/v1/messages", &anthropic).await;
    let (_, again) = server.post("/v1/messages", &anthropic).await;
    let usage = &again["usage"];
    println!("Anthropic: {usage}");
    assert!(
        usage["cache_read_input_tokens"].as_u64() > Some(10),
        "{again}"
    );
    assert_eq!(usage["input_tokens"], 1, "{again}");

    let ollama = json!({"model": SMOLLM2, "messages": question, "stream": false,
                        "options": {"num_predict": 8}});
    let (_, again) = server.post("/api/chat", &ollama).await;
    println!("Ollama: prompt_eval_count {}", again["prompt_eval_count"]);
    assert_eq!(again["prompt_eval_count"], 1, "{again}");

    let responses = json!({"model": SMOLLM2, "input": question, "max_output_tokens": 8});
    let (_, again) = server.post("/v1/responses", &responses).await;
    let details = &again["usage"]["input_tokens_details"];
    assert_eq!(
        details["cached_tokens"].as_u64(),
        again["usage"]["input_tokens"].as_u64().map(|n| n - 1),
        "{again}"
    );

    let off = Server::start_with(Options {
        env: vec![("HEADROOM_CACHE_PROMPT", "false".into())],
        ..Default::default()
    });
    let chat = json!({"model": SMOLLM2, "messages": question, "max_tokens": 4});
    off.post("/v1/chat/completions", &chat).await;
    let (_, again) = off.post("/v1/chat/completions", &chat).await;
    assert_eq!(cached(&again), 0, "{again}");
    let mut asked = chat.clone();
    asked["cache_prompt"] = json!(true);
    let (_, asked) = off.post("/v1/chat/completions", &asked).await;
    assert!(cached(&asked) > 0, "a request's cache_prompt wins: {asked}");
}
