//! Load on loopback: 64 streaming clients at once and a burst of 1000 short requests beside
//! them. Every request ends in 200, or in 503/429 with `Retry-After`; no connection is reset
//! without an answer; the server's memory stays bounded. The figures are printed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{mb, sse_data, Options, PeakRss, Server, SMOLLM2};

const STREAMS: usize = 64;
const BURST: usize = 1000;
/// The burst's clients in flight at once: enough to overrun the queue many times over.
const BURST_CONCURRENCY: usize = 200;

/// How one request ended.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Ok,
    /// Turned away with a status and whether `Retry-After` came with it.
    Refused(u16, bool),
    /// An answer the contract does not allow, or no answer.
    Broken(String),
}

async fn stream(client: &reqwest::Client, url: &str) -> Outcome {
    let body = json!({"model": SMOLLM2, "prompt": "1, 2, 3,", "max_tokens": 24,
                      "temperature": 0, "stream": true});
    let response = match client.post(url).json(&body).send().await {
        Ok(r) => r,
        Err(e) => return Outcome::Broken(format!("no answer: {e}")),
    };
    let status = response.status().as_u16();
    let retry_after = response.headers().contains_key("retry-after");
    let text = match response.text().await {
        Ok(text) => text,
        Err(e) => return Outcome::Broken(format!("stream cut ({status}): {e}")),
    };
    match status {
        200 if sse_data(&text).last().map(String::as_str) == Some("[DONE]") => Outcome::Ok,
        200 => Outcome::Broken(format!("a stream without [DONE]: {text}")),
        503 | 429 => Outcome::Refused(status, retry_after),
        _ => Outcome::Broken(format!("{status}: {text}")),
    }
}

async fn short(client: &reqwest::Client, url: &str, i: usize) -> Outcome {
    let body = json!({"model": SMOLLM2, "prompt": format!("Number {i}:"), "max_tokens": 1});
    let response = match client.post(url).json(&body).send().await {
        Ok(r) => r,
        Err(e) => return Outcome::Broken(format!("no answer: {e}")),
    };
    let status = response.status().as_u16();
    let retry_after = response.headers().contains_key("retry-after");
    match (status, response.json::<serde_json::Value>().await) {
        (200, Ok(v)) if v["choices"][0]["text"].is_string() => Outcome::Ok,
        (503 | 429, Ok(v)) if v["error"]["code"].is_string() => {
            Outcome::Refused(status, retry_after)
        }
        (status, body) => Outcome::Broken(format!("{status}: {body:?}")),
    }
}

fn tally(outcomes: &[Outcome]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for outcome in outcomes {
        let key = match outcome {
            Outcome::Ok => "200".to_string(),
            Outcome::Refused(status, true) => format!("{status} with Retry-After"),
            Outcome::Refused(status, false) => format!("{status} WITHOUT Retry-After"),
            Outcome::Broken(_) => "broken".to_string(),
        };
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

#[tokio::test]
async fn many_streams_and_a_burst_all_get_an_answer_and_memory_stays_bounded() {
    // The product's default queue: 4 slots + 64 waiting hold every stream.
    let server = Server::start_with(Options {
        queue_size: 64,
        ..Options::default()
    });
    // Loaded and warm first: the load is not what this measures.
    server.complete_ok(SMOLLM2, 4).await;
    let loaded_rss = server.rss();

    let sampler = PeakRss::start(server.pid(), loaded_rss);

    // Each client its own connection pool: 64 + 200 connections really at once.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(300))
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let url = server.url("/v1/completions");
    let started = Instant::now();
    let streams = futures::future::join_all((0..STREAMS).map(|_| stream(&client, &url)));
    let burst = async {
        use futures::StreamExt as _;
        // The streams are in (running or queued) before the burst arrives.
        tokio::time::sleep(Duration::from_millis(300)).await;
        futures::stream::iter(0..BURST)
            .map(|i| short(&client, &url, i))
            .buffer_unordered(BURST_CONCURRENCY)
            .collect::<Vec<_>>()
            .await
    };
    let (streams, burst) = tokio::join!(streams, burst);
    let took = started.elapsed();
    let peak = sampler.stop();

    println!("{STREAMS} streams: {:?}", tally(&streams));
    println!("{BURST} short requests: {:?}", tally(&burst));
    println!(
        "in {took:.1?}; server RSS {:.1} MB loaded, peak {:.1} MB (+{:.1} MB)",
        mb(loaded_rss),
        mb(peak),
        mb(peak.saturating_sub(loaded_rss))
    );
    for outcome in streams.iter().chain(&burst) {
        match outcome {
            Outcome::Ok => {}
            Outcome::Refused(status, retry_after) => {
                assert!(*retry_after, "{status} without Retry-After")
            }
            Outcome::Broken(why) => panic!("a request without a proper answer: {why}"),
        }
    }
    // Every stream fits in the slots and the queue: all are served.
    assert!(
        streams.iter().all(|o| *o == Outcome::Ok),
        "{:?}",
        tally(&streams)
    );
    assert!(burst.contains(&Outcome::Ok));
    // Slots and queue are bounded, and the KV cache is allocated at load: the load adds
    // request buffers, not memory per waiting client.
    assert!(
        peak < loaded_rss + (200 << 20),
        "RSS grew from {} to {} MB under load",
        mb(loaded_rss),
        mb(peak)
    );

    // Afterwards the server is idle again and serves normally.
    let model = server.model_status(SMOLLM2).await.expect("loaded");
    assert_eq!(model["in_flight"], 0, "{model}");
    assert_eq!(model["stats"]["active"], 0, "{model}");
    assert_eq!(model["stats"]["queued"], 0, "{model}");
    server.complete_ok(SMOLLM2, 2).await;
}
