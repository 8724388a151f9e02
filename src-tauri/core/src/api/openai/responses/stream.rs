//! The Responses event stream: `response.created` and `response.in_progress`; per output item
//! `response.output_item.added`, its content part, its deltas (`response.reasoning_text.delta`,
//! `response.output_text.delta`, `response.function_call_arguments.delta`), their `.done`
//! events and `response.output_item.done`; then `response.completed` (or `.incomplete` at
//! `max_output_tokens`, `.failed` if the generation failed). Every event carries its `type`
//! and a `sequence_number`, as the SDK's stream accumulator checks.

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::response::sse::Event;
use futures::stream::Stream;
use serde_json::{json, Value};

use super::output::{self, new_id, Reply, Status};
use crate::api::error::ApiError;
use crate::api::event_stream;
use crate::api::generation::Step;
use crate::engine::tools::reader::Output;
use crate::engine::tools::ToolCall;

/// A call's arguments go out in pieces of this many characters, as OpenAI streams them.
const ARGUMENT_PIECE: usize = 32;

/// Dropping the stream (client gone) drops the generation, which the engine then cancels.
pub fn events(reply: Reply) -> impl Stream<Item = Result<Event, Infallible>> {
    let mut stream = Streaming {
        reply,
        queued: VecDeque::new(),
        sequence: 0,
        output: Vec::new(),
        open: None,
        finished: false,
    };
    let snapshot = stream.snapshot(Status::InProgress);
    stream.event(json!({ "type": "response.created", "response": snapshot }));
    stream.event(json!({ "type": "response.in_progress", "response": snapshot }));
    event_stream::events(stream)
}

/// Which text item is being written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Reasoning,
    Message,
}

/// The text item receiving deltas.
struct Open {
    kind: Kind,
    id: String,
    text: String,
}

struct Streaming {
    reply: Reply,
    queued: VecDeque<Event>,
    sequence: u64,
    /// The finished output items; the open one (if any) comes next.
    output: Vec<Value>,
    open: Option<Open>,
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

impl Streaming {
    /// Queues `data` (which has its `type`) with the next sequence number.
    fn event(&mut self, mut data: Value) {
        data["sequence_number"] = json!(self.sequence);
        self.sequence += 1;
        let name = data["type"].as_str().unwrap_or("message").to_string();
        self.queued
            .push_back(Event::default().event(name).data(data.to_string()));
    }

    fn snapshot(&self, status: Status) -> Value {
        self.reply.object(status, &self.output, None, None)
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
                ..
            } => {
                let status = Status::of(finish_reason, self.reply.answer.calls());
                self.send(&thought, outputs);
                if self.reply.answer.calls() == 0 && !self.has_message() {
                    // An answer without text or calls is still a message, as the whole
                    // response has one.
                    self.delta(Kind::Message, "", status);
                }
                self.close(status);
                let response = self.reply.object(status, &self.output, Some(&usage), None);
                let kind = match status {
                    Status::Incomplete => "response.incomplete",
                    _ => "response.completed",
                };
                self.event(json!({ "type": kind, "response": response }));
                self.finished = true;
            }
            Step::Failed(message) => {
                self.close(Status::Incomplete);
                let error = ApiError::server("generation_failed", message);
                let response = self
                    .reply
                    .object(Status::Failed, &self.output, None, Some(&error));
                self.event(json!({ "type": "response.failed", "response": response }));
                self.finished = true;
            }
        }
    }

    fn send(&mut self, thought: &str, outputs: Vec<Output>) {
        if !thought.is_empty() {
            self.delta(Kind::Reasoning, thought, Status::Completed);
        }
        for output in outputs {
            match output {
                Output::Content(text) => self.delta(Kind::Message, &text, Status::Completed),
                Output::Call(call) => self.call(&call),
            }
        }
    }

    fn has_message(&self) -> bool {
        self.open.as_ref().is_some_and(|o| o.kind == Kind::Message)
            || self.output.iter().any(|item| item["type"] == "message")
    }

    /// Text for an item of `kind`, opening one (and closing the other) first if needed.
    /// `closing` is the status the item it closes ends with.
    fn delta(&mut self, kind: Kind, text: &str, closing: Status) {
        if self.open.as_ref().map(|o| o.kind) != Some(kind) {
            self.close(closing);
            let (id, item, part) = match kind {
                Kind::Reasoning => {
                    let id = new_id("rs");
                    let item = output::reasoning_started(&id);
                    (id, item, output::reasoning_part(""))
                }
                Kind::Message => {
                    let id = new_id("msg");
                    let item = output::message_started(&id);
                    (id, item, output::text_part(""))
                }
            };
            let index = self.output.len();
            self.event(
                json!({ "type": "response.output_item.added", "output_index": index, "item": item }),
            );
            self.event(json!({
                "type": "response.content_part.added",
                "item_id": id,
                "output_index": index,
                "content_index": 0,
                "part": part,
            }));
            self.open = Some(Open {
                kind,
                id,
                text: String::new(),
            });
        }
        let index = self.output.len();
        let Some(open) = self.open.as_mut() else {
            return;
        };
        open.text.push_str(text);
        let mut event = json!({
            "item_id": open.id,
            "output_index": index,
            "content_index": 0,
            "delta": text,
        });
        match kind {
            Kind::Reasoning => event["type"] = json!("response.reasoning_text.delta"),
            Kind::Message => {
                event["type"] = json!("response.output_text.delta");
                event["logprobs"] = json!([]);
            }
        }
        if !text.is_empty() {
            self.event(event);
        }
    }

    /// Ends the open item, if any: its text's `.done`, its part's and its own.
    fn close(&mut self, status: Status) {
        let Some(Open { kind, id, text }) = self.open.take() else {
            return;
        };
        let index = self.output.len();
        let (done, part, item) = match kind {
            Kind::Reasoning => (
                json!({ "type": "response.reasoning_text.done", "text": text }),
                output::reasoning_part(&text),
                // Thinking that ended is complete, however the answer after it ends.
                output::reasoning_item(&id, &text, Status::Completed),
            ),
            Kind::Message => (
                json!({ "type": "response.output_text.done", "text": text, "logprobs": [] }),
                output::text_part(&text),
                output::message_item(&id, &text, status),
            ),
        };
        let mut done = done;
        done["item_id"] = json!(id);
        done["output_index"] = json!(index);
        done["content_index"] = json!(0);
        self.event(done);
        self.event(json!({
            "type": "response.content_part.done",
            "item_id": id,
            "output_index": index,
            "content_index": 0,
            "part": part,
        }));
        self.event(
            json!({ "type": "response.output_item.done", "output_index": index, "item": item }),
        );
        self.output.push(item);
    }

    /// A function call: its item added, its arguments in pieces, done.
    fn call(&mut self, call: &ToolCall) {
        self.close(Status::Completed);
        let index = self.output.len();
        let id = output::call_item_id(call);
        self.event(json!({
            "type": "response.output_item.added",
            "output_index": index,
            "item": output::call_item(call, "", Status::InProgress),
        }));
        let arguments: Vec<char> = call.arguments.chars().collect();
        for piece in arguments.chunks(ARGUMENT_PIECE) {
            let piece: String = piece.iter().collect();
            self.event(json!({
                "type": "response.function_call_arguments.delta",
                "item_id": id,
                "output_index": index,
                "delta": piece,
            }));
        }
        self.event(json!({
            "type": "response.function_call_arguments.done",
            "item_id": id,
            "output_index": index,
            "name": call.name,
            "arguments": call.arguments,
        }));
        let item = output::call_item(call, &call.arguments, Status::Completed);
        self.event(
            json!({ "type": "response.output_item.done", "output_index": index, "item": item }),
        );
        self.output.push(item);
    }
}
