//! `POST /v1/chat/completions`.

use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;

use super::options::{Checked, GenerationOptions};
use super::run::{start, Kind};
use super::tools::ToolFields;
use crate::api::body::JsonBody;
use crate::api::error::ApiError;
use crate::api::generation;
use crate::api::AppState;
use crate::engine::tools::{ToolCall, ToolRequest};
use crate::engine::ChatMessage;

#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<MessageIn>,
    #[serde(flatten)]
    pub options: GenerationOptions,
    #[serde(flatten)]
    pub tools: ToolFields,
    /// llama-server's switch: `"none"` keeps `<think>` blocks in the content; `"auto"` (the
    /// default) and `"deepseek"` put them in `reasoning_content`.
    pub reasoning_format: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct MessageIn {
    pub role: String,
    #[serde(default)]
    pub content: Option<Content>,
    /// An assistant turn's calls, as OpenAI returned them.
    #[serde(default)]
    pub tool_calls: Option<Vec<CallIn>>,
    /// A tool result: which call it answers.
    #[serde(default)]
    pub tool_call_id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct CallIn {
    pub id: String,
    pub function: FunctionIn,
}

#[derive(Debug, Deserialize)]
pub struct FunctionIn {
    pub name: String,
    /// JSON text, as OpenAI writes it.
    pub arguments: String,
}

/// Message content: a string, or OpenAI's list of typed parts (of which text is supported).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Debug, Deserialize)]
pub struct Part {
    pub r#type: String,
    #[serde(default)]
    pub text: Option<String>,
}

const ROLES: [&str; 5] = ["system", "developer", "user", "assistant", "tool"];

fn to_messages(input: Vec<MessageIn>) -> Result<Vec<ChatMessage>, ApiError> {
    if input.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_messages",
            "'messages' must not be empty",
        ));
    }
    input
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            if !ROLES.contains(&m.role.as_str()) {
                return Err(ApiError::bad_request(
                    "invalid_messages",
                    format!("messages[{i}].role '{}' is not one of {}", m.role, ROLES.join(", ")),
                ));
            }
            let content = match m.content {
                None => String::new(),
                Some(Content::Text(t)) => t,
                Some(Content::Parts(parts)) => {
                    let mut text = String::new();
                    for (j, part) in parts.into_iter().enumerate() {
                        match (part.r#type.as_str(), part.text) {
                            ("text", Some(t)) => text.push_str(&t),
                            (other, _) => {
                                return Err(ApiError::bad_request(
                                    "invalid_messages",
                                    format!("messages[{i}].content[{j}] of type '{other}' is not supported; only text parts are"),
                                ))
                            }
                        }
                    }
                    text
                }
            };
            // OpenAI's newer name for the system role; templates know only "system".
            let role = if m.role == "developer" { "system" } else { m.role.as_str() };
            let mut message = ChatMessage::new(role, &content);
            message.tool_calls = m
                .tool_calls
                .unwrap_or_default()
                .into_iter()
                .map(|c| ToolCall {
                    id: c.id,
                    name: c.function.name,
                    arguments: c.function.arguments,
                })
                .collect();
            message.tool_call_id = m.tool_call_id;
            message.name = m.name;
            Ok(message)
        })
        .collect()
}

/// A chat request that passed every check, ready to run.
#[derive(Debug)]
pub struct ChatCall {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    pub checked: Checked,
    pub tools: ToolRequest,
    /// Split `<think>` blocks off into `reasoning_content`.
    pub split_reasoning: bool,
    pub stream: bool,
}

impl ChatRequest {
    pub fn prepare(self) -> Result<ChatCall, ApiError> {
        Ok(ChatCall {
            checked: self.options.check(None)?,
            tools: self.tools.check()?,
            split_reasoning: match self.reasoning_format.as_deref() {
                None | Some("auto") | Some("deepseek") => true,
                Some("none") => false,
                Some(other) => {
                    return Err(ApiError::bad_request(
                        "invalid_reasoning_format",
                        format!("'reasoning_format' must be \"auto\", \"deepseek\" or \"none\", got \"{other}\""),
                    ))
                }
            },
            stream: self.options.stream,
            messages: to_messages(self.messages)?,
            model: self.model,
        })
    }
}

/// What the endpoint makes of a body before it looks for the model: the request decoder the
/// fuzz target drives.
pub fn decode(body: &[u8]) -> Result<ChatCall, ApiError> {
    crate::api::body::decode::<ChatRequest>(body)?.prepare()
}

pub async fn completions(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<ChatRequest>,
) -> Result<Response, ApiError> {
    let call = request.prepare()?;
    let (messages, request, split) = (call.messages, call.tools, call.split_reasoning);
    let started = start(
        &state,
        Kind::Chat,
        &call.model,
        |model| generation::chat_prompt(model, messages, &request, split),
        call.checked,
    )
    .await?;
    Ok(started.respond(call.stream).await)
}
