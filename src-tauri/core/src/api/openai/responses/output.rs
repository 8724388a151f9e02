//! The response object and its output items (reasoning, the assistant's message, function
//! calls), for the whole answer and for the stream's snapshots alike.

use serde_json::{json, Value};

use super::request::Echo;
use crate::api::error::ApiError;
use crate::api::generation::Generating;
use crate::engine::tools::ToolCall;
use crate::engine::{FinishReason, Usage};

/// A generation under way, with what its response object needs.
pub struct Reply {
    pub id: String,
    pub created_at: u64,
    pub echo: Echo,
    pub answer: Generating,
}

/// How the response ended, as its `status` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    InProgress,
    Completed,
    /// Cut off at `max_output_tokens`.
    Incomplete,
    Failed,
}

impl Status {
    pub fn of(reason: FinishReason, calls: usize) -> Self {
        match reason {
            FinishReason::Length if calls == 0 => Self::Incomplete,
            _ => Self::Completed,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::InProgress => "in_progress",
            Self::Completed => "completed",
            Self::Incomplete => "incomplete",
            Self::Failed => "failed",
        }
    }
}

impl Reply {
    /// The response object as it stands: `output` so far, `usage` once known, the error if
    /// it failed.
    pub fn object(
        &self,
        status: Status,
        output: &[Value],
        usage: Option<&Usage>,
        error: Option<&ApiError>,
    ) -> Value {
        let e = &self.echo;
        json!({
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status.as_str(),
            "error": error.map(|e| json!({ "code": "server_error", "message": e.message })),
            "incomplete_details": (status == Status::Incomplete)
                .then(|| json!({ "reason": "max_output_tokens" })),
            "instructions": e.instructions,
            "max_output_tokens": e.max_output_tokens,
            "model": self.answer.model_id(),
            "output": output,
            "parallel_tool_calls": e.parallel_tool_calls,
            "previous_response_id": null,
            "reasoning": { "effort": null, "summary": null },
            "store": false,
            "temperature": e.temperature,
            "text": e.text,
            "tool_choice": e.tool_choice,
            "tools": e.tools,
            "top_p": e.top_p,
            "truncation": "disabled",
            "usage": usage.map(usage_json),
            "metadata": e.metadata,
        })
    }

    /// Waits for the whole answer. If the client hangs up, this future is dropped and with it
    /// the generation, which the engine then cancels.
    pub async fn collect(mut self) -> Result<Value, ApiError> {
        let (whole, finish_reason, usage) = self
            .answer
            .collect()
            .await
            .map_err(|message| ApiError::server("generation_failed", message))?;
        let status = Status::of(finish_reason, whole.calls.len());
        let mut output = Vec::new();
        if !whole.thought.is_empty() {
            output.push(reasoning_item(&new_id("rs"), &whole.thought, status));
        }
        if !whole.content.is_empty() || whole.calls.is_empty() {
            output.push(message_item(&new_id("msg"), &whole.content, status));
        }
        output.extend(
            whole
                .calls
                .iter()
                .map(|call| call_item(call, &call.arguments, Status::Completed)),
        );
        Ok(self.object(status, &output, Some(&usage), None))
    }
}

pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// Responses usage. Reasoning tokens are part of `output_tokens` and not counted apart.
pub fn usage_json(usage: &Usage) -> Value {
    json!({
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": { "cached_tokens": usage.cached_tokens },
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": { "reasoning_tokens": 0 },
        "total_tokens": usage.total_tokens,
    })
}

/// The message's one text part.
pub fn text_part(text: &str) -> Value {
    json!({ "type": "output_text", "text": text, "annotations": [], "logprobs": [] })
}

pub fn reasoning_part(text: &str) -> Value {
    json!({ "type": "reasoning_text", "text": text })
}

/// The assistant's message; `text` of `None` while it is being written (no parts yet).
fn message(id: &str, text: Option<&str>, status: Status) -> Value {
    json!({
        "type": "message",
        "id": id,
        "status": status.as_str(),
        "role": "assistant",
        "content": text.map(|t| vec![text_part(t)]).unwrap_or_default(),
    })
}

pub fn message_item(id: &str, text: &str, status: Status) -> Value {
    message(id, Some(text), status)
}

pub fn message_started(id: &str) -> Value {
    message(id, None, Status::InProgress)
}

/// The model's thinking, as a reasoning item with its text (no summary is made).
fn reasoning(id: &str, text: Option<&str>, status: Status) -> Value {
    json!({
        "type": "reasoning",
        "id": id,
        "status": status.as_str(),
        "summary": [],
        "content": text.map(|t| vec![reasoning_part(t)]).unwrap_or_default(),
    })
}

pub fn reasoning_item(id: &str, text: &str, status: Status) -> Value {
    reasoning(id, Some(text), status)
}

pub fn reasoning_started(id: &str) -> Value {
    reasoning(id, None, Status::InProgress)
}

/// A function call; its item id is the call id with `fc_` for `call_`. A call is read whole
/// before it is passed on, so it is complete; while streaming, it starts `in_progress` with no
/// arguments.
pub fn call_item(call: &ToolCall, arguments: &str, status: Status) -> Value {
    json!({
        "type": "function_call",
        "id": call_item_id(call),
        "call_id": call.id,
        "name": call.name,
        "arguments": arguments,
        "status": status.as_str(),
    })
}

pub fn call_item_id(call: &ToolCall) -> String {
    match call.id.strip_prefix("call_") {
        Some(rest) => format!("fc_{rest}"),
        None => format!("fc_{}", call.id),
    }
}
