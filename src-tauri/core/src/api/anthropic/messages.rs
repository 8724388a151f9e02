//! `POST /v1/messages` and `/v1/messages/count_tokens`.

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::stream::Stream;
use serde_json::{json, Value};

use super::request::MessagesRequest;
use super::{decode, AnthropicError};
use crate::api::error::ApiError;
use crate::api::event_stream;
use crate::api::generation::{self, Generating, Step};
use crate::api::AppState;
use crate::engine::tools::reader::Output;
use crate::engine::tools::{self, ToolCall};
use crate::engine::{FinishReason, Usage};
use crate::vocab::Dialect;

pub async fn messages(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AnthropicError> {
    let request: MessagesRequest = decode(body)?;
    let translated = request.translate(true)?;
    let (messages, tool_request) = (translated.messages, translated.tools);
    let answer = generation::start(
        &state,
        Dialect::AnthropicMessages,
        &request.model,
        |model| generation::chat_prompt(model, messages, &tool_request, true),
        translated.settings,
    )
    .await?;
    let reply = Reply {
        id: format!("msg_{}", uuid::Uuid::new_v4().simple()),
        answer,
    };
    Ok(if request.stream {
        Sse::new(reply.into_events()).into_response()
    } else {
        Json(reply.collect().await?).into_response()
    })
}

/// `count_tokens`: the prompt the request would make, tokenized by the model (which is loaded
/// for it, as any request loads it).
pub async fn count_tokens(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, AnthropicError> {
    let request: MessagesRequest = decode(body)?;
    let translated = request.translate(false)?;
    let file = state.catalog.find(&request.model).map_err(ApiError::from)?;
    let model = state
        .pool
        .acquire(file, None)
        .await
        .map_err(ApiError::from)?;
    let plan = tools::plan(model.tool_format(), translated.messages, &translated.tools);
    let prompt = model
        .render_chat(&plan.messages, plan.template_tools.as_deref())
        .map_err(ApiError::from)?;
    let tokens = model.count_tokens(&prompt).map_err(ApiError::from)?;
    Ok(Json(json!({ "input_tokens": tokens })))
}

/// Anthropic's name for why the turn ended, and the stop sequence that ended it.
fn stop_reason(reason: FinishReason, calls: usize, stop_sequence: Option<&str>) -> Value {
    let reason = match reason {
        _ if calls > 0 => "tool_use",
        _ if stop_sequence.is_some() => "stop_sequence",
        FinishReason::Stop => "end_turn",
        FinishReason::Length => "max_tokens",
    };
    json!({ "stop_reason": reason, "stop_sequence": stop_sequence })
}

/// Anthropic's tool-use ids begin `toolu_`.
fn tool_use_id(call: &ToolCall) -> String {
    match call.id.strip_prefix("call_") {
        Some(rest) => format!("toolu_{rest}"),
        None => call.id.clone(),
    }
}

fn usage_json(usage: &Usage) -> Value {
    // Anthropic's `input_tokens` are those after the last cache read; the prompt is their sum.
    json!({
        "input_tokens": usage.prompt_tokens.saturating_sub(usage.cached_tokens),
        "cache_read_input_tokens": usage.cached_tokens,
        "cache_creation_input_tokens": 0,
        "output_tokens": usage.completion_tokens,
    })
}

struct Reply {
    id: String,
    answer: Generating,
}

impl Reply {
    /// The message with its content blocks: thinking, text, then the tool uses.
    async fn collect(mut self) -> Result<Value, AnthropicError> {
        let (whole, finish_reason, usage) = self
            .answer
            .collect()
            .await
            .map_err(|message| ApiError::server("generation_failed", message))?;
        let mut content = Vec::new();
        if !whole.thought.is_empty() {
            content.push(json!({ "type": "thinking", "thinking": whole.thought, "signature": "" }));
        }
        if !whole.content.is_empty() {
            content.push(json!({ "type": "text", "text": whole.content }));
        }
        for call in &whole.calls {
            content.push(json!({
                "type": "tool_use",
                "id": tool_use_id(call),
                "name": call.name,
                "input": call.arguments_value(),
            }));
        }
        let mut message = json!({
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.answer.model_id(),
            "content": content,
            "usage": usage_json(&usage),
        });
        let ended = stop_reason(
            finish_reason,
            whole.calls.len(),
            whole.stop_sequence.as_deref(),
        );
        message["stop_reason"] = ended["stop_reason"].clone();
        message["stop_sequence"] = ended["stop_sequence"].clone();
        Ok(message)
    }

    /// Anthropic's event stream: `message_start`, then per content block `content_block_start`,
    /// its deltas and `content_block_stop`, then `message_delta` (stop reason, usage) and
    /// `message_stop`. Dropping it (client gone) cancels the generation.
    fn into_events(self) -> impl Stream<Item = Result<Event, Infallible>> {
        let mut stream = Streaming {
            reply: self,
            queued: VecDeque::new(),
            open: None,
            blocks: 0,
            finished: false,
        };
        let start = json!({
            "type": "message_start",
            "message": {
                "id": stream.reply.id,
                "type": "message",
                "role": "assistant",
                "model": stream.reply.answer.model_id(),
                "content": [],
                "stop_reason": null,
                "stop_sequence": null,
                "usage": { "input_tokens": 0, "output_tokens": 0 },
            },
        });
        stream.event("message_start", &start);
        event_stream::events(stream)
    }
}

/// Which kind of block is open.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Block {
    Thinking,
    Text,
}

struct Streaming {
    reply: Reply,
    queued: VecDeque<Event>,
    open: Option<Block>,
    /// Blocks started so far: the next one's index.
    blocks: usize,
    finished: bool,
}

/// A tool use's input goes out in pieces of this many characters.
const INPUT_PIECE: usize = 32;

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

impl Streaming {
    fn event(&mut self, name: &str, data: &Value) {
        self.queued
            .push_back(Event::default().event(name).data(data.to_string()));
    }

    async fn advance(&mut self) {
        match self.reply.answer.step().await {
            Step::Read { thought, outputs } => self.send(&thought, outputs),
            Step::Logprob(_) => {}
            Step::Done {
                thought,
                outputs,
                finish_reason,
                usage,
                stop_sequence,
            } => {
                self.send(&thought, outputs);
                self.close();
                let delta = stop_reason(
                    finish_reason,
                    self.reply.answer.calls(),
                    stop_sequence.as_deref(),
                );
                self.event(
                    "message_delta",
                    &json!({
                        "type": "message_delta",
                        "delta": delta,
                        "usage": usage_json(&usage),
                    }),
                );
                self.event("message_stop", &json!({ "type": "message_stop" }));
                self.finished = true;
            }
            Step::Failed(message) => {
                let error = AnthropicError(ApiError::server("generation_failed", message));
                self.event("error", &error.to_json());
                self.finished = true;
            }
        }
    }

    fn send(&mut self, thought: &str, outputs: Vec<Output>) {
        if !thought.is_empty() {
            self.delta(
                Block::Thinking,
                json!({ "type": "thinking_delta", "thinking": thought }),
            );
        }
        for output in outputs {
            match output {
                Output::Content(text) => {
                    self.delta(Block::Text, json!({ "type": "text_delta", "text": text }))
                }
                Output::Call(call) => self.tool_use(&call),
            }
        }
    }

    /// A delta in a block of `kind`, opening one (and closing another) first if needed.
    fn delta(&mut self, kind: Block, delta: Value) {
        if self.open != Some(kind) {
            self.close();
            let block = match kind {
                Block::Thinking => json!({ "type": "thinking", "thinking": "", "signature": "" }),
                Block::Text => json!({ "type": "text", "text": "" }),
            };
            self.start(block);
            self.open = Some(kind);
        }
        let index = self.blocks - 1;
        self.event(
            "content_block_delta",
            &json!({ "type": "content_block_delta", "index": index, "delta": delta }),
        );
    }

    fn tool_use(&mut self, call: &ToolCall) {
        self.close();
        self.start(
            json!({ "type": "tool_use", "id": tool_use_id(call), "name": call.name, "input": {} }),
        );
        let index = self.blocks - 1;
        let input: Vec<char> = call.arguments.chars().collect();
        for piece in input.chunks(INPUT_PIECE) {
            let piece: String = piece.iter().collect();
            self.event(
                "content_block_delta",
                &json!({ "type": "content_block_delta", "index": index, "delta": { "type": "input_json_delta", "partial_json": piece } }),
            );
        }
        self.event(
            "content_block_stop",
            &json!({ "type": "content_block_stop", "index": index }),
        );
    }

    fn start(&mut self, block: Value) {
        let index = self.blocks;
        self.blocks += 1;
        self.event(
            "content_block_start",
            &json!({ "type": "content_block_start", "index": index, "content_block": block }),
        );
    }

    fn close(&mut self) {
        if self.open.take().is_some() {
            let index = self.blocks - 1;
            self.event(
                "content_block_stop",
                &json!({ "type": "content_block_stop", "index": index }),
            );
        }
    }
}
