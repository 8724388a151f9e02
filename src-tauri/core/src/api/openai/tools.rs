//! OpenAI's `tools`, `tool_choice`, `parallel_tool_calls` and `response_format`, checked and
//! translated into the engine's [`ToolRequest`].

use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::error::ApiError;
use crate::engine::tools::{check_schema, ToolChoice, ToolRequest, ToolSpec};

/// OpenAI's own limit.
const MAX_TOOLS: usize = 128;

/// The chat request's fields for tools and structured output, as sent.
#[derive(Debug, Default, Deserialize)]
pub struct ToolFields {
    pub tools: Option<Vec<Value>>,
    pub tool_choice: Option<Value>,
    pub parallel_tool_calls: Option<bool>,
    pub response_format: Option<Value>,
}

impl ToolFields {
    pub fn check(&self) -> Result<ToolRequest, ApiError> {
        let tools = match &self.tools {
            None => Vec::new(),
            Some(list) => tools(list)?,
        };
        let choice = match &self.tool_choice {
            None | Some(Value::Null) => ToolChoice::Auto,
            Some(value) => tool_choice(value, &tools)?,
        };
        Ok(ToolRequest {
            tools,
            choice,
            parallel: self.parallel_tool_calls.unwrap_or(true),
            response_schema: match &self.response_format {
                None | Some(Value::Null) => None,
                Some(value) => response_format(value)?,
            },
        })
    }
}

fn invalid_tools(message: String) -> ApiError {
    ApiError::bad_request("invalid_tools", message)
}

fn tools(list: &[Value]) -> Result<Vec<ToolSpec>, ApiError> {
    if list.len() > MAX_TOOLS {
        return Err(invalid_tools(format!(
            "at most {MAX_TOOLS} tools are allowed, got {}",
            list.len()
        )));
    }
    let mut specs: Vec<ToolSpec> = Vec::with_capacity(list.len());
    for (i, tool) in list.iter().enumerate() {
        let spec = tool_spec(i, tool)?;
        if specs.iter().any(|s| s.name == spec.name) {
            return Err(invalid_tools(format!(
                "tools[{i}]: the function name '{}' is used twice",
                spec.name
            )));
        }
        specs.push(spec);
    }
    Ok(specs)
}

fn tool_spec(i: usize, tool: &Value) -> Result<ToolSpec, ApiError> {
    let kind = tool.get("type").and_then(Value::as_str);
    if kind != Some("function") {
        return Err(invalid_tools(format!(
            "tools[{i}].type must be \"function\", got {}",
            tool.get("type").unwrap_or(&Value::Null)
        )));
    }
    let Some(function) = tool.get("function").filter(|f| f.is_object()) else {
        return Err(invalid_tools(format!(
            "tools[{i}].function must be an object"
        )));
    };
    let name = function.get("name").and_then(Value::as_str).unwrap_or("");
    if !valid_name(name) {
        return Err(invalid_tools(format!(
            "tools[{i}].function.name must be 1 to 64 letters, digits, '_' or '-', got {}",
            function.get("name").unwrap_or(&Value::Null)
        )));
    }
    let description = match function.get("description") {
        None | Some(Value::Null) => None,
        Some(Value::String(d)) => Some(d.clone()),
        Some(other) => {
            return Err(invalid_tools(format!(
                "tools[{i}].function.description must be a string, got {other}"
            )))
        }
    };
    let parameters = match function.get("parameters") {
        // OpenAI: a function without parameters takes none.
        None | Some(Value::Null) => json!({ "type": "object", "properties": {} }),
        Some(schema) => {
            check_schema(schema)
                .map_err(|why| invalid_tools(format!("tools[{i}].function.parameters: {why}")))?;
            schema.clone()
        }
    };
    Ok(ToolSpec {
        name: name.to_string(),
        description,
        parameters,
    })
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn tool_choice(value: &Value, tools: &[ToolSpec]) -> Result<ToolChoice, ApiError> {
    let invalid = |message: String| ApiError::bad_request("invalid_tool_choice", message);
    let choice = match value {
        Value::String(s) => match s.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            other => {
                return Err(invalid(format!(
                    "'tool_choice' must be \"auto\", \"none\", \"required\" or a function, got \"{other}\""
                )))
            }
        },
        Value::Object(_) => {
            let name = value
                .pointer("/function/name")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    invalid(
                        "'tool_choice' as an object must be {\"type\": \"function\", \"function\": {\"name\": …}}"
                            .into(),
                    )
                })?;
            if !tools.iter().any(|t| t.name == name) {
                return Err(invalid(format!(
                    "'tool_choice' names the function '{name}', which is not in 'tools'"
                )));
            }
            ToolChoice::Named(name.to_string())
        }
        other => return Err(invalid(format!("'tool_choice' cannot be {other}"))),
    };
    if tools.is_empty() && matches!(choice, ToolChoice::Required) {
        return Err(invalid(
            "'tool_choice' is \"required\" but the request has no 'tools'".into(),
        ));
    }
    Ok(choice)
}

/// The answer's schema: `None` for plain text.
fn response_format(value: &Value) -> Result<Option<Value>, ApiError> {
    let invalid = |message: String| ApiError::bad_request("invalid_response_format", message);
    match value.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!({ "type": "object" }))),
        Some("json_schema") => {
            // OpenAI nests it in `json_schema.schema`; llama-server also takes `schema` beside
            // `type`.
            let schema = value
                .pointer("/json_schema/schema")
                .or_else(|| value.get("schema"))
                .ok_or_else(|| invalid("'response_format.json_schema.schema' is missing".into()))?;
            check_schema(schema)
                .map_err(|why| invalid(format!("'response_format.json_schema.schema': {why}")))?;
            Ok(Some(schema.clone()))
        }
        _ => Err(invalid(format!(
            "'response_format.type' must be \"text\", \"json_object\" or \"json_schema\", got {}",
            value.get("type").unwrap_or(&Value::Null)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(value: Value) -> Result<ToolRequest, ApiError> {
        serde_json::from_value::<ToolFields>(value)
            .expect("deserializes")
            .check()
    }

    fn weather() -> Value {
        json!({"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}})
    }

    #[test]
    fn a_tool_and_a_named_choice_are_read() {
        let request = fields(json!({
            "tools": [weather()],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            "parallel_tool_calls": false,
        }))
        .expect("valid");
        assert_eq!(request.choice, ToolChoice::Named("get_weather".into()));
        assert!(!request.parallel);
        assert_eq!(
            request.tools[0].parameters["properties"]["city"]["type"],
            "string"
        );
    }

    #[test]
    fn bad_tools_are_refused_naming_the_problem() {
        let cases = [
            (
                json!({"tools": [{"type": "retrieval"}]}),
                "invalid_tools",
                "tools[0].type",
            ),
            (
                json!({"tools": [{"type": "function", "function": {"name": "a b"}}]}),
                "invalid_tools",
                "tools[0].function.name",
            ),
            (
                json!({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "frobnicate"}}}]}),
                "invalid_tools",
                "not a valid JSON Schema",
            ),
            (
                json!({"tools": [{"type": "function", "function": {"name": "f", "parameters": [1]}}]}),
                "invalid_tools",
                "is an object",
            ),
            (
                json!({"tools": [weather(), weather()]}),
                "invalid_tools",
                "used twice",
            ),
            (
                json!({"tools": [weather()], "tool_choice": {"type": "function", "function": {"name": "nope"}}}),
                "invalid_tool_choice",
                "'nope'",
            ),
            (
                json!({"tools": [weather()], "tool_choice": "sometimes"}),
                "invalid_tool_choice",
                "sometimes",
            ),
            (
                json!({"tool_choice": "required"}),
                "invalid_tool_choice",
                "no 'tools'",
            ),
            (
                json!({"response_format": {"type": "xml"}}),
                "invalid_response_format",
                "xml",
            ),
            (
                json!({"response_format": {"type": "json_schema"}}),
                "invalid_response_format",
                "missing",
            ),
            (
                json!({"response_format": {"type": "json_schema", "json_schema": {"schema": {"properties": 3}}}}),
                "invalid_response_format",
                "not a valid JSON Schema",
            ),
        ];
        for (body, code, needle) in cases {
            let err = fields(body.clone()).expect_err("refused");
            let json = err.to_json();
            assert_eq!(json["error"]["code"], code, "{body}");
            let message = json["error"]["message"].as_str().unwrap_or_default();
            assert!(message.contains(needle), "{message:?} lacks {needle:?}");
        }
    }

    #[test]
    fn response_formats_become_schemas() {
        let object = fields(json!({"response_format": {"type": "json_object"}})).expect("valid");
        assert_eq!(object.response_schema, Some(json!({"type": "object"})));
        let text = fields(json!({"response_format": {"type": "text"}})).expect("valid");
        assert_eq!(text.response_schema, None);
        let schema = json!({"type": "object", "properties": {"n": {"type": "integer"}}});
        let named = fields(json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": true}}})).expect("valid");
        assert_eq!(named.response_schema, Some(schema));
    }
}
