//! `/api/chat` and `/api/generate`: NDJSON lines as they come (Ollama's default), or one object
//! with `"stream": false`.

use std::convert::Infallible;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{decode, format_schema, model_id, settings, timestamp, OllamaError};
use crate::api::error::ApiError;
use crate::api::generation::{self, Generating, Prepared, Settings, Step, Whole};
use crate::api::openai::tools::ToolFields;
use crate::api::AppState;
use crate::engine::reasoning::ReasoningSplitter;
use crate::engine::tools::{ToolCall, ToolRequest};
use crate::engine::{ChatMessage, FinishReason, Usage};
use crate::vocab::Dialect;

#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    pub model: String,
    #[serde(default)]
    pub messages: Vec<Value>,
    #[serde(default)]
    pub tools: Option<Vec<Value>>,
    pub format: Option<Value>,
    pub options: Option<Value>,
    pub stream: Option<bool>,
    pub keep_alive: Option<Value>,
    pub think: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub struct GenerateRequest {
    pub model: String,
    #[serde(default)]
    pub prompt: String,
    pub system: Option<String>,
    #[serde(default)]
    pub raw: bool,
    pub format: Option<Value>,
    pub options: Option<Value>,
    pub stream: Option<bool>,
    pub keep_alive: Option<Value>,
    pub think: Option<bool>,
    pub images: Option<Vec<Value>>,
}

pub async fn chat(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OllamaError> {
    let request: ChatRequest = decode(body)?;
    let started = Instant::now();
    let id = model_id(&state, &request.model)?;
    let settings = settings(request.options.as_ref(), request.keep_alive.as_ref())?;
    if request.messages.is_empty() {
        // Ollama: no messages loads (or, with keep_alive 0, unloads) the model.
        return Ok(load_or_unload(&state, &request.model, &id, settings, Kind::Chat).await?);
    }
    let messages = messages(&request.messages)?;
    let mut tool_request: ToolRequest = ToolFields {
        tools: request.tools.clone(),
        ..ToolFields::default()
    }
    .check()?;
    tool_request.response_schema = format_schema(request.format.as_ref())?;
    let split = request.think != Some(false);
    let answer = generation::start(
        &state,
        Dialect::OllamaChat,
        &id,
        |model| generation::chat_prompt(model, messages, &tool_request, split),
        settings,
    )
    .await?;
    Ok(respond(
        answer,
        request.model,
        Kind::Chat,
        request.stream != Some(false),
        started,
    )
    .await)
}

pub async fn generate(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OllamaError> {
    let request: GenerateRequest = decode(body)?;
    let started = Instant::now();
    let id = model_id(&state, &request.model)?;
    if request.images.as_ref().is_some_and(|i| !i.is_empty()) {
        return Err(ApiError::bad_request("invalid_prompt", "images are not supported").into());
    }
    let settings = settings(request.options.as_ref(), request.keep_alive.as_ref())?;
    if request.prompt.is_empty() {
        return Ok(load_or_unload(&state, &request.model, &id, settings, Kind::Generate).await?);
    }
    let schema = format_schema(request.format.as_ref())?;
    let split = request.think != Some(false);
    let (prompt_text, system, raw) = (request.prompt, request.system, request.raw);
    let answer = generation::start(
        &state,
        Dialect::OllamaGenerate,
        &id,
        |model| {
            let constraint = schema.map(crate::engine::Constraint::json);
            if raw {
                return Ok(Prepared::text(prompt_text, constraint));
            }
            let mut messages = Vec::new();
            if let Some(system) = system {
                messages.push(ChatMessage::new("system", &system));
            }
            messages.push(ChatMessage::new("user", &prompt_text));
            let prompt = model.render_chat(&messages, None)?;
            let mut prepared = Prepared::text(prompt, constraint);
            prepared.reasoning = ReasoningSplitter::new(&prepared.prompt, split);
            Ok(prepared)
        },
        settings,
    )
    .await?;
    Ok(respond(
        answer,
        request.model,
        Kind::Generate,
        request.stream != Some(false),
        started,
    )
    .await)
}

/// Chat messages as Ollama writes them: `role`, `content`, an assistant's `tool_calls`
/// (`{"function": {"name", "arguments": {…}}}`), a tool result's `tool_name`.
fn messages(input: &[Value]) -> Result<Vec<ChatMessage>, ApiError> {
    input
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let invalid = |why: String| {
                ApiError::bad_request("invalid_messages", format!("messages[{i}]: {why}"))
            };
            let role = m.get("role").and_then(Value::as_str).unwrap_or_default();
            if !["system", "user", "assistant", "tool"].contains(&role) {
                return Err(invalid(format!(
                    "role must be system, user, assistant or tool, got '{role}'"
                )));
            }
            if m.get("images")
                .and_then(Value::as_array)
                .is_some_and(|i| !i.is_empty())
            {
                return Err(invalid("images are not supported".into()));
            }
            let content = m.get("content").and_then(Value::as_str).unwrap_or_default();
            let mut message = ChatMessage::new(role, content);
            if let Some(calls) = m.get("tool_calls").and_then(Value::as_array) {
                for call in calls {
                    let function = call.get("function").unwrap_or(&Value::Null);
                    let name = function
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    let arguments = function
                        .get("arguments")
                        .cloned()
                        .unwrap_or_else(|| json!({}));
                    message
                        .tool_calls
                        .push(ToolCall::new(name.to_string(), &arguments));
                }
            }
            message.name = m
                .get("tool_name")
                .and_then(Value::as_str)
                .map(str::to_string);
            Ok(message)
        })
        .collect()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Chat,
    Generate,
}

/// An empty request: load the model, or with `keep_alive: 0` unload it (Ollama's way).
async fn load_or_unload(
    state: &AppState,
    name: &str,
    id: &str,
    settings: Settings,
    kind: Kind,
) -> Result<Response, ApiError> {
    let unload = settings.keep_alive.is_some_and(|k| k.as_secs() == Some(0));
    let reason = if unload {
        match state.pool.unload(id).await {
            Ok(_) | Err(crate::pool::PoolError::NotLoaded(_)) => "unload",
            Err(e) => return Err(e.into()),
        }
    } else {
        let file = state.catalog.find(id)?;
        drop(state.pool.acquire(file, settings.keep_alive).await?);
        "load"
    };
    let mut line = json!({ "model": name, "created_at": timestamp(crate::vocab::now_unix_ms()), "done": true, "done_reason": reason });
    match kind {
        Kind::Chat => line["message"] = json!({ "role": "assistant", "content": "" }),
        Kind::Generate => line["response"] = json!(""),
    }
    Ok(Json(line).into_response())
}

/// One NDJSON line (or the whole answer) in Ollama's shape.
fn line_json(said: &Whole, name: &str, kind: Kind) -> Value {
    let (thought, content, calls) = (&said.thought, &said.content, &said.calls);
    let mut line = json!({ "model": name, "created_at": timestamp(crate::vocab::now_unix_ms()) });
    match kind {
        Kind::Chat => {
            let mut message = json!({ "role": "assistant", "content": content });
            if !thought.is_empty() {
                message["thinking"] = json!(thought);
            }
            if !calls.is_empty() {
                let calls: Vec<Value> = calls
                    .iter()
                    .map(|c| json!({ "function": { "name": c.name, "arguments": c.arguments_value() } }))
                    .collect();
                message["tool_calls"] = json!(calls);
            }
            line["message"] = message;
        }
        Kind::Generate => {
            line["response"] = json!(content);
            if !thought.is_empty() {
                line["thinking"] = json!(thought);
            }
        }
    }
    line["done"] = json!(false);
    line
}

/// The last line's fields: why it ended and Ollama's counters (durations in nanoseconds).
fn finish(line: &mut Value, reason: FinishReason, usage: &Usage, started: Instant) {
    let total = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
    line["done"] = json!(true);
    line["done_reason"] = json!(match reason {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
    });
    line["total_duration"] = json!(total);
    // Ollama counts the prompt tokens it evaluated: a prefix reused from the cache is not.
    line["prompt_eval_count"] = json!(usage.prompt_tokens.saturating_sub(usage.cached_tokens));
    line["eval_count"] = json!(usage.completion_tokens);
}

async fn respond(
    mut answer: Generating,
    name: String,
    kind: Kind,
    stream: bool,
    started: Instant,
) -> Response {
    if !stream {
        return match answer.collect().await {
            Ok((whole, finish_reason, usage)) => {
                let mut json = line_json(&whole, &name, kind);
                finish(&mut json, finish_reason, &usage, started);
                Json(json).into_response()
            }
            Err(message) => {
                OllamaError(ApiError::server("generation_failed", message)).into_response()
            }
        };
    }
    let lines = futures::stream::unfold(Some(answer), move |answer| {
        let name = name.clone();
        async move {
            let mut answer = answer?;
            loop {
                let (line, more) = match answer.step().await {
                    Step::Read { thought, outputs } => {
                        if thought.is_empty() && outputs.is_empty() {
                            continue;
                        }
                        let mut said = Whole::default();
                        said.take(thought, outputs);
                        (line_json(&said, &name, kind), true)
                    }
                    Step::Logprob(_) => continue,
                    Step::Done {
                        thought,
                        outputs,
                        finish_reason,
                        usage,
                        ..
                    } => {
                        let mut last = Whole::default();
                        last.take(thought, outputs);
                        let mut line = line_json(&last, &name, kind);
                        finish(&mut line, finish_reason, &usage, started);
                        (line, false)
                    }
                    // Mid-stream, Ollama sends the error as a line of its own.
                    Step::Failed(message) => (json!({ "error": message }), false),
                };
                let bytes = Bytes::from(format!("{line}\n"));
                return Some((Ok::<_, Infallible>(bytes), more.then_some(answer)));
            }
        }
    });
    let mut response = Body::from_stream(lines).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/x-ndjson"),
    );
    response
}
