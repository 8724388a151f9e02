//! The API a request came in through. Every dialect runs the same generation; the record of
//! what the server did (the recent-generations list, the web UI's events) names the door.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Dialect {
    /// `POST /v1/chat/completions`
    #[serde(rename = "openai_chat")]
    OpenAiChat,
    /// `POST /v1/completions`
    #[serde(rename = "openai_completions")]
    OpenAiCompletions,
    /// `POST /v1/responses`
    #[serde(rename = "openai_responses")]
    OpenAiResponses,
    /// `POST /v1/messages`
    #[serde(rename = "anthropic_messages")]
    AnthropicMessages,
    /// `POST /api/chat`
    #[serde(rename = "ollama_chat")]
    OllamaChat,
    /// `POST /api/generate`
    #[serde(rename = "ollama_generate")]
    OllamaGenerate,
}
