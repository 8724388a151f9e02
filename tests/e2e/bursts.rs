//! Another app allocating fast beside a busy model: one v1 memory cgroup limited to 1200 MiB,
//! no swap, Headroom inside with Gemma 3 270M loaded and streaming, and a second process in the
//! same cgroup taking 1100 MiB in steps every 50 ms and holding it. Tiers checked once a second
//! lose that race at a few hundred MB/s (the kernel kills the other process); the monitor must
//! see the growth rate and unload in time. Nothing in the cgroup may be OOM-killed, the other
//! process must hold its memory, and Headroom must serve a request afterwards.
//!
//! Each rate runs [`ROUNDS`] times, each on a fresh cgroup and server: a pass that depends on
//! luck is a failure.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::notifications::NotificationRecorder;
use crate::pressure::MemoryCgroup;
use crate::support::{join_cgroups, sse_data, Options, Server, GEMMA, SMOLLM2};

const ROUNDS: usize = 3;
const LIMIT: u64 = 1200 << 20;
const TAKEN_MIB: u64 = 1100;

/// The allocator (see the script).
const ALLOCATOR: &str = include_str!("allocate.py");

#[tokio::test]
async fn a_burst_at_100_mb_s_beside_a_generation_kills_nothing() {
    for round in 0..ROUNDS {
        burst(100, Beside::Generation, round).await;
    }
}

#[tokio::test]
async fn a_burst_at_400_mb_s_beside_a_generation_kills_nothing() {
    for round in 0..ROUNDS {
        burst(400, Beside::Generation, round).await;
    }
}

#[tokio::test]
async fn a_burst_at_2_gb_s_beside_a_generation_kills_nothing() {
    for round in 0..ROUNDS {
        burst(2000, Beside::Generation, round).await;
    }
}

#[tokio::test]
async fn a_burst_at_2_gb_s_beside_two_idle_models_kills_nothing() {
    for round in 0..ROUNDS {
        burst(2000, Beside::TwoIdleModels, round).await;
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Beside {
    /// Gemma streaming a long story.
    Generation,
    /// SmolLM2 and Gemma loaded, nothing running.
    TwoIdleModels,
}

async fn burst(rate: u64, beside: Beside, round: usize) {
    let cgroup = MemoryCgroup::create(LIMIT);
    let recorder = NotificationRecorder::start();
    let server = Server::start_with(Options {
        cgroups: cgroup.folders(),
        env: vec![("DBUS_SESSION_BUS_ADDRESS", recorder.address.clone())],
        ..Options::default()
    });
    let events = server.events().await;
    let mut models = vec![GEMMA];
    if beside == Beside::TwoIdleModels {
        models.push(SMOLLM2);
    }
    for model in &models {
        let (status, body) = server
            .call(
                reqwest::Method::POST,
                &format!("/api/memory/models/{model}/load"),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let stream = match beside {
        Beside::Generation => Some(story(&server).await),
        Beside::TwoIdleModels => None,
    };
    tokio::time::sleep(Duration::from_secs(1)).await;

    let started = Instant::now();
    let allocator = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{}exec python3 -c \"$0\" {rate} {TAKEN_MIB} 3",
            join_cgroups(&cgroup.folders())
        ))
        .arg(ALLOCATOR)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the allocator");
    let mut waiting = tokio::task::spawn_blocking(move || allocator.wait_with_output());
    // When each model's memory was back, from the allocator's start.
    let mut freed: Vec<(String, Duration)> = Vec::new();
    let output = loop {
        tokio::select! {
            output = &mut waiting => break output.expect("join").expect("the allocator ran"),
            () = tokio::time::sleep(Duration::from_millis(5)) => {
                for e in events.all().iter().filter(|e| e["type"] == "unloaded") {
                    let model = e["model"].as_str().unwrap_or_default().to_string();
                    if !freed.iter().any(|(m, _)| *m == model) {
                        freed.push((model, started.elapsed()));
                    }
                }
            }
        }
    };
    let said = String::from_utf8_lossy(&output.stdout).trim().to_string();
    let causes: Vec<String> = events
        .all()
        .iter()
        .filter(|e| e["type"] == "unloaded")
        .map(|e| format!("{} {} {}", e["model"], e["reason"], e["pressure"]))
        .collect();
    println!(
        "{rate} MiB/s beside {beside:?}, round {round}: {said}; allocator {:?}; oom kills {}; memory back after {freed:?}; unloads: {causes:?}",
        output.status,
        cgroup.oom_kills()
    );
    assert!(
        output.status.success(),
        "the other app was killed: {:?}; {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(said.starts_with(&format!("held {TAKEN_MIB} MiB")), "{said}");
    assert_eq!(cgroup.oom_kills(), 0, "nothing in the cgroup OOM-killed");

    if let Some(stream) = stream {
        // The story ended, one way or the other; if its model was unloaded, it says why.
        let text = stream.text().await.expect("the stream ended");
        let data = sse_data(&text);
        assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{text}");
        let last: Value = serde_json::from_str(&data[data.len() - 2]).expect("json");
        if let Some(message) = last["error"]["message"].as_str() {
            assert!(message.contains("another app needed it"), "{message}");
        }
    }
    // The user was told, naming what was unloaded.
    let told = recorder.wait_for("Memory is", Duration::from_secs(10));
    let body = told["body"].as_str().unwrap_or_default();
    assert!(body.contains(GEMMA), "{told}");
    println!("notification: {told}");
    // The other app is gone: Headroom serves again, loading what it must.
    let (status, answer) = server.complete(GEMMA, 4).await;
    assert_eq!(status, 200, "{answer}");
    assert!(!server.stderr().contains("panicked"));
    // The cgroup's usage thresholds woke the monitor as the burst climbed; /metrics says so.
    let metrics = server.metrics().await;
    let wakes: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("headroom_pressure_wakes_total"))
        .collect();
    println!("{wakes:?}");
    assert!(
        wakes.iter().any(|l| l.contains("source=\"threshold\"")),
        "{wakes:?}"
    );
}

/// A long greedy story from Gemma, streaming by the time this returns.
async fn story(server: &Server) -> reqwest::Response {
    let mut response = server
        .client
        .post(server.url("/v1/chat/completions"))
        .json(&json!({
            "model": GEMMA, "temperature": 0, "max_tokens": 2000, "stream": true,
            "messages": [{"role": "user", "content": "Tell me a very long story about a lighthouse keeper."}],
        }))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    let first = response.chunk().await.expect("read").expect("open");
    assert!(!first.is_empty());
    response
}
