//! Running one completion request: find the model, load it if needed, queue the generation, and
//! answer as one JSON body or as server-sent events. Chat and text completions differ only in
//! how a prompt is made and how a piece of output is wrapped, which [`Kind`] captures.

use std::convert::Infallible;
use std::time::Instant;

use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::stream::{self, Stream};
use serde_json::{json, Value};

use super::options::Checked;
use crate::api::error::ApiError;
use crate::api::AppState;
use crate::engine::{
    FinishReason, GenerateRequest, Generation, GenerationEvent, LoadedModel, Usage,
};
use crate::memory::process_rss;
use crate::metrics::{GenerationRecord, Metrics};
use crate::pool::Lease;

/// Which OpenAI object the response is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Chat,
    Text,
}

/// A generation under way, with what its response needs.
pub(super) struct Started {
    kind: Kind,
    id: String,
    created: u64,
    model_id: String,
    generation: Generation,
    /// Holding the lease keeps the model loaded, and counted busy, until the response ends.
    lease: Lease,
    timing: Timing,
    metrics: Metrics,
    include_usage: bool,
}

/// When things happened, for the generation's record.
struct Timing {
    /// The request arrived (before any load).
    arrived: Instant,
    first_token: Option<Instant>,
    /// Text pieces received: tokens, near enough, when the request ends early.
    pieces: u32,
    prompt_tokens: u32,
    recorded: bool,
}

/// Finds and loads `model_id`, makes its prompt and queues the generation.
pub(super) async fn start(
    state: &AppState,
    kind: Kind,
    model_id: &str,
    make_prompt: impl FnOnce(&dyn LoadedModel) -> Result<String, ApiError>,
    checked: Checked,
) -> Result<Started, ApiError> {
    let arrived = Instant::now();
    let file = state.catalog.find(model_id)?;
    let include_usage = checked.include_usage;
    let model = state.pool.acquire(file, checked.keep_alive).await?;
    let prompt = make_prompt(&*model)?;
    let generation = model.generate(GenerateRequest {
        prompt,
        sampling: checked.sampling.resolve(&model.sampling_defaults()),
        max_tokens: checked.max_tokens,
        stop: checked.stop,
    })?;
    let prefix = match kind {
        Kind::Chat => "chatcmpl",
        Kind::Text => "cmpl",
    };
    Ok(Started {
        kind,
        id: format!("{prefix}-{}", uuid::Uuid::new_v4().simple()),
        created: unix_now(),
        model_id: model_id.to_string(),
        generation,
        lease: model,
        timing: Timing {
            arrived,
            first_token: None,
            pieces: 0,
            prompt_tokens: 0,
            recorded: false,
        },
        metrics: state.metrics.clone(),
        include_usage,
    })
}

impl Started {
    /// The generation's next event, noting the timing and recording the generation once it
    /// ends.
    async fn next(&mut self) -> Option<GenerationEvent> {
        let event = self.generation.next().await;
        match &event {
            Some(GenerationEvent::Text(_)) => {
                self.timing.first_token.get_or_insert_with(Instant::now);
                self.timing.pieces = self.timing.pieces.saturating_add(1);
            }
            Some(GenerationEvent::Done {
                finish_reason,
                usage,
            }) => {
                self.timing.prompt_tokens = usage.prompt_tokens;
                self.timing.pieces = usage.completion_tokens;
                let outcome = match finish_reason {
                    FinishReason::Stop => "stop",
                    FinishReason::Length => "length",
                };
                self.record(outcome);
            }
            Some(GenerationEvent::Failed(_)) | None => self.record("error"),
        }
        event
    }

    /// Adds this generation to the metrics, once.
    fn record(&mut self, outcome: &str) {
        if std::mem::replace(&mut self.timing.recorded, true) {
            return;
        }
        let t = &self.timing;
        let now = Instant::now();
        let tokens_per_second = t.first_token.and_then(|first| {
            let secs = now.duration_since(first).as_secs_f64();
            (t.pieces > 1 && secs > 0.0).then(|| f64::from(t.pieces - 1) / secs)
        });
        self.metrics.generation_finished(GenerationRecord {
            model: self.model_id.clone(),
            finished_at: unix_now_ms(),
            ttft_ms: t
                .first_token
                .map(|first| first.duration_since(t.arrived).as_secs_f64() * 1000.0),
            tokens_per_second,
            prompt_tokens: t.prompt_tokens,
            generated_tokens: t.pieces,
            outcome: outcome.to_string(),
            process_memory: process_rss(),
            model_memory: Some(self.lease.footprint().total),
        });
    }

    pub(super) async fn respond(self, stream: bool) -> Response {
        if stream {
            Sse::new(self.into_events()).into_response()
        } else {
            self.collect().await.into_response()
        }
    }

    /// Waits for the whole answer. If the client hangs up, this future is dropped and with it
    /// the generation, which the engine then cancels.
    async fn collect(mut self) -> Result<Json<Value>, ApiError> {
        let mut text = String::new();
        loop {
            let event = self.next().await;
            match event {
                Some(GenerationEvent::Text(piece)) => text.push_str(&piece),
                Some(GenerationEvent::Done {
                    finish_reason,
                    usage,
                }) => return Ok(Json(self.whole(text, finish_reason, usage))),
                Some(GenerationEvent::Failed(message)) => {
                    return Err(ApiError::server("generation_failed", message))
                }
                None => {
                    return Err(ApiError::server(
                        "generation_failed",
                        "the generation ended without a result",
                    ))
                }
            }
        }
    }

    fn whole(&self, text: String, finish_reason: FinishReason, usage: Usage) -> Value {
        let choice = match self.kind {
            Kind::Chat => json!({
                "index": 0,
                "message": { "role": "assistant", "content": text },
                "logprobs": null,
                "finish_reason": finish_reason,
            }),
            Kind::Text => json!({
                "index": 0,
                "text": text,
                "logprobs": null,
                "finish_reason": finish_reason,
            }),
        };
        json!({
            "id": self.id,
            "object": self.object(false),
            "created": self.created,
            "model": self.model_id,
            "choices": [choice],
            "usage": usage_json(&usage),
        })
    }

    fn object(&self, chunk: bool) -> &'static str {
        match (self.kind, chunk) {
            (Kind::Chat, false) => "chat.completion",
            (Kind::Chat, true) => "chat.completion.chunk",
            (Kind::Text, _) => "text_completion",
        }
    }

    /// One streamed chunk. `delta` is a chat delta object or a text piece.
    fn chunk(
        &self,
        piece: Piece,
        finish_reason: Option<FinishReason>,
        usage: Option<Usage>,
    ) -> Value {
        let choice = match (self.kind, piece) {
            (Kind::Chat, Piece::Role) => {
                json!({ "index": 0, "delta": { "role": "assistant", "content": "" }, "logprobs": null, "finish_reason": finish_reason })
            }
            (Kind::Chat, Piece::Text(t)) => {
                json!({ "index": 0, "delta": { "content": t }, "logprobs": null, "finish_reason": finish_reason })
            }
            (Kind::Chat, Piece::None) => {
                json!({ "index": 0, "delta": {}, "logprobs": null, "finish_reason": finish_reason })
            }
            (Kind::Text, Piece::Text(t)) => {
                json!({ "index": 0, "text": t, "logprobs": null, "finish_reason": finish_reason })
            }
            (Kind::Text, Piece::Role | Piece::None) => {
                json!({ "index": 0, "text": "", "logprobs": null, "finish_reason": finish_reason })
            }
        };
        let mut chunk = json!({
            "id": self.id,
            "object": self.object(true),
            "created": self.created,
            "model": self.model_id,
            "choices": [choice],
        });
        if self.include_usage {
            // OpenAI's shape: `usage` null on every chunk but the last, its own.
            chunk["usage"] = Value::Null;
        } else if let Some(usage) = usage {
            // llama-server's: on the chunk that finishes.
            chunk["usage"] = usage_json(&usage);
        }
        chunk
    }

    /// The chunk `stream_options.include_usage` asks for: no choices, the usage.
    fn usage_chunk(&self, usage: &Usage) -> Value {
        json!({
            "id": self.id,
            "object": self.object(true),
            "created": self.created,
            "model": self.model_id,
            "choices": [],
            "usage": usage_json(usage),
        })
    }

    /// The SSE stream: (chat only) a role chunk, one chunk per text piece, a last chunk with
    /// `finish_reason` and `usage`, then `[DONE]`. Dropping the stream (client gone) drops the
    /// generation, which cancels it.
    fn into_events(self) -> impl Stream<Item = Result<Event, Infallible>> {
        let first = if self.kind == Kind::Chat {
            Phase::Role
        } else {
            Phase::Running
        };
        stream::unfold((self, first), |(mut started, phase)| async move {
            let (event, next) = match phase {
                Phase::Role => (
                    json_event(&started.chunk(Piece::Role, None, None)),
                    Phase::Running,
                ),
                Phase::Running => match started.next().await {
                    Some(GenerationEvent::Text(t)) => (
                        json_event(&started.chunk(Piece::Text(t), None, None)),
                        Phase::Running,
                    ),
                    Some(GenerationEvent::Done {
                        finish_reason,
                        usage,
                    }) => (
                        json_event(&started.chunk(Piece::None, Some(finish_reason), Some(usage))),
                        if started.include_usage {
                            Phase::Usage(usage)
                        } else {
                            Phase::Done
                        },
                    ),
                    Some(GenerationEvent::Failed(message)) => (
                        json_event(&ApiError::server("generation_failed", message).to_json()),
                        Phase::Done,
                    ),
                    None => (
                        json_event(
                            &ApiError::server(
                                "generation_failed",
                                "the generation ended without a result",
                            )
                            .to_json(),
                        ),
                        Phase::Done,
                    ),
                },
                Phase::Usage(usage) => (json_event(&started.usage_chunk(&usage)), Phase::Done),
                Phase::Done => (Event::default().data("[DONE]"), Phase::Closed),
                Phase::Closed => return None,
            };
            Some((Ok(event), (started, next)))
        })
    }
}

enum Piece {
    Role,
    Text(String),
    None,
}

enum Phase {
    Role,
    Running,
    /// The usage chunk is still to come.
    Usage(Usage),
    Done,
    Closed,
}

/// Usage as OpenAI writes it. No prompt is cached yet, so `cached_tokens` is 0.
fn usage_json(usage: &Usage) -> Value {
    json!({
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": { "cached_tokens": 0 },
    })
}

fn json_event(value: &Value) -> Event {
    Event::default().data(value.to_string())
}

impl Drop for Started {
    /// A client that went away before the end: recorded as cancelled.
    fn drop(&mut self) {
        self.record("cancelled");
    }
}

fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}
