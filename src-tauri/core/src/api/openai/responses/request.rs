//! The Responses request, checked and translated: `input` (a string or a list of items) and
//! `instructions` become chat messages, the flat function tools and `text.format` become the
//! chat request's tool fields (checked by the same code), and the sampling fields are the chat
//! request's.

use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::error::ApiError;
use crate::api::openai::options::{Checked, GenerationOptions};
use crate::api::openai::tools::ToolFields;
use crate::engine::tools::{ToolCall, ToolRequest};
use crate::engine::ChatMessage;

/// OpenAI's own floor for `max_output_tokens` is 16; a local server can honour any count.
const MIN_OUTPUT_TOKENS: i64 = 1;

#[derive(Debug, Deserialize)]
pub struct ResponsesRequest {
    pub model: String,
    pub input: Option<Value>,
    pub instructions: Option<String>,
    pub max_output_tokens: Option<i64>,
    pub tools: Option<Vec<Value>>,
    pub tool_choice: Option<Value>,
    pub parallel_tool_calls: Option<bool>,
    /// `{"format": {"type": "text" | "json_object" | "json_schema", …}}`.
    pub text: Option<Value>,
    /// Asks to continue a stored response; Headroom stores none.
    pub previous_response_id: Option<String>,
    /// The same, through a stored conversation.
    pub conversation: Option<Value>,
    /// Extra outputs; only the ones Headroom can give are accepted.
    pub include: Option<Vec<String>>,
    pub metadata: Option<Value>,
    /// Temperature, top_p, the llama-server samplers, seed and keep-alive, as chat takes them.
    #[serde(flatten)]
    pub options: GenerationOptions,
}

/// What the request asks for, checked.
#[derive(Debug)]
pub struct Call {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    pub tools: ToolRequest,
    pub checked: Checked,
    pub stream: bool,
    /// The request's own fields, echoed in the response object as OpenAI does.
    pub echo: Echo,
}

/// The request fields the response object repeats.
#[derive(Debug, Clone)]
pub struct Echo {
    pub instructions: Option<String>,
    pub max_output_tokens: Option<i64>,
    pub tools: Vec<Value>,
    pub tool_choice: Value,
    pub parallel_tool_calls: bool,
    pub text: Value,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub metadata: Value,
}

fn invalid(code: &'static str, message: String) -> ApiError {
    ApiError::bad_request(code, message)
}

impl ResponsesRequest {
    pub fn prepare(mut self) -> Result<Call, ApiError> {
        if self.previous_response_id.is_some() || self.conversation.is_some() {
            return Err(invalid(
                "stored_responses_unsupported",
                "Headroom does not store responses, so 'previous_response_id' and 'conversation' \
                 cannot be followed; send the whole conversation in 'input' instead"
                    .into(),
            ));
        }
        if let Some(include) = &self.include {
            if let Some(other) = include.iter().find(|i| *i != "reasoning.encrypted_content") {
                return Err(invalid(
                    "invalid_include",
                    format!("'include' cannot ask for '{other}' here (log-probabilities are on /v1/chat/completions)"),
                ));
            }
        }
        if let Some(n) = self.max_output_tokens {
            if n < MIN_OUTPUT_TOKENS {
                return Err(invalid(
                    "invalid_max_output_tokens",
                    format!("'max_output_tokens' must be at least {MIN_OUTPUT_TOKENS}, got {n}"),
                ));
            }
        }
        // The chat fields of the same names would be accepted silently; Responses has neither.
        self.options.max_tokens = self.max_output_tokens;
        self.options.max_completion_tokens = None;
        self.options.logprobs = None;
        self.options.top_logprobs = None;
        let checked = self.options.check(None)?;

        let fields = ToolFields {
            tools: self
                .tools
                .as_deref()
                .map(|tools| tools.iter().enumerate().map(chat_tool).collect())
                .transpose()?,
            tool_choice: self.tool_choice.as_ref().map(chat_tool_choice),
            parallel_tool_calls: self.parallel_tool_calls,
            response_format: text_format(self.text.as_ref())?,
        };
        let tools = fields.check()?;

        let mut messages = Vec::new();
        if let Some(instructions) = self.instructions.as_deref().filter(|i| !i.is_empty()) {
            messages.push(ChatMessage::new("system", instructions));
        }
        match &self.input {
            None | Some(Value::Null) => {
                return Err(invalid("invalid_input", "'input' is required".into()))
            }
            Some(Value::String(text)) => messages.push(ChatMessage::new("user", text)),
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    translate_item(i, item, &mut messages)?;
                }
            }
            Some(other) => {
                return Err(invalid(
                    "invalid_input",
                    format!("'input' must be a string or a list of items, got {other}"),
                ))
            }
        }
        if !messages.iter().any(|m| m.role != "system") {
            return Err(invalid(
                "invalid_input",
                "'input' has nothing for the model to answer".into(),
            ));
        }

        let echo = Echo {
            instructions: self.instructions,
            max_output_tokens: self.max_output_tokens,
            tools: self.tools.unwrap_or_default(),
            tool_choice: self.tool_choice.unwrap_or_else(|| json!("auto")),
            parallel_tool_calls: tools.parallel,
            text: self
                .text
                .unwrap_or_else(|| json!({ "format": { "type": "text" } })),
            temperature: self.options.temperature,
            top_p: self.options.top_p,
            metadata: self.metadata.unwrap_or_else(|| json!({})),
        };
        Ok(Call {
            model: self.model,
            messages,
            tools,
            stream: self.options.stream,
            checked,
            echo,
        })
    }
}

/// A Responses function tool (`{"type": "function", "name", "parameters", …}`) in the chat
/// request's nested shape; other tool types are refused by name.
fn chat_tool((i, tool): (usize, &Value)) -> Result<Value, ApiError> {
    match tool.get("type").and_then(Value::as_str) {
        Some("function") => Ok(json!({
            "type": "function",
            "function": {
                "name": tool.get("name").cloned().unwrap_or(Value::Null),
                "description": tool.get("description").cloned().unwrap_or(Value::Null),
                "parameters": tool.get("parameters").cloned().unwrap_or(Value::Null),
            },
        })),
        other => Err(invalid(
            "invalid_tools",
            format!(
                "tools[{i}]: only function tools run locally, not {}",
                other.map_or("an untyped tool".to_string(), |t| format!("'{t}'"))
            ),
        )),
    }
}

/// `{"type": "function", "name"}` in the chat shape; the strings pass as they are.
fn chat_tool_choice(choice: &Value) -> Value {
    match choice.get("name") {
        Some(name) if choice.get("type").and_then(Value::as_str) == Some("function") => {
            json!({ "type": "function", "function": { "name": name } })
        }
        _ => choice.clone(),
    }
}

/// `text.format` is the chat request's `response_format` with the schema beside `type`.
fn text_format(text: Option<&Value>) -> Result<Option<Value>, ApiError> {
    match text {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(fields)) => Ok(fields.get("format").cloned()),
        Some(other) => Err(invalid(
            "invalid_response_format",
            format!("'text' must be an object with a 'format', got {other}"),
        )),
    }
}

const ROLES: [&str; 4] = ["system", "developer", "user", "assistant"];

/// One input item: a message, a function call the model made, or a call's output.
fn translate_item(i: usize, item: &Value, out: &mut Vec<ChatMessage>) -> Result<(), ApiError> {
    let field = |name: &str| item.get(name).and_then(Value::as_str);
    let kind = field("type").unwrap_or(if item.get("role").is_some() {
        "message"
    } else {
        ""
    });
    match kind {
        "message" => {
            let role = field("role").unwrap_or_default();
            if !ROLES.contains(&role) {
                return Err(invalid(
                    "invalid_input",
                    format!(
                        "input[{i}].role must be one of {}, got {}",
                        ROLES.join(", "),
                        item.get("role").unwrap_or(&Value::Null)
                    ),
                ));
            }
            let content = message_text(i, item.get("content").unwrap_or(&Value::Null))?;
            // OpenAI's newer name for the system role; templates know only "system".
            let role = if role == "developer" { "system" } else { role };
            out.push(ChatMessage::new(role, &content));
        }
        "function_call" => {
            let call = ToolCall {
                id: required(i, item, "call_id")?.to_string(),
                name: required(i, item, "name")?.to_string(),
                arguments: field("arguments").unwrap_or("{}").to_string(),
            };
            // Consecutive calls belong to one assistant turn, after any text it said.
            match out.last_mut() {
                Some(last) if last.role == "assistant" => last.tool_calls.push(call),
                _ => {
                    let mut turn = ChatMessage::new("assistant", "");
                    turn.tool_calls.push(call);
                    out.push(turn);
                }
            }
        }
        "function_call_output" => {
            let call_id = required(i, item, "call_id")?;
            let output = match item.get("output") {
                Some(Value::String(text)) => text.clone(),
                Some(parts @ Value::Array(_)) => message_text(i, parts)?,
                other => {
                    return Err(invalid(
                        "invalid_input",
                        format!(
                            "input[{i}].output must be a string or a list of text parts, got {}",
                            other.unwrap_or(&Value::Null)
                        ),
                    ))
                }
            };
            let mut result = ChatMessage::new("tool", &output);
            // Templates that name the function a result came from find it by the call.
            result.name = out
                .iter()
                .flat_map(|m| &m.tool_calls)
                .find(|c| c.id == call_id)
                .map(|c| c.name.clone());
            result.tool_call_id = Some(call_id.to_string());
            out.push(result);
        }
        // Earlier reasoning is the model's own; templates drop it from the history.
        "reasoning" => {}
        "item_reference" => {
            return Err(invalid(
                "stored_responses_unsupported",
                format!("input[{i}]: Headroom does not store items, so an item_reference cannot be followed; send the item itself"),
            ))
        }
        other => {
            return Err(invalid(
                "invalid_input",
                format!(
                    "input[{i}]: items of type '{other}' are not supported; messages, function_call and function_call_output are"
                ),
            ))
        }
    }
    Ok(())
}

fn required<'a>(i: usize, item: &'a Value, name: &str) -> Result<&'a str, ApiError> {
    item.get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| invalid("invalid_input", format!("input[{i}].{name} is required")))
}

/// A message's content: a string, or parts of which the text ones (`input_text`,
/// `output_text`, `text`) are supported.
fn message_text(i: usize, content: &Value) -> Result<String, ApiError> {
    match content {
        Value::String(text) => Ok(text.clone()),
        Value::Array(parts) => {
            let mut text = String::new();
            for (j, part) in parts.iter().enumerate() {
                match part.get("type").and_then(Value::as_str) {
                    Some("input_text" | "output_text" | "text") => text.push_str(
                        part.get("text").and_then(Value::as_str).unwrap_or_default(),
                    ),
                    other => {
                        return Err(invalid(
                            "invalid_input",
                            format!(
                                "input[{i}].content[{j}]: parts of type '{}' are not supported; only text parts are",
                                other.unwrap_or("none")
                            ),
                        ))
                    }
                }
            }
            Ok(text)
        }
        other => Err(invalid(
            "invalid_input",
            format!("input[{i}].content must be a string or a list of parts, got {other}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::tools::ToolChoice;

    fn prepare(body: Value) -> Result<Call, ApiError> {
        serde_json::from_value::<ResponsesRequest>(body)
            .expect("deserializes")
            .prepare()
    }

    fn refused(body: Value) -> (String, String) {
        let err = prepare(body).expect_err("refused").to_json();
        (
            err["error"]["code"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            err["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        )
    }

    #[test]
    fn a_string_input_with_instructions_is_a_system_and_a_user_message() {
        let call = prepare(json!({"model": "m", "input": "Hi", "instructions": "Be brief.", "max_output_tokens": 20}))
            .expect("valid");
        let turns: Vec<(&str, &str)> = call
            .messages
            .iter()
            .map(|m| (m.role.as_str(), m.content.as_str()))
            .collect();
        assert_eq!(turns, [("system", "Be brief."), ("user", "Hi")]);
        assert_eq!(call.checked.max_tokens, Some(20));
    }

    #[test]
    fn a_tool_round_trip_becomes_an_assistant_call_and_a_named_tool_result() {
        let call = prepare(json!({
            "model": "m",
            "input": [
                {"role": "developer", "content": "Use tools."},
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather in Oslo?"}]},
                {"type": "reasoning", "id": "rs_1", "summary": []},
                {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"},
                {"type": "function_call_output", "call_id": "call_1", "output": "4 °C"},
            ],
        }))
        .expect("valid");
        let roles: Vec<&str> = call.messages.iter().map(|m| m.role.as_str()).collect();
        assert_eq!(roles, ["system", "user", "assistant", "tool"]);
        assert_eq!(call.messages[2].tool_calls[0].name, "get_weather");
        assert_eq!(call.messages[3].name.as_deref(), Some("get_weather"));
        assert_eq!(call.messages[3].tool_call_id.as_deref(), Some("call_1"));
        assert_eq!(call.messages[3].content, "4 °C");
    }

    #[test]
    fn flat_function_tools_a_named_choice_and_a_schema_format_are_read() {
        let schema = json!({"type": "object", "properties": {"n": {"type": "integer"}}});
        let call = prepare(json!({
            "model": "m",
            "input": "x",
            "tools": [{"type": "function", "name": "f", "parameters": {"type": "object", "properties": {}}, "strict": true}],
            "tool_choice": {"type": "function", "name": "f"},
            "text": {"format": {"type": "json_schema", "name": "n", "schema": schema, "strict": true}},
        }))
        .expect("valid");
        assert_eq!(call.tools.choice, ToolChoice::Named("f".into()));
        assert_eq!(call.tools.response_schema, Some(schema));
        assert_eq!(call.echo.tool_choice["name"], "f");
    }

    #[test]
    fn what_cannot_be_served_is_refused_naming_the_field() {
        let cases = [
            (
                json!({"model": "m"}),
                "invalid_input",
                "'input' is required",
            ),
            (
                json!({"model": "m", "input": 3}),
                "invalid_input",
                "string or a list",
            ),
            (
                json!({"model": "m", "input": "x", "previous_response_id": "resp_1"}),
                "stored_responses_unsupported",
                "previous_response_id",
            ),
            (
                json!({"model": "m", "input": [{"type": "item_reference", "id": "msg_1"}]}),
                "stored_responses_unsupported",
                "input[0]",
            ),
            (
                json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]}),
                "invalid_input",
                "input_image",
            ),
            (
                json!({"model": "m", "input": [{"role": "wizard", "content": "x"}]}),
                "invalid_input",
                "input[0].role",
            ),
            (
                json!({"model": "m", "input": [{"type": "function_call_output", "output": "x"}]}),
                "invalid_input",
                "input[0].call_id",
            ),
            (
                json!({"model": "m", "input": "x", "tools": [{"type": "web_search"}]}),
                "invalid_tools",
                "'web_search'",
            ),
            (
                json!({"model": "m", "input": "x", "tools": [{"type": "function", "name": "f", "parameters": {"type": "nonsense"}}]}),
                "invalid_tools",
                "not a valid JSON Schema",
            ),
            (
                json!({"model": "m", "input": "x", "text": {"format": {"type": "yaml"}}}),
                "invalid_response_format",
                "yaml",
            ),
            (
                json!({"model": "m", "input": "x", "max_output_tokens": 0}),
                "invalid_max_output_tokens",
                "at least 1",
            ),
            (
                json!({"model": "m", "input": "x", "include": ["message.output_text.logprobs"]}),
                "invalid_include",
                "logprobs",
            ),
            (
                json!({"model": "m", "input": [], "instructions": "only this"}),
                "invalid_input",
                "nothing",
            ),
        ];
        for (body, code, needle) in cases {
            let (got, message) = refused(body.clone());
            assert_eq!(got, code, "{body}: {message}");
            assert!(message.contains(needle), "{message:?} lacks {needle:?}");
        }
    }
}
