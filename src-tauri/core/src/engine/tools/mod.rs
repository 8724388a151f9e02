//! Tool calls and structured output, whatever the model family.
//!
//! A model is asked for tool calls in the format it was trained on, read off its chat template
//! as llama.cpp's `common/chat` does ([`ToolFormat::detect`]); a model whose template knows no
//! tools gets llama.cpp's "generic" format: the tools described in a system message and the
//! answer constrained to JSON. Either way a [`Constraint`] (a JSON Schema the engine turns into
//! a grammar) makes even a small model write a call that parses when the request requires one,
//! and a [`reader::OutputReader`] turns the text back into content and calls.
//!
//! This module speaks no API dialect: OpenAI's, Anthropic's and Ollama's translators all build
//! a [`ToolRequest`] and read [`reader::Output`]s.

pub mod constraint;
mod functiongemma;
mod generic;
mod hermes;
mod llama3;
mod mistral;
pub mod reader;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use serde_json::{json, Value};

pub use constraint::Constraint;

use super::template::ChatMessage;

/// A function the model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    pub name: String,
    pub description: Option<String>,
    /// The arguments' JSON Schema.
    pub parameters: Value,
}

impl ToolSpec {
    /// The tool as Hugging Face templates and OpenAI write it.
    pub fn to_json(&self) -> Value {
        // OpenAI's key order, which templates print as they find it.
        let mut function = serde_json::Map::new();
        function.insert("name".into(), json!(self.name));
        if let Some(description) = &self.description {
            function.insert("description".into(), json!(description));
        }
        function.insert("parameters".into(), self.parameters.clone());
        json!({ "type": "function", "function": function })
    }
}

/// Whether and which tool the model must call.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ToolChoice {
    /// The model decides (OpenAI's default when tools are given).
    #[default]
    Auto,
    /// No call: the tools stay out of the prompt.
    None,
    /// At least one call, of any tool.
    Required,
    /// A call of this function.
    Named(String),
}

/// A call the model made, or one an earlier assistant turn made (in the history).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// The arguments as JSON text, as OpenAI passes them.
    pub arguments: String,
}

impl ToolCall {
    /// A call with a fresh id, OpenAI's `call_` followed by 24 characters.
    pub fn new(name: String, arguments: &Value) -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        Self {
            id: format!("call_{}", &id[..24]),
            name,
            arguments: arguments.to_string(),
        }
    }

    /// The arguments as a JSON value (templates print them with `tojson`); text that is not
    /// JSON stays a string.
    pub fn arguments_value(&self) -> Value {
        serde_json::from_str(&self.arguments).unwrap_or_else(|_| json!(self.arguments))
    }
}

/// Templates read Hugging Face's shape: `{"id", "type", "function": {"name", "arguments"}}`,
/// the arguments an object.
impl Serialize for ToolCall {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(3))?;
        map.serialize_entry("id", &self.id)?;
        map.serialize_entry("type", "function")?;
        map.serialize_entry(
            "function",
            &json!({ "name": self.name, "arguments": self.arguments_value() }),
        )?;
        map.end()
    }
}

/// How a model writes tool calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolFormat {
    /// No tools in the template: described in a system message, answered in constrained JSON.
    Generic,
    /// Hermes, Qwen 2.5/3 and many fine-tunes: `<tool_call>{"name", "arguments"}</tool_call>`.
    Hermes,
    /// Mistral: `[TOOL_CALLS][{"name", "arguments"}, …]`.
    Mistral,
    /// Llama 3.1+: a bare `{"name", "parameters"}` object.
    Llama3,
    /// FunctionGemma: `<start_function_call>call:NAME{key:<escape>v<escape>}<end_function_call>`.
    FunctionGemma,
}

impl ToolFormat {
    /// The format a chat template was written for, by the markers it prints; `None` (no
    /// template, or llama.cpp's built-in one) is generic.
    pub fn detect(template: Option<&str>) -> Self {
        let Some(source) = template else {
            return Self::Generic;
        };
        if !source.contains("tools") && !source.contains("tool_calls") {
            return Self::Generic;
        }
        if source.contains(functiongemma::OPEN) {
            Self::FunctionGemma
        } else if source.contains("<tool_call>") {
            Self::Hermes
        } else if source.contains("[TOOL_CALLS]") {
            Self::Mistral
        } else if source.contains("<|python_tag|>") || source.contains("ipython") {
            Self::Llama3
        } else {
            Self::Generic
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Generic => "generic",
            Self::Hermes => "hermes",
            Self::Mistral => "mistral",
            Self::Llama3 => "llama3",
            Self::FunctionGemma => "functiongemma",
        }
    }
}

/// What a request asks of the model beyond plain text.
#[derive(Debug, Clone, Default)]
pub struct ToolRequest {
    pub tools: Vec<ToolSpec>,
    pub choice: ToolChoice,
    /// More than one call in a turn (OpenAI's `parallel_tool_calls`, default true).
    pub parallel: bool,
    /// The answer's JSON Schema (`response_format`), if the request gives one.
    pub response_schema: Option<Value>,
}

impl ToolRequest {
    /// Whether the model is offered tools at all.
    pub fn offers_tools(&self) -> bool {
        !self.tools.is_empty() && self.choice != ToolChoice::None
    }
}

/// How one request is put to a model: the messages to render, the tools for the template, the
/// constraint on the output and how to read the output back.
#[derive(Debug)]
pub struct ToolPlan {
    pub messages: Vec<ChatMessage>,
    /// Tools for the template's `tools` variable (native formats only).
    pub template_tools: Option<Vec<Value>>,
    pub constraint: Option<Constraint>,
    pub reader: reader::OutputReader,
}

/// Plans `request` for a model whose template writes `format`.
///
/// Tools and a response schema together always use the generic format, whose one JSON answer
/// holds either; the native formats have no place for a schema'd answer beside their calls.
pub fn plan(format: ToolFormat, messages: Vec<ChatMessage>, request: &ToolRequest) -> ToolPlan {
    if !request.offers_tools() {
        let constraint = request.response_schema.clone().map(Constraint::json);
        // Earlier turns may still hold calls and results; a template without tools may not
        // render them, so they become plain text as in the generic format.
        let messages = match format {
            ToolFormat::Generic => generic::rewrite_history(messages),
            _ => messages,
        };
        return ToolPlan {
            messages,
            template_tools: None,
            constraint,
            reader: reader::OutputReader::plain(),
        };
    }
    let format = if request.response_schema.is_some() {
        ToolFormat::Generic
    } else {
        format
    };
    match format {
        ToolFormat::Generic => generic::plan(messages, request),
        ToolFormat::Hermes => native(messages, request, Some(hermes::constraint(request)), format),
        ToolFormat::Mistral => native(
            messages,
            request,
            Some(mistral::constraint(request)),
            format,
        ),
        ToolFormat::Llama3 => native(messages, request, Some(llama3::constraint(request)), format),
        ToolFormat::FunctionGemma => native(messages, request, None, format),
    }
}

fn native(
    messages: Vec<ChatMessage>,
    request: &ToolRequest,
    constraint: Option<Constraint>,
    format: ToolFormat,
) -> ToolPlan {
    ToolPlan {
        messages,
        template_tools: Some(offered(request).iter().map(|t| t.to_json()).collect()),
        constraint,
        reader: reader::OutputReader::native(format),
    }
}

/// The tools the model may call: all, or only the one `tool_choice` names.
fn offered(request: &ToolRequest) -> Vec<&ToolSpec> {
    match &request.choice {
        ToolChoice::Named(name) => request.tools.iter().filter(|t| &t.name == name).collect(),
        _ => request.tools.iter().collect(),
    }
}

/// The JSON Schema of one call written as `{"name": …, <arguments_key>: …}`: one branch per
/// tool, each fixing the name and holding that tool's argument schema.
fn call_schema(request: &ToolRequest, arguments_key: &str) -> Value {
    let branches: Vec<Value> = offered(request)
        .into_iter()
        .map(|tool| {
            json!({
                "type": "object",
                "properties": {
                    "name": { "const": tool.name },
                    arguments_key: tool.parameters,
                },
                "required": ["name", arguments_key],
                "additionalProperties": false,
            })
        })
        .collect();
    match <[Value; 1]>::try_from(branches) {
        Ok([one]) => one,
        Err(many) => json!({ "anyOf": many }),
    }
}

/// A JSON Schema, checked against its meta-schema. Only objects and booleans are schemas.
pub fn check_schema(schema: &Value) -> Result<(), String> {
    if !schema.is_object() && !schema.is_boolean() {
        return Err(format!("a JSON Schema is an object, got {schema}"));
    }
    jsonschema::meta::validate(schema).map_err(|e| {
        let at = e.instance_path().to_string();
        if at.is_empty() {
            format!("not a valid JSON Schema: {e}")
        } else {
            format!("not a valid JSON Schema at {at}: {e}")
        }
    })
}

/// Reads a `{"name", "arguments" | "parameters"}` object into a call.
fn call_from_json(value: &Value) -> Option<ToolCall> {
    let name = value.get("name")?.as_str()?;
    let arguments = value
        .get("arguments")
        .or_else(|| value.get("parameters"))
        .cloned()
        .unwrap_or_else(|| json!({}));
    // Some models write the arguments as a JSON string.
    let arguments = match arguments {
        Value::String(text) => serde_json::from_str(&text).unwrap_or(Value::String(text)),
        other => other,
    };
    let mut call = ToolCall::new(name.to_string(), &arguments);
    if let Some(id) = value.get("id").and_then(Value::as_str) {
        call.id = id.to_string();
    }
    Some(call)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weather() -> ToolSpec {
        ToolSpec {
            name: "get_weather".into(),
            description: Some("The weather in a city".into()),
            parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
        }
    }

    #[test]
    fn formats_are_read_off_the_template() {
        assert_eq!(ToolFormat::detect(None), ToolFormat::Generic);
        assert_eq!(
            ToolFormat::detect(Some("{% for m in messages %}{{ m.content }}{% endfor %}")),
            ToolFormat::Generic
        );
        assert_eq!(
            ToolFormat::detect(Some(
                "{% if tools %}<tools>{{ tools | tojson }}</tools> <tool_call>{% endif %}"
            )),
            ToolFormat::Hermes
        );
        assert_eq!(
            ToolFormat::detect(Some("{% if tools %}[AVAILABLE_TOOLS]{% endif %}{% if m.tool_calls %}[TOOL_CALLS]{% endif %}")),
            ToolFormat::Mistral
        );
        assert_eq!(
            ToolFormat::detect(Some(
                "{% if tools %}Environment: ipython{% endif %}<|python_tag|>"
            )),
            ToolFormat::Llama3
        );
    }

    /// A template written as Qwen 2.5's is (Hermes calls): the tools in the system message,
    /// earlier calls and results rendered in its own markup.
    const HERMES: &str = include_str!("fixtures/hermes.jinja");

    #[test]
    fn a_hermes_template_is_planned_natively_and_renders_tools_calls_and_results() {
        use crate::engine::template::ChatTemplate;
        assert_eq!(ToolFormat::detect(Some(HERMES)), ToolFormat::Hermes);
        let mut assistant = ChatMessage::new("assistant", "");
        assistant.tool_calls = vec![ToolCall {
            id: "call_1".into(),
            name: "get_weather".into(),
            arguments: r#"{"city": "Paris"}"#.into(),
        }];
        let mut result = ChatMessage::new("tool", "18 C");
        result.tool_call_id = Some("call_1".into());
        let request = ToolRequest {
            tools: vec![weather()],
            choice: ToolChoice::Auto,
            parallel: true,
            response_schema: None,
        };
        let plan = plan(
            ToolFormat::Hermes,
            vec![
                ChatMessage::new("user", "Weather in Paris?"),
                assistant,
                result,
            ],
            &request,
        );
        let constraint = plan.constraint.expect("constrained");
        assert_eq!(constraint.trigger.as_deref(), Some("<tool_call>"));
        assert!(constraint.repeat);
        let template = ChatTemplate::new(HERMES, "", "<|im_end|>").expect("compiles");
        let prompt = template
            .render(&plan.messages, plan.template_tools.as_deref())
            .expect("renders");
        assert!(prompt.contains(r#"<tools>
{"type": "function", "function": {"name": "get_weather", "description": "The weather in a city", "parameters": "#), "{prompt}");
        assert!(prompt.contains("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call><|im_end|>"), "{prompt}");
        assert!(
            prompt.contains("<|im_start|>user\n<tool_response>\n18 C\n</tool_response><|im_end|>"),
            "{prompt}"
        );
        assert!(prompt.ends_with("<|im_start|>assistant\n"));
    }

    #[test]
    fn a_call_renders_for_templates_with_its_arguments_as_an_object() {
        let call = ToolCall {
            id: "call_1".into(),
            name: "get_weather".into(),
            arguments: r#"{"city":"Paris"}"#.into(),
        };
        assert_eq!(
            serde_json::to_value(&call).expect("serializes"),
            json!({"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}})
        );
    }

    #[test]
    fn one_tool_gives_one_branch_and_a_named_choice_only_that_tool() {
        let mut request = ToolRequest {
            tools: vec![weather()],
            choice: ToolChoice::Required,
            parallel: false,
            response_schema: None,
        };
        let schema = call_schema(&request, "arguments");
        assert_eq!(schema["properties"]["name"]["const"], "get_weather");
        request.tools.push(ToolSpec {
            name: "get_time".into(),
            description: None,
            parameters: json!({"type": "object"}),
        });
        assert_eq!(
            call_schema(&request, "arguments")["anyOf"]
                .as_array()
                .map(Vec::len),
            Some(2)
        );
        request.choice = ToolChoice::Named("get_time".into());
        assert_eq!(
            call_schema(&request, "arguments")["properties"]["name"]["const"],
            "get_time"
        );
    }

    #[test]
    fn calls_are_read_with_arguments_or_parameters_even_as_a_string() {
        let call = call_from_json(&json!({"name": "f", "parameters": {"x": 1}})).expect("a call");
        assert_eq!(
            (call.name.as_str(), call.arguments.as_str()),
            ("f", r#"{"x":1}"#)
        );
        let call =
            call_from_json(&json!({"name": "f", "arguments": "{\"x\": 2}"})).expect("a call");
        assert_eq!(call.arguments, r#"{"x":2}"#);
        assert!(call.id.starts_with("call_") && call.id.len() == 29);
        assert!(call_from_json(&json!({"arguments": {}})).is_none());
    }
}
