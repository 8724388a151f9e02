//! From chat messages to prompt tokens.

use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::token::LlamaToken;

use headroom_core::engine::template::ChatTemplate;
use headroom_core::engine::{ChatMessage, EngineError};

/// How a model's chat prompts are written.
pub(super) enum PromptFormat {
    /// The GGUF's own Jinja template.
    Jinja(Box<ChatTemplate>),
    /// No template in the file: one of llama.cpp's built-in formats, by name.
    Builtin(&'static str),
}

impl PromptFormat {
    pub(super) fn from_model(model: &LlamaModel) -> Result<Self, EngineError> {
        match model.meta_val_str("tokenizer.chat_template") {
            Ok(source) => {
                let vocab = model.vocab();
                let text = |token| {
                    String::from_utf8_lossy(&vocab.token_to_piece(token, true, None)).into_owned()
                };
                let template = ChatTemplate::new(&source, &text(vocab.bos()), &text(vocab.eos()))
                    .map_err(EngineError::Template)?;
                Ok(Self::Jinja(Box::new(template)))
            }
            Err(_) => {
                let arch = model
                    .meta_val_str("general.architecture")
                    .unwrap_or_default();
                let name = builtin_for_architecture(&arch);
                tracing::info!(
                    architecture = %arch,
                    format = name,
                    "the model file has no chat template; using llama.cpp's built-in one"
                );
                Ok(Self::Builtin(name))
            }
        }
    }

    pub(super) fn render(
        &self,
        model: &LlamaModel,
        messages: &[ChatMessage],
        tools: Option<&[serde_json::Value]>,
    ) -> Result<String, EngineError> {
        match self {
            Self::Jinja(template) => template
                .render(messages, tools)
                .map_err(EngineError::Template),
            // llama.cpp's built-in formats know no tools; such a model's tool format is generic,
            // which puts them in the messages.
            Self::Builtin(name) => {
                let template = LlamaChatTemplate::new(name)
                    .map_err(|e| EngineError::Template(e.to_string()))?;
                let chat = messages
                    .iter()
                    .map(|m| LlamaChatMessage::new(m.role.clone(), m.content.clone()))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| {
                        EngineError::Template("message content contains a NUL character".into())
                    })?;
                model
                    .apply_chat_template(&template, &chat, true)
                    .map_err(|e| EngineError::Template(e.to_string()))
            }
        }
    }
}

/// llama.cpp's built-in format for a model family, used only when the file has no template.
fn builtin_for_architecture(arch: &str) -> &'static str {
    if arch.starts_with("gemma") {
        "gemma"
    } else if arch.starts_with("phi3") {
        "phi3"
    } else if arch.starts_with("mistral") {
        "mistral-v7"
    } else {
        "chatml"
    }
}

/// Tokenizes a rendered prompt. Special tokens in the text (`<|im_start|>`) are parsed as such.
/// The BOS token is added when the model wants one and the template did not already write it.
pub(super) fn tokenize(model: &LlamaModel, prompt: &str) -> Vec<LlamaToken> {
    let vocab = model.vocab();
    let bos_text = vocab.token_to_piece(vocab.bos(), true, None);
    let template_wrote_bos = !bos_text.is_empty() && prompt.as_bytes().starts_with(&bos_text);
    vocab.tokenize(prompt.as_bytes(), !template_wrote_bos, true)
}
