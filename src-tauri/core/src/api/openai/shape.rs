//! The JSON of OpenAI's completion objects: whole responses, streamed chunks, tool calls,
//! log-probabilities and usage. Chat and text completions differ here only.

use serde_json::{json, Value};

use crate::api::generation::Whole;
use crate::engine::tools::ToolCall;
use crate::engine::{FinishReason, TokenLogprob, Usage};

/// Which OpenAI object the response is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Chat,
    Text,
}

impl Kind {
    pub(super) fn id_prefix(self) -> &'static str {
        match self {
            Kind::Chat => "chatcmpl",
            Kind::Text => "cmpl",
        }
    }

    pub(super) fn object(self, chunk: bool) -> &'static str {
        match (self, chunk) {
            (Kind::Chat, false) => "chat.completion",
            (Kind::Chat, true) => "chat.completion.chunk",
            (Kind::Text, _) => "text_completion",
        }
    }
}

/// `finish_reason`: a turn that made calls ends with `tool_calls`.
pub(super) fn finish_reason(reason: FinishReason, calls: usize) -> &'static str {
    match reason {
        _ if calls > 0 => "tool_calls",
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
    }
}

/// A whole response's one choice.
pub(super) fn whole_choice(
    kind: Kind,
    whole: Whole,
    asked_logprobs: bool,
    finish_reason: &str,
) -> Value {
    let logprobs = if asked_logprobs {
        logprobs_json(kind, &whole.logprobs, 0)
    } else {
        Value::Null
    };
    let Whole {
        thought: reasoning,
        content,
        calls,
        ..
    } = whole;
    match kind {
        Kind::Chat => {
            let mut message = json!({ "role": "assistant", "content": content });
            if !reasoning.is_empty() {
                // llama-server's and LM Studio's name for it.
                message["reasoning_content"] = json!(reasoning);
            }
            if !calls.is_empty() {
                // OpenAI: no content beside calls is null, not "".
                if content.is_empty() {
                    message["content"] = Value::Null;
                }
                message["tool_calls"] = calls.iter().map(call_json).collect();
            }
            json!({ "index": 0, "message": message, "logprobs": logprobs, "finish_reason": finish_reason })
        }
        Kind::Text => {
            json!({ "index": 0, "text": content, "logprobs": logprobs, "finish_reason": finish_reason })
        }
    }
}

fn call_json(call: &ToolCall) -> Value {
    json!({
        "id": call.id,
        "type": "function",
        "function": { "name": call.name, "arguments": call.arguments },
    })
}

/// What one streamed chunk carries.
pub(super) enum Delta<'a> {
    /// Chat's first chunk.
    Role,
    /// Thinking, as `reasoning_content`.
    Reasoning(&'a str),
    Content(&'a str),
    /// A call's first chunk: its index, id and name.
    CallStart {
        index: usize,
        call: &'a ToolCall,
    },
    /// A piece of a call's arguments.
    CallArguments {
        index: usize,
        arguments: &'a str,
    },
    /// Nothing: the chunk that carries `finish_reason`.
    Empty,
}

/// One streamed choice.
pub(super) fn chunk_choice(
    kind: Kind,
    delta: Delta<'_>,
    logprobs: Value,
    finish_reason: Option<&str>,
) -> Value {
    match kind {
        Kind::Chat => {
            let delta = match delta {
                Delta::Role => json!({ "role": "assistant", "content": "" }),
                Delta::Content(text) => json!({ "content": text }),
                Delta::Reasoning(text) => json!({ "reasoning_content": text }),
                Delta::CallStart { index, call } => json!({ "tool_calls": [{
                    "index": index,
                    "id": call.id,
                    "type": "function",
                    "function": { "name": call.name, "arguments": "" },
                }] }),
                Delta::CallArguments { index, arguments } => json!({ "tool_calls": [{
                    "index": index,
                    "function": { "arguments": arguments },
                }] }),
                Delta::Empty => json!({}),
            };
            json!({ "index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason })
        }
        Kind::Text => {
            let text = match delta {
                Delta::Content(text) => text,
                _ => "",
            };
            json!({ "index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish_reason })
        }
    }
}

/// Log-probabilities in each object's shape: chat's `content` list of tokens with bytes and
/// alternatives, text completions' parallel lists. `offset` is where the first token's text
/// begins in the completion (text completions' `text_offset`).
pub(super) fn logprobs_json(kind: Kind, tokens: &[TokenLogprob], offset: usize) -> Value {
    match kind {
        Kind::Chat => {
            let content: Vec<Value> = tokens
                .iter()
                .map(|t| {
                    let top: Vec<Value> = t
                        .top
                        .iter()
                        .map(|(alt, logprob)| {
                            json!({ "token": alt.text, "logprob": logprob, "bytes": alt.bytes })
                        })
                        .collect();
                    json!({ "token": t.token.text, "logprob": t.logprob, "bytes": t.token.bytes, "top_logprobs": top })
                })
                .collect();
            json!({ "content": content, "refusal": null })
        }
        Kind::Text => {
            let mut at = offset;
            let mut offsets = Vec::with_capacity(tokens.len());
            for t in tokens {
                offsets.push(at);
                at += t.token.text.len();
            }
            json!({
                "tokens": tokens.iter().map(|t| &t.token.text).collect::<Vec<_>>(),
                "token_logprobs": tokens.iter().map(|t| t.logprob).collect::<Vec<_>>(),
                "top_logprobs": tokens.iter().map(|t| {
                    t.top.iter().map(|(alt, lp)| (alt.text.clone(), json!(lp))).collect::<serde_json::Map<_, _>>()
                }).collect::<Vec<_>>(),
                "text_offset": offsets,
            })
        }
    }
}

/// Usage as OpenAI writes it: `cached_tokens` are the prompt tokens reused from the KV cache
/// (part of `prompt_tokens`).
pub(super) fn usage_json(usage: &Usage) -> Value {
    json!({
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": { "cached_tokens": usage.cached_tokens },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::TokenText;

    fn token(text: &str, logprob: f32) -> TokenLogprob {
        TokenLogprob {
            token: TokenText::from_bytes(text.as_bytes().to_vec()),
            logprob,
            top: vec![(TokenText::from_bytes(b"x".to_vec()), -3.0)],
        }
    }

    #[test]
    fn a_turn_with_calls_has_null_content_and_finishes_with_tool_calls() {
        let call = ToolCall {
            id: "call_1".into(),
            name: "f".into(),
            arguments: "{}".into(),
        };
        let choice = whole_choice(
            Kind::Chat,
            Whole {
                calls: vec![call],
                ..Whole::default()
            },
            false,
            finish_reason(FinishReason::Stop, 1),
        );
        assert_eq!(choice["message"]["content"], Value::Null);
        assert_eq!(
            choice["message"]["tool_calls"][0]["function"]["arguments"],
            "{}"
        );
        assert_eq!(choice["finish_reason"], "tool_calls");
    }

    #[test]
    fn logprobs_take_each_objects_shape() {
        let tokens = [token("Hi", -0.5), token(" there", -1.0)];
        let chat = logprobs_json(Kind::Chat, &tokens, 0);
        assert_eq!(chat["content"][1]["token"], " there");
        assert_eq!(chat["content"][0]["bytes"], json!([72, 105]));
        assert_eq!(chat["content"][0]["top_logprobs"][0]["logprob"], -3.0);
        let text = logprobs_json(Kind::Text, &tokens, 4);
        assert_eq!(text["text_offset"], json!([4, 6]));
        assert_eq!(text["top_logprobs"][0]["x"], -3.0);
    }
}
