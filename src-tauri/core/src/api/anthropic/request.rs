//! Anthropic's Messages request, checked and translated into the engine-neutral request: chat
//! messages (tool uses and results included), a tool request and generation settings.

use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::error::ApiError;
use crate::api::generation::Settings;
use crate::engine::tools::{check_schema, ToolCall, ToolChoice, ToolRequest, ToolSpec};
use crate::engine::{ChatMessage, SamplingRequest};

/// Anthropic allows many stop sequences; a bound keeps the matcher small.
const MAX_STOP_SEQUENCES: usize = 16;
const MAX_STOP_CHARS: usize = 256;
const MAX_TOOLS: usize = 128;

#[derive(Debug, Deserialize)]
pub struct MessagesRequest {
    pub model: String,
    /// Required, as Anthropic requires it (`count_tokens` goes without).
    pub max_tokens: Option<i64>,
    #[serde(default)]
    pub system: Option<Value>,
    pub messages: Vec<MessageIn>,
    #[serde(default)]
    pub stop_sequences: Option<Vec<String>>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<i64>,
    #[serde(default)]
    pub stream: bool,
    #[serde(default)]
    pub tools: Option<Vec<Value>>,
    #[serde(default)]
    pub tool_choice: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub struct MessageIn {
    pub role: String,
    pub content: Value,
}

fn invalid(message: String) -> ApiError {
    ApiError::bad_request("invalid_request", message)
}

/// The request, translated.
#[derive(Debug)]
pub struct Translated {
    pub messages: Vec<ChatMessage>,
    pub tools: ToolRequest,
    pub settings: Settings,
}

impl MessagesRequest {
    /// `needs_max_tokens`: Messages requires it; counting tokens does not.
    pub fn translate(&self, needs_max_tokens: bool) -> Result<Translated, ApiError> {
        let max_tokens = match self.max_tokens {
            Some(n) if n >= 1 => Some(u32::try_from(n).unwrap_or(u32::MAX)),
            Some(n) => return Err(invalid(format!("max_tokens: must be at least 1, got {n}"))),
            None if needs_max_tokens => return Err(invalid("max_tokens: Field required".into())),
            None => None,
        };
        let mut messages = Vec::new();
        if let Some(system) = &self.system {
            let text = text_of(system, "system")?;
            if !text.is_empty() {
                messages.push(ChatMessage::new("system", &text));
            }
        }
        if self.messages.is_empty() {
            return Err(invalid("messages: at least one message is required".into()));
        }
        for (i, message) in self.messages.iter().enumerate() {
            translate_message(i, message, &mut messages)?;
        }
        let stop = self.stop_sequences.clone().unwrap_or_default();
        if stop.len() > MAX_STOP_SEQUENCES
            || stop.iter().any(|s| s.chars().count() > MAX_STOP_CHARS)
        {
            return Err(invalid(format!(
                "stop_sequences: at most {MAX_STOP_SEQUENCES}, each at most {MAX_STOP_CHARS} characters"
            )));
        }
        let ranged = |field: &str, value: Option<f64>, ok: fn(f64) -> bool, range: &str| match value
        {
            None => Ok(None),
            Some(v) if v.is_finite() && ok(v) => Ok(Some(v as f32)),
            Some(v) => Err(invalid(format!("{field}: must be {range}, got {v}"))),
        };
        let sampling = SamplingRequest {
            temperature: ranged(
                "temperature",
                self.temperature,
                |v| (0.0..=1.0).contains(&v),
                "between 0 and 1",
            )?,
            top_p: ranged(
                "top_p",
                self.top_p,
                |v| v > 0.0 && v <= 1.0,
                "greater than 0 and at most 1",
            )?,
            top_k: match self.top_k {
                None => None,
                Some(k) if k >= 0 => Some(u32::try_from(k).unwrap_or(u32::MAX)),
                Some(k) => return Err(invalid(format!("top_k: must be at least 0, got {k}"))),
            },
            ..SamplingRequest::default()
        };
        Ok(Translated {
            messages,
            tools: self.tool_request()?,
            settings: Settings {
                sampling,
                max_tokens,
                stop,
                keep_alive: None,
                logprobs: None,
                cache_prompt: None,
            },
        })
    }

    fn tool_request(&self) -> Result<ToolRequest, ApiError> {
        let tools = self.tools.as_deref().unwrap_or_default();
        if tools.len() > MAX_TOOLS {
            return Err(invalid(format!(
                "tools: at most {MAX_TOOLS}, got {}",
                tools.len()
            )));
        }
        let mut specs: Vec<ToolSpec> = Vec::with_capacity(tools.len());
        for (i, tool) in tools.iter().enumerate() {
            let name = tool.get("name").and_then(Value::as_str).unwrap_or_default();
            if name.is_empty() || name.len() > 64 || specs.iter().any(|s| s.name == name) {
                return Err(invalid(format!(
                    "tools.{i}.name: must be 1 to 64 characters and unique, got {}",
                    tool.get("name").unwrap_or(&Value::Null)
                )));
            }
            let schema = tool
                .get("input_schema")
                .ok_or_else(|| invalid(format!("tools.{i}.input_schema: Field required")))?;
            check_schema(schema)
                .map_err(|why| invalid(format!("tools.{i}.input_schema: {why}")))?;
            specs.push(ToolSpec {
                name: name.to_string(),
                description: tool
                    .get("description")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                parameters: schema.clone(),
            });
        }
        let choice = self.tool_choice.as_ref();
        let kind = choice.and_then(|c| c.get("type")).and_then(Value::as_str);
        let choice_of = match kind {
            None | Some("auto") => ToolChoice::Auto,
            Some("any") => ToolChoice::Required,
            Some("none") => ToolChoice::None,
            Some("tool") => {
                let name = choice
                    .and_then(|c| c.get("name"))
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                if !specs.iter().any(|s| s.name == name) {
                    return Err(invalid(format!(
                        "tool_choice.name: '{name}' is not one of the tools"
                    )));
                }
                ToolChoice::Named(name.to_string())
            }
            Some(other) => {
                return Err(invalid(format!(
                    "tool_choice.type: must be auto, any, tool or none, got '{other}'"
                )))
            }
        };
        if specs.is_empty() && matches!(choice_of, ToolChoice::Required | ToolChoice::Named(_)) {
            return Err(invalid("tool_choice: the request has no tools".into()));
        }
        let parallel = !choice
            .and_then(|c| c.get("disable_parallel_tool_use"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        Ok(ToolRequest {
            tools: specs,
            choice: choice_of,
            parallel,
            response_schema: None,
        })
    }
}

/// A string, or a list of blocks of which the text ones count.
fn text_of(value: &Value, field: &str) -> Result<String, ApiError> {
    match value {
        Value::String(text) => Ok(text.clone()),
        Value::Array(blocks) => {
            let mut text = String::new();
            for (j, block) in blocks.iter().enumerate() {
                match block.get("type").and_then(Value::as_str) {
                    Some("text") => text.push_str(
                        block
                            .get("text")
                            .and_then(Value::as_str)
                            .unwrap_or_default(),
                    ),
                    other => {
                        return Err(invalid(format!(
                            "{field}.{j}.type: only text blocks are supported here, got {}",
                            other.unwrap_or("none")
                        )))
                    }
                }
            }
            Ok(text)
        }
        other => Err(invalid(format!(
            "{field}: must be a string or a list of blocks, got {other}"
        ))),
    }
}

/// One message: text, `tool_use` blocks (an assistant's calls) and `tool_result` blocks (the
/// user's answers to them, which become tool messages before the user's text).
fn translate_message(
    i: usize,
    message: &MessageIn,
    out: &mut Vec<ChatMessage>,
) -> Result<(), ApiError> {
    let role = message.role.as_str();
    if role != "user" && role != "assistant" {
        return Err(invalid(format!(
            "messages.{i}.role: must be user or assistant, got '{role}'"
        )));
    }
    let blocks = match &message.content {
        Value::String(text) => {
            out.push(ChatMessage::new(role, text));
            return Ok(());
        }
        Value::Array(blocks) => blocks,
        other => {
            return Err(invalid(format!(
                "messages.{i}.content: must be a string or a list of blocks, got {other}"
            )))
        }
    };
    let mut text = String::new();
    let mut calls = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(
                block
                    .get("text")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
            ),
            Some("tool_use") if role == "assistant" => {
                let input = block.get("input").cloned().unwrap_or_else(|| json!({}));
                calls.push(ToolCall {
                    id: block
                        .get("id")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    name: block
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    arguments: input.to_string(),
                });
            }
            Some("tool_result") if role == "user" => {
                let content = match block.get("content") {
                    None | Some(Value::Null) => String::new(),
                    Some(content) => {
                        text_of(content, &format!("messages.{i}.content.{j}.content"))?
                    }
                };
                let mut result = ChatMessage::new("tool", &content);
                result.tool_call_id = block
                    .get("tool_use_id")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                out.push(result);
            }
            // Earlier thinking is the model's own; templates drop it from the history.
            Some("thinking" | "redacted_thinking") => {}
            other => {
                return Err(invalid(format!(
                "messages.{i}.content.{j}.type: {} blocks are not supported in a {role} message",
                other.unwrap_or("untyped")
            )))
            }
        }
    }
    if !text.is_empty() || !calls.is_empty() {
        let mut message = ChatMessage::new(role, &text);
        message.tool_calls = calls;
        out.push(message);
    }
    Ok(())
}
