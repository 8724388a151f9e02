//! Running one completion request: find the model, load it if needed, queue the generation, and
//! answer as one JSON body or as server-sent events. Chat and text completions differ only in
//! how a prompt is made and how a piece of output is wrapped ([`Kind`], `shape`).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Instant;

use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::stream::Stream;
use serde_json::{json, Value};

use super::options::Checked;
pub(super) use super::shape::Kind;
use super::shape::{self, usage_json, Delta};
use crate::api::error::ApiError;
use crate::api::AppState;
use crate::engine::reasoning::{Part, ReasoningSplitter};
use crate::engine::tools::reader::{Output, OutputReader};
use crate::engine::{
    Constraint, FinishReason, GenerateRequest, Generation, GenerationEvent, LoadedModel,
    TokenLogprob, Usage,
};
use crate::memory::process_rss;
use crate::metrics::{GenerationRecord, Metrics};
use crate::pool::Lease;

/// What a request puts to the model: its prompt, the constraint on the output, and how the
/// output is read back (plain text, or content and tool calls).
pub(super) struct Prepared {
    pub prompt: String,
    pub constraint: Option<Constraint>,
    /// Splits thinking off the answer (chat), or passes everything on (text completions).
    pub reasoning: ReasoningSplitter,
    pub reader: OutputReader,
}

impl Prepared {
    /// A prompt answered in plain text, optionally constrained (structured output).
    pub fn text(prompt: String, constraint: Option<Constraint>) -> Self {
        Self {
            prompt,
            constraint,
            reasoning: ReasoningSplitter::inline(),
            reader: OutputReader::plain(),
        }
    }
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
    reasoning: ReasoningSplitter,
    reader: OutputReader,
    /// Whether the client asked for log-probabilities.
    logprobs: bool,
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
    prepare: impl FnOnce(&dyn LoadedModel) -> Result<Prepared, ApiError>,
    checked: Checked,
) -> Result<Started, ApiError> {
    let arrived = Instant::now();
    let file = state.catalog.find(model_id)?;
    let include_usage = checked.include_usage;
    let model = state.pool.acquire(file, checked.keep_alive).await?;
    let prepared = prepare(&*model)?;
    let generation = model.generate(GenerateRequest {
        prompt: prepared.prompt,
        sampling: checked.sampling.resolve(&model.sampling_defaults()),
        max_tokens: checked.max_tokens,
        stop: checked.stop,
        constraint: prepared.constraint,
        logprobs: checked.logprobs,
    })?;
    Ok(Started {
        kind,
        id: format!("{}-{}", kind.id_prefix(), uuid::Uuid::new_v4().simple()),
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
        reasoning: prepared.reasoning,
        reader: prepared.reader,
        logprobs: checked.logprobs.is_some(),
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
            Some(GenerationEvent::Logprob(_)) => {}
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

    /// Splits a piece of text into reasoning and what the reader passes on of the answer;
    /// `None` is the end of the generation.
    fn read(&mut self, piece: Option<&str>) -> (String, Vec<Output>) {
        let parts = match piece {
            Some(text) => self.reasoning.push(text),
            None => self.reasoning.finish(),
        };
        let mut thought = String::new();
        let mut outputs = Vec::new();
        for part in parts {
            match part {
                Part::Reasoning(text) => thought.push_str(&text),
                Part::Answer(text) => outputs.extend(self.reader.push(&text)),
            }
        }
        if piece.is_none() {
            outputs.extend(self.reader.finish());
        }
        (thought, outputs)
    }

    /// Waits for the whole answer. If the client hangs up, this future is dropped and with it
    /// the generation, which the engine then cancels.
    async fn collect(mut self) -> Result<Json<Value>, ApiError> {
        let mut reasoning = String::new();
        let mut content = String::new();
        let mut calls = Vec::new();
        let mut logprobs = Vec::new();
        let mut take = |(thought, outputs): (String, Vec<Output>)| {
            reasoning.push_str(&thought);
            for output in outputs {
                match output {
                    Output::Content(text) => content.push_str(&text),
                    Output::Call(call) => calls.push(call),
                }
            }
        };
        loop {
            match self.next().await {
                Some(GenerationEvent::Text(piece)) => take(self.read(Some(&piece))),
                Some(GenerationEvent::Logprob(token)) => logprobs.push(token),
                Some(GenerationEvent::Done {
                    finish_reason,
                    usage,
                }) => {
                    take(self.read(None));
                    let reason = shape::finish_reason(finish_reason, self.reader.calls());
                    let choice = shape::whole_choice(
                        self.kind,
                        shape::Answer {
                            reasoning,
                            content,
                            calls: &calls,
                        },
                        &logprobs,
                        self.logprobs,
                        reason,
                    );
                    return Ok(Json(json!({
                        "id": self.id,
                        "object": self.kind.object(false),
                        "created": self.created,
                        "model": self.model_id,
                        "choices": [choice],
                        "usage": usage_json(&usage),
                    })));
                }
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

    /// One streamed chunk around `choice`.
    fn chunk(&self, choice: Value, usage: Option<&Usage>) -> Value {
        let mut chunk = json!({
            "id": self.id,
            "object": self.kind.object(true),
            "created": self.created,
            "model": self.model_id,
            "choices": [choice],
        });
        if self.include_usage {
            // OpenAI's shape: `usage` null on every chunk but the last, its own.
            chunk["usage"] = Value::Null;
        } else if let Some(usage) = usage {
            // llama-server's: on the chunk that finishes.
            chunk["usage"] = usage_json(usage);
        }
        chunk
    }

    /// The chunk `stream_options.include_usage` asks for: no choices, the usage.
    fn usage_chunk(&self, usage: &Usage) -> Value {
        json!({
            "id": self.id,
            "object": self.kind.object(true),
            "created": self.created,
            "model": self.model_id,
            "choices": [],
            "usage": usage_json(usage),
        })
    }

    /// The SSE stream: (chat only) a role chunk, chunks of content and calls as the reader
    /// passes them on, a last chunk with `finish_reason` and `usage`, then `[DONE]`. Dropping
    /// the stream (client gone) drops the generation, which cancels it.
    fn into_events(self) -> impl Stream<Item = Result<Event, Infallible>> {
        let mut stream = Streaming {
            started: self,
            queued: VecDeque::new(),
            logprobs: Vec::new(),
            text_offset: 0,
            calls: 0,
            state: StreamState::Running,
        };
        if stream.started.kind == Kind::Chat {
            stream.push(Delta::Role, None);
        }
        futures::stream::unfold(stream, |mut stream| async move {
            loop {
                if let Some(event) = stream.queued.pop_front() {
                    return Some((Ok(event), stream));
                }
                match stream.state {
                    StreamState::Running => stream.advance().await,
                    StreamState::Finished => {
                        stream.state = StreamState::Closed;
                        return Some((Ok(Event::default().data("[DONE]")), stream));
                    }
                    StreamState::Closed => return None,
                }
            }
        })
    }
}

/// A streamed response: events ready to send, and what the next ones need.
struct Streaming {
    started: Started,
    queued: VecDeque<Event>,
    /// Tokens whose log-probabilities ride on the next chunk.
    logprobs: Vec<TokenLogprob>,
    /// Bytes of text sent so far (text completions' `text_offset`).
    text_offset: usize,
    /// Calls sent so far: the next call's index.
    calls: usize,
    state: StreamState,
}

enum StreamState {
    Running,
    /// Only `[DONE]` is left.
    Finished,
    Closed,
}

/// A call's arguments go out in pieces of this many characters, as OpenAI streams them.
const ARGUMENT_PIECE: usize = 32;

impl Streaming {
    /// Waits for the generation's next event and queues what it makes.
    async fn advance(&mut self) {
        match self.started.next().await {
            Some(GenerationEvent::Text(piece)) => {
                let read = self.started.read(Some(&piece));
                self.send(read);
            }
            Some(GenerationEvent::Logprob(token)) => self.logprobs.push(token),
            Some(GenerationEvent::Done {
                finish_reason,
                usage,
            }) => {
                let read = self.started.read(None);
                self.send(read);
                let reason = shape::finish_reason(finish_reason, self.started.reader.calls());
                self.push(Delta::Empty, Some((reason, &usage)));
                if self.started.include_usage {
                    let chunk = self.started.usage_chunk(&usage);
                    self.queued.push_back(json_event(&chunk));
                }
                self.state = StreamState::Finished;
            }
            Some(GenerationEvent::Failed(message)) => {
                self.fail(message);
            }
            None => self.fail("the generation ended without a result".into()),
        }
    }

    fn fail(&mut self, message: String) {
        let error = ApiError::server("generation_failed", message).to_json();
        self.queued.push_back(json_event(&error));
        self.state = StreamState::Finished;
    }

    fn send(&mut self, (thought, outputs): (String, Vec<Output>)) {
        if !thought.is_empty() {
            self.push(Delta::Reasoning(&thought), None);
        }
        for output in outputs {
            match output {
                Output::Content(text) => self.push(Delta::Content(&text), None),
                Output::Call(call) => {
                    let index = self.calls;
                    self.calls += 1;
                    self.push(Delta::CallStart { index, call: &call }, None);
                    let arguments: Vec<char> = call.arguments.chars().collect();
                    for piece in arguments.chunks(ARGUMENT_PIECE) {
                        let piece: String = piece.iter().collect();
                        self.push(
                            Delta::CallArguments {
                                index,
                                arguments: &piece,
                            },
                            None,
                        );
                    }
                }
            }
        }
    }

    /// Queues one chunk; the log-probabilities gathered since the last ride along.
    fn push(&mut self, delta: Delta<'_>, finish: Option<(&str, &Usage)>) {
        let logprobs = if self.started.logprobs && !self.logprobs.is_empty() {
            let tokens = std::mem::take(&mut self.logprobs);
            shape::logprobs_json(self.started.kind, &tokens, self.text_offset)
        } else {
            Value::Null
        };
        if let Delta::Content(text) = &delta {
            self.text_offset += text.len();
        }
        let choice = shape::chunk_choice(self.started.kind, delta, logprobs, finish.map(|f| f.0));
        let chunk = self.started.chunk(choice, finish.map(|f| f.1));
        self.queued.push_back(json_event(&chunk));
    }
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
