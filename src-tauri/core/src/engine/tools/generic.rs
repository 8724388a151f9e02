//! llama.cpp's "generic" tool format, for templates that know no tools: the tools are described
//! in a system message, and the whole answer is one JSON object, constrained by a grammar:
//! `{"tool_call": {"name", "arguments"}}` (or `{"tool_calls": […]}` when calls may be
//! parallel), or `{"response": …}` when the model may answer instead.
//!
//! Earlier calls and tool results in the history are written in the same JSON, as text,
//! because such a template cannot render them otherwise.

use serde_json::{json, Value};

use super::reader::{content, Output, OutputReader};
use super::{call_from_json, call_schema, offered, Constraint, ToolChoice, ToolPlan, ToolRequest};
use crate::engine::template::ChatMessage;

pub(super) fn plan(messages: Vec<ChatMessage>, request: &ToolRequest) -> ToolPlan {
    let call = call_schema(request, "arguments");
    let calls = if request.parallel {
        json!({
            "type": "object",
            "properties": { "tool_calls": { "type": "array", "items": call, "minItems": 1 } },
            "required": ["tool_calls"],
            "additionalProperties": false,
        })
    } else {
        json!({
            "type": "object",
            "properties": { "tool_call": call },
            "required": ["tool_call"],
            "additionalProperties": false,
        })
    };
    let must_call = matches!(request.choice, ToolChoice::Required | ToolChoice::Named(_));
    let schema = if must_call {
        calls
    } else {
        let response = request
            .response_schema
            .clone()
            .unwrap_or_else(|| json!({ "type": "string" }));
        json!({ "anyOf": [calls, {
            "type": "object",
            "properties": { "response": response },
            "required": ["response"],
            "additionalProperties": false,
        }] })
    };
    let instructions = instructions(request, must_call);
    ToolPlan {
        messages: with_system(rewrite_history(messages), &instructions),
        template_tools: None,
        constraint: Some(Constraint::json(schema)),
        reader: OutputReader::generic(),
    }
}

/// The system message that tells the model what it may call and how to answer.
fn instructions(request: &ToolRequest, must_call: bool) -> String {
    let tools: Vec<Value> = offered(request)
        .into_iter()
        .map(
            |t| json!({ "name": t.name, "description": t.description, "parameters": t.parameters }),
        )
        .collect();
    let key = if request.parallel {
        "tool_calls"
    } else {
        "tool_call"
    };
    let how = if must_call {
        format!("Respond in JSON format with `{key}`, the tool calls to make.")
    } else {
        format!(
            "Respond in JSON format, either with `{key}` (a request to call tools) or with \
             `response`, the reply to the user's request."
        )
    };
    format!(
        "{how}\n\nYou can call any of the following tools to satisfy the user's requests:\n{}",
        serde_json::to_string_pretty(&tools).unwrap_or_default()
    )
}

/// Prepends `text` to the system message, or adds one.
fn with_system(mut messages: Vec<ChatMessage>, text: &str) -> Vec<ChatMessage> {
    match messages.first_mut() {
        Some(first) if first.role == "system" => {
            first.content = format!("{}\n\n{text}", first.content);
        }
        _ => messages.insert(0, ChatMessage::new("system", text)),
    }
    messages
}

/// Writes calls and results as JSON text: an assistant's calls as its content, the results of
/// one turn as one user message (templates like Gemma's demand that roles alternate).
pub(super) fn rewrite_history(messages: Vec<ChatMessage>) -> Vec<ChatMessage> {
    let mut out: Vec<ChatMessage> = Vec::with_capacity(messages.len());
    let mut results: Vec<Value> = Vec::new();
    for message in messages {
        if message.role == "tool" {
            let mut result = serde_json::Map::new();
            if let Some(name) = message.name {
                result.insert("name".into(), json!(name));
            }
            if let Some(id) = message.tool_call_id {
                result.insert("tool_call_id".into(), json!(id));
            }
            result.insert("content".into(), json!(message.content));
            results.push(Value::Object(result));
            continue;
        }
        flush_results(&mut out, &mut results);
        if message.role == "assistant" && !message.tool_calls.is_empty() {
            let calls: Vec<Value> = message
                .tool_calls
                .iter()
                .map(|c| json!({ "name": c.name, "arguments": c.arguments_value(), "id": c.id }))
                .collect();
            let mut text = json!({ "tool_calls": calls }).to_string();
            if !message.content.is_empty() {
                text = format!("{}\n{text}", message.content);
            }
            out.push(ChatMessage::new("assistant", &text));
        } else {
            out.push(message);
        }
    }
    flush_results(&mut out, &mut results);
    out
}

fn flush_results(out: &mut Vec<ChatMessage>, results: &mut Vec<Value>) {
    if results.is_empty() {
        return;
    }
    let text = json!({ "tool_responses": std::mem::take(results) }).to_string();
    out.push(ChatMessage::new("user", &text));
}

/// Reads the whole answer. Text that is not the expected JSON (cut short by `max_tokens`) is
/// passed on as content.
pub(super) fn parse(text: &str) -> Vec<Output> {
    let Ok(value) = serde_json::from_str::<Value>(text.trim()) else {
        return match cut_response(text) {
            Some(answer) => content(&answer),
            None => content(text),
        };
    };
    if let Some(call) = value.get("tool_call") {
        if let Some(call) = call_from_json(call) {
            return vec![Output::Call(call)];
        }
    }
    if let Some(calls) = value.get("tool_calls").and_then(Value::as_array) {
        let calls: Vec<Output> = calls
            .iter()
            .filter_map(call_from_json)
            .map(Output::Call)
            .collect();
        if !calls.is_empty() {
            return calls;
        }
    }
    match value.get("response") {
        Some(Value::String(text)) => content(text),
        Some(other) => content(&other.to_string()),
        None => content(text),
    }
}

/// The answer of a `{"response": "…` cut short by `max_tokens`: what the string held so far.
fn cut_response(text: &str) -> Option<String> {
    let rest = text.trim_start().strip_prefix('{')?.trim_start();
    let rest = rest.strip_prefix("\"response\"")?.trim_start();
    let rest = rest.strip_prefix(':')?.trim_start();
    if !rest.starts_with('"') {
        return None;
    }
    // Close the string; a cut escape sequence is dropped.
    let mut body = rest.to_string();
    for _ in 0..6 {
        if let Ok(Value::String(answer)) = serde_json::from_str(&format!("{body}\"")) {
            return Some(answer);
        }
        body.pop();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::{ToolCall, ToolSpec};
    use super::*;

    fn request(choice: ToolChoice, parallel: bool) -> ToolRequest {
        ToolRequest {
            tools: vec![ToolSpec {
                name: "get_weather".into(),
                description: None,
                parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}}),
            }],
            choice,
            parallel,
            response_schema: None,
        }
    }

    #[test]
    fn required_allows_only_calls_and_auto_also_a_response() {
        let plan = plan(
            vec![ChatMessage::new("user", "hi")],
            &request(ToolChoice::Required, false),
        );
        let schema = plan.constraint.expect("constrained").schema;
        assert_eq!(schema["required"], json!(["tool_call"]));
        let plan = plan_auto();
        let schema = plan.constraint.expect("constrained").schema;
        assert_eq!(schema["anyOf"][0]["required"], json!(["tool_calls"]));
        assert_eq!(
            schema["anyOf"][1]["properties"]["response"],
            json!({"type": "string"})
        );
    }

    fn plan_auto() -> ToolPlan {
        plan(
            vec![
                ChatMessage::new("system", "Be brief."),
                ChatMessage::new("user", "hi"),
            ],
            &request(ToolChoice::Auto, true),
        )
    }

    #[test]
    fn the_tools_join_the_system_message() {
        let plan = plan_auto();
        assert_eq!(plan.messages.len(), 2);
        assert!(plan.messages[0]
            .content
            .starts_with("Be brief.\n\nRespond in JSON format"));
        assert!(plan.messages[0].content.contains("\"get_weather\""));
    }

    #[test]
    fn calls_and_results_in_the_history_become_json_text() {
        let mut assistant = ChatMessage::new("assistant", "");
        assistant.tool_calls = vec![ToolCall {
            id: "call_1".into(),
            name: "get_weather".into(),
            arguments: r#"{"city":"Paris"}"#.into(),
        }];
        let mut result = ChatMessage::new("tool", "18 C");
        result.tool_call_id = Some("call_1".into());
        let rewritten = rewrite_history(vec![
            ChatMessage::new("user", "weather?"),
            assistant,
            result.clone(),
            result,
        ]);
        assert_eq!(rewritten.len(), 3);
        assert_eq!(
            rewritten[1].content,
            r#"{"tool_calls":[{"name":"get_weather","arguments":{"city":"Paris"},"id":"call_1"}]}"#
        );
        assert_eq!(rewritten[2].role, "user");
        assert!(rewritten[2].content.contains("\"tool_responses\""));
        assert_eq!(rewritten[2].content.matches("18 C").count(), 2);
    }

    #[test]
    fn answers_are_read_back() {
        match parse(r#" {"tool_call": {"name": "get_weather", "arguments": {"city": "Oslo"}}}"#)
            .as_slice()
        {
            [Output::Call(call)] => assert_eq!(call.arguments, r#"{"city":"Oslo"}"#),
            other => panic!("not one call: {other:?}"),
        }
        assert_eq!(
            parse(r#"{"tool_calls": [{"name": "a", "arguments": {}}, {"name": "b", "arguments": {}}]}"#).len(),
            2
        );
        assert_eq!(
            parse(r#"{"response": "Hello"}"#),
            vec![Output::Content("Hello".into())]
        );
        // Cut short: the answer so far, or the text as it is.
        assert_eq!(
            parse("{\n  \"response\": \"The weather is \\\"fine\\"),
            vec![Output::Content("The weather is \"fine".into())]
        );
        assert_eq!(
            parse(r#"{"tool_call": {"name": "get_"#),
            vec![Output::Content(r#"{"tool_call": {"name": "get_"#.into())]
        );
    }
}
