//! The HTTP side, the same for both servers: one OpenAI-compatible endpoint, timed from the
//! client, which is what a user of either server waits for.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};
use tokio::sync::Notify;

#[derive(Clone)]
pub struct Endpoint {
    pub base: String,
    pub client: reqwest::Client,
}

/// When a streamed completion's pieces arrived, counted from the request being sent.
#[derive(Debug, Clone)]
pub struct StreamTiming {
    pub first_piece: Duration,
    pub last_piece: Duration,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

impl StreamTiming {
    /// Tokens per second after the first: the decode rate a reader sees.
    pub fn generation_rate(&self) -> Option<f64> {
        let span = (self.last_piece - self.first_piece).as_secs_f64();
        (self.completion_tokens > 1 && span > 0.0)
            .then(|| (self.completion_tokens - 1) as f64 / span)
    }

    /// Prompt tokens per second up to the first token (prompt processing plus one decode).
    pub fn prompt_rate(&self) -> Option<f64> {
        let ttft = self.first_piece.as_secs_f64();
        (self.prompt_tokens > 0 && ttft > 0.0).then(|| self.prompt_tokens as f64 / ttft)
    }
}

impl Endpoint {
    pub fn new(base: String) -> anyhow::Result<Self> {
        // A new connection per request: a kept-alive one the server closes just as the next
        // request goes out fails that request ("connection closed before message completed").
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(600))
            .build()
            .context("HTTP client")?;
        Ok(Self { base, client })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let mut request = self.client.request(method.clone(), self.url(path));
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = response.status();
        let text = response.text().await.context("response body")?;
        if !status.is_success() {
            bail!("{method} {path}: {status}: {text}");
        }
        serde_json::from_str(&text).with_context(|| format!("{method} {path}: not JSON: {text}"))
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    /// Sends a streamed `/v1/completions` request and times its pieces.
    pub async fn stream_completion(&self, body: &Value) -> anyhow::Result<StreamTiming> {
        Ok(self.stream("/v1/completions", body).await?.0)
    }

    /// Sends a streamed `/v1/chat/completions` request, times its pieces and returns the answer.
    pub async fn stream_chat(&self, body: &Value) -> anyhow::Result<(StreamTiming, String)> {
        self.stream("/v1/chat/completions", body).await
    }

    async fn stream(&self, path: &str, body: &Value) -> anyhow::Result<(StreamTiming, String)> {
        let mut body = body.clone();
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
        let started = Instant::now();
        let mut response = self
            .client
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .context("streamed completion")?;
        if !response.status().is_success() {
            bail!(
                "streamed completion: {}: {}",
                response.status(),
                response.text().await.unwrap_or_default()
            );
        }
        let mut buffer = String::new();
        let mut answer = String::new();
        let (mut first, mut last, mut usage) = (None, None, None);
        while let Some(chunk) = response.chunk().await.context("stream")? {
            let now = started.elapsed();
            for data in take_events(&mut buffer, &chunk) {
                if let Some(error) = data.get("error") {
                    bail!("the stream carried an error: {error}");
                }
                let choice = &data["choices"][0];
                let text = choice["text"]
                    .as_str()
                    .or_else(|| choice["delta"]["content"].as_str())
                    .unwrap_or("");
                answer.push_str(text);
                if !text.is_empty() {
                    first.get_or_insert(now);
                    last = Some(now);
                }
                if data["usage"].is_object() {
                    usage = Some(data["usage"].clone());
                }
            }
        }
        let (Some(first_piece), Some(last_piece), Some(usage)) = (first, last, usage) else {
            bail!("the stream ended without text or usage");
        };
        let timing = StreamTiming {
            first_piece,
            last_piece,
            prompt_tokens: usage["prompt_tokens"].as_u64().unwrap_or(0),
            completion_tokens: usage["completion_tokens"].as_u64().unwrap_or(0),
        };
        Ok((timing, answer))
    }

    /// Follows `/api/events` (Headroom's) from now on.
    pub async fn events(&self) -> anyhow::Result<EventLog> {
        let mut response = self
            .client
            .get(self.url("/api/events"))
            .timeout(Duration::from_secs(24 * 3600))
            .send()
            .await
            .context("/api/events")?;
        if !response.status().is_success() {
            bail!("/api/events: {}", response.status());
        }
        let log = EventLog::default();
        let sink = log.clone();
        tokio::spawn(async move {
            let mut buffer = String::new();
            while let Ok(Some(chunk)) = response.chunk().await {
                let now = Instant::now();
                for event in take_events(&mut buffer, &chunk) {
                    sink.push(now, event);
                }
            }
        });
        Ok(log)
    }
}

/// Appends `chunk` to `buffer` and takes out every whole server-sent event in it, as the JSON
/// its `data:` lines carry; comments, keep-alives and data that is not JSON are skipped.
fn take_events(buffer: &mut String, chunk: &[u8]) -> Vec<Value> {
    buffer.push_str(&String::from_utf8_lossy(chunk));
    let mut events = Vec::new();
    while let Some(end) = buffer.find("\n\n") {
        let event: String = buffer.drain(..end + 2).collect();
        if let Some(value) = sse_data(&event).and_then(|d| serde_json::from_str(&d).ok()) {
            events.push(value);
        }
    }
    events
}

/// The `data:` lines of one server-sent event, joined; `None` for a comment or keep-alive.
fn sse_data(event: &str) -> Option<String> {
    let data: Vec<&str> = event
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(str::trim_start)
        .collect();
    (!data.is_empty()).then(|| data.join("\n"))
}

/// Events as they arrived, each with the moment it was read.
#[derive(Clone, Default)]
pub struct EventLog {
    events: Arc<Mutex<Vec<(Instant, Value)>>>,
    arrived: Arc<Notify>,
}

impl EventLog {
    fn push(&self, at: Instant, event: Value) {
        if let Ok(mut events) = self.events.lock() {
            events.push((at, event));
        }
        self.arrived.notify_waiters();
    }

    /// How many events have arrived: a mark to wait for later ones from.
    pub fn mark(&self) -> usize {
        self.events.lock().map(|e| e.len()).unwrap_or(0)
    }

    /// The first event after `mark` that `matches`, waiting up to `within` for it.
    pub async fn wait_for(
        &self,
        mark: usize,
        within: Duration,
        what: &str,
        matches: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<(Instant, Value)> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let arrived = self.arrived.notified();
            if let Some(found) = self
                .events
                .lock()
                .ok()
                .and_then(|events| events.iter().skip(mark).find(|(_, e)| matches(e)).cloned())
            {
                return Ok(found);
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                bail!("no {what} event within {within:?}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_data_joins_data_lines_and_skips_comments() {
        assert_eq!(
            sse_data("data: {\"a\":1}\n\n").as_deref(),
            Some("{\"a\":1}")
        );
        assert_eq!(sse_data(": keep-alive\n\n"), None);
        assert_eq!(
            sse_data("event: x\ndata:a\ndata: b\n").as_deref(),
            Some("a\nb")
        );
    }

    #[test]
    fn events_split_across_chunks_come_out_whole() {
        let mut buffer = String::new();
        assert!(take_events(&mut buffer, b"data: {\"a\"").is_empty());
        let events = take_events(
            &mut buffer,
            b":1}\n\n: keep-alive\n\ndata: [DONE]\n\ndata: {",
        );
        assert_eq!(events, vec![json!({"a": 1})]);
        assert_eq!(buffer, "data: {");
    }

    #[test]
    fn rates_need_two_tokens_and_time_between_them() {
        let timing = StreamTiming {
            first_piece: Duration::from_millis(100),
            last_piece: Duration::from_millis(1100),
            prompt_tokens: 50,
            completion_tokens: 101,
        };
        assert_eq!(timing.generation_rate(), Some(100.0));
        assert_eq!(timing.prompt_rate(), Some(500.0));
        let one = StreamTiming {
            completion_tokens: 1,
            ..timing
        };
        assert_eq!(one.generation_rate(), None);
    }
}
