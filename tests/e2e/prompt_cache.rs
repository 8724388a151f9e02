//! The prompt cache: a chat's next turn reuses the KV of the conversation so far, answers
//! exactly what a cold run answers, and every dialect reports the reused tokens. Conversations
//! are saved when the model unloads and restored when it loads again.

use std::path::{Path, PathBuf};
use std::time::Instant;

use reqwest::Method;

use serde_json::{json, Value};

use crate::support::{Options, Server, GEMMA, SMOLLM2};

const QUESTIONS: [&str; 3] = [
    "What is the capital of France?",
    "And what river runs through it?",
    "Name one famous museum there.",
];

/// One greedy chat turn; returns the answer and the whole response.
pub(crate) async fn turn(
    server: &Server,
    model: &str,
    messages: &[Value],
    cache: Option<bool>,
) -> Value {
    let mut body =
        json!({"model": model, "messages": messages, "temperature": 0, "max_tokens": 40});
    if let Some(cache) = cache {
        body["cache_prompt"] = json!(cache);
    }
    let (status, response) = server.post("/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{response}");
    response
}

pub(crate) fn answer(response: &Value) -> String {
    response["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

pub(crate) fn cached(response: &Value) -> u64 {
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

/// The saved conversations' state files under a server's data folder.
pub(crate) fn saved_states(data: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for model in std::fs::read_dir(data.join("conversations"))
        .into_iter()
        .flatten()
        .flatten()
    {
        for file in std::fs::read_dir(model.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if file.path().extension().is_some_and(|e| e == "kv") {
                found.push(file.path());
            }
        }
    }
    found
}

pub(crate) async fn stop(server: &Server, model: &str) -> Value {
    let (status, report) = server
        .call(Method::DELETE, &format!("/api/memory/models/{model}"))
        .await;
    assert_eq!(status, 200, "{report}");
    report
}

/// A chat of [`QUESTIONS`], `model` stopped before every turn but the first: each turn after a
/// Stop restores the conversation from disk (at least the previous turn's prompt) and answers
/// exactly as the same turn with the cache off. Returns the conversation.
pub(crate) async fn chat_with_a_stop_before_each_turn(server: &Server, model: &str) -> Vec<Value> {
    let mut messages = Vec::new();
    let mut previous_prompt = 0;
    for (n, question) in QUESTIONS.iter().enumerate() {
        messages.push(json!({"role": "user", "content": question}));
        if n > 0 {
            let report = stop(server, model).await;
            let saved = saved_states(&server.data_dir());
            println!("stopped in {} ms; saved {saved:?}", report["duration_ms"]);
            assert!(!saved.is_empty(), "the unload saved the conversation");
        }
        let started = Instant::now();
        let warm = turn(server, model, &messages, None).await;
        let warm_ms = started.elapsed().as_millis();
        let cold = turn(server, model, &messages, Some(false)).await;
        let prompt = warm["usage"]["prompt_tokens"].as_u64().unwrap_or(0);
        println!(
            "turn {} after a reload: {} of {prompt} tokens restored, {warm_ms} ms (load included)",
            n + 1,
            cached(&warm)
        );
        assert_eq!(answer(&warm), answer(&cold), "turn {}", n + 1);
        if n > 0 {
            assert!(cached(&warm) >= previous_prompt, "turn {}: {warm}", n + 1);
        }
        previous_prompt = prompt;
        messages.push(json!({"role": "assistant", "content": answer(&warm)}));
    }
    assert!(server.stderr().contains("restored a saved conversation"));
    messages
}

/// A conversation survives its model's unload: the next turn after a Stop restores it from
/// disk and answers as a cold run does; a damaged save is deleted and never used.
#[tokio::test]
async fn a_conversation_survives_an_unload_and_a_damaged_save_is_ignored() {
    let server = Server::start();
    let messages = chat_with_a_stop_before_each_turn(&server, SMOLLM2).await;

    // Damaged saves: cut short, or garbage. None is used; the one tried (the longest, which
    // extends furthest into the prompt) is deleted.
    for damage in ["truncated", "garbage"] {
        stop(&server, SMOLLM2).await;
        let states = saved_states(&server.data_dir());
        let longest = states
            .iter()
            .max_by_key(|s| std::fs::metadata(s).map(|m| m.len()).unwrap_or(0))
            .cloned()
            .expect("saved");
        for state in states {
            let length = std::fs::metadata(&state).map(|m| m.len()).unwrap_or(0);
            match damage {
                "truncated" => std::fs::write(&state, vec![0u8; (length / 2) as usize]),
                _ => std::fs::write(&state, vec![0x5au8; length as usize]),
            }
            .expect("damaged");
        }
        let after = turn(&server, SMOLLM2, &messages, None).await;
        assert_eq!(cached(&after), 0, "{damage}: nothing restored: {after}");
        assert!(!answer(&after).is_empty());
        assert!(!longest.exists(), "{damage}: the damaged save was deleted");
        println!(
            "{damage} save: ignored and deleted, answered \"{}\"",
            answer(&after)
        );
    }
}

/// The disk budget holds however many conversations are saved: a hundred distinct ones, four
/// at a time (one per slot), under a budget of a few of them.
#[tokio::test]
async fn the_conversation_cache_stays_within_its_budget() {
    let budget = 4_000_000u64;
    let server = Server::start_with(Options {
        env: vec![("HEADROOM_CONVERSATION_CACHE", budget.to_string())],
        ..Default::default()
    });
    let total = |data: &Path| -> u64 { walk(&data.join("conversations")) };
    for round in 0..25 {
        let requests: Vec<_> = (0..4)
            .map(|k| {
                let n = round * 4 + k;
                let body = json!({"model": SMOLLM2, "max_tokens": 4, "temperature": 0,
                    "messages": [{"role": "user", "content": format!(
                        "Conversation {n}: tell me about the number {n} and its neighbours {} and {}.",
                        n + 1, n + 2)}]});
                let client = server.client.clone();
                let url = server.url("/v1/chat/completions");
                tokio::spawn(async move { client.post(url).json(&body).send().await })
            })
            .collect();
        for request in requests {
            let response = request.await.expect("joined").expect("sent");
            assert_eq!(response.status(), 200);
        }
        stop(&server, SMOLLM2).await;
        assert!(
            total(&server.data_dir()) <= budget,
            "round {round}: over budget"
        );
    }
    let files = saved_states(&server.data_dir()).len();
    println!(
        "100 conversations saved: {files} kept in {} bytes (budget {budget})",
        total(&server.data_dir())
    );
    assert!(files > 0 && files < 100, "{files} kept");
}

fn walk(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => walk(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}
