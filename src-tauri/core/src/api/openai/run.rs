//! Running one completion request: find the model, load it if needed, queue the generation, and
//! answer as one JSON body or as server-sent events. Chat and text completions differ only in
//! how a prompt is made and how a piece of output is wrapped ([`Kind`], `shape`).

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::stream::Stream;
use serde_json::{json, Value};

use super::options::Checked;
pub(super) use super::shape::Kind;
use super::shape::{self, usage_json, Delta};
use crate::api::error::ApiError;
use crate::api::event_stream;
pub(super) use crate::api::generation::Prepared;
use crate::api::generation::{self, unix_now, Generating, Step};
use crate::api::AppState;
use crate::engine::tools::reader::Output;
use crate::engine::{LoadedModel, TokenLogprob, Usage};
use crate::vocab::Dialect;

/// A generation under way, with what its OpenAI response needs.
pub(super) struct Started {
    kind: Kind,
    id: String,
    created: u64,
    answer: Generating,
    include_usage: bool,
    /// Whether the client asked for log-probabilities.
    logprobs: bool,
}

/// Finds and loads `model_id`, makes its prompt and queues the generation.
pub(super) async fn start(
    state: &AppState,
    kind: Kind,
    model_id: &str,
    prepare: impl FnOnce(&dyn LoadedModel) -> Result<Prepared, ApiError>,
    checked: Checked,
) -> Result<Started, ApiError> {
    let include_usage = checked.include_usage;
    let logprobs = checked.logprobs.is_some();
    let dialect = match kind {
        Kind::Chat => Dialect::OpenAiChat,
        Kind::Text => Dialect::OpenAiCompletions,
    };
    let answer = generation::start(state, dialect, model_id, prepare, checked.settings()).await?;
    Ok(Started {
        kind,
        id: format!("{}-{}", kind.id_prefix(), uuid::Uuid::new_v4().simple()),
        created: unix_now(),
        answer,
        include_usage,
        logprobs,
    })
}

impl Started {
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
        let (whole, finish_reason, usage) = self
            .answer
            .collect()
            .await
            .map_err(|message| ApiError::server("generation_failed", message))?;
        let reason = shape::finish_reason(finish_reason, whole.calls.len());
        let choice = shape::whole_choice(self.kind, whole, self.logprobs, reason);
        Ok(Json(json!({
            "id": self.id,
            "object": self.kind.object(false),
            "created": self.created,
            "model": self.answer.model_id(),
            "choices": [choice],
            "usage": usage_json(&usage),
        })))
    }

    /// One streamed chunk around `choice`.
    fn chunk(&self, choice: Value, usage: Option<&Usage>) -> Value {
        let mut chunk = json!({
            "id": self.id,
            "object": self.kind.object(true),
            "created": self.created,
            "model": self.answer.model_id(),
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
            "model": self.answer.model_id(),
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
            finished: false,
        };
        if stream.started.kind == Kind::Chat {
            stream.push(Delta::Role, None);
        }
        event_stream::events(stream)
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
    /// `[DONE]` is queued: nothing comes after it.
    finished: bool,
}

impl event_stream::Steps for Streaming {
    fn pop(&mut self) -> Option<Event> {
        self.queued.pop_front()
    }

    fn finished(&self) -> bool {
        self.finished
    }

    fn step(&mut self) -> impl std::future::Future<Output = ()> + Send {
        self.advance()
    }
}

/// A call's arguments go out in pieces of this many characters, as OpenAI streams them.
const ARGUMENT_PIECE: usize = 32;

impl Streaming {
    /// Waits for the generation's next event and queues what it makes.
    async fn advance(&mut self) {
        match self.started.answer.step().await {
            Step::Read { thought, outputs } => self.send((thought, outputs)),
            Step::Logprob(token) => self.logprobs.push(token),
            Step::Done {
                thought,
                outputs,
                finish_reason,
                usage,
                ..
            } => {
                self.send((thought, outputs));
                let reason = shape::finish_reason(finish_reason, self.started.answer.calls());
                self.push(Delta::Empty, Some((reason, &usage)));
                if self.started.include_usage {
                    let chunk = self.started.usage_chunk(&usage);
                    self.queued.push_back(json_event(&chunk));
                }
                self.finish();
            }
            Step::Failed(message) => self.fail(message),
        }
    }

    /// Queues OpenAI's last event, `[DONE]`.
    fn finish(&mut self) {
        self.queued.push_back(Event::default().data("[DONE]"));
        self.finished = true;
    }

    fn fail(&mut self, message: String) {
        let error = ApiError::server("generation_failed", message).to_json();
        self.queued.push_back(json_event(&error));
        self.finish();
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
