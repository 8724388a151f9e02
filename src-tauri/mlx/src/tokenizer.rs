//! Text to tokens and back, and the chat template, from a model folder's `tokenizer.json` and
//! `tokenizer_config.json` (Hugging Face's formats, which mlx-community's folders carry).

use std::path::Path;

use serde_json::Value;
use tokenizers::Tokenizer;

use headroom_core::engine::template::ChatTemplate;

/// What the folder says about its text.
pub struct TextFormat {
    pub tokenizer: Tokenizer,
    /// The folder's chat template, or ChatML when it has none.
    pub template: ChatTemplate,
    pub bos: Option<String>,
    /// Tokens that end the model's turn.
    pub eos_ids: Vec<u32>,
    /// Whether the tokenizer config asks for BOS before every prompt.
    pub add_bos: bool,
    /// The raw template source, to read the model's tool-call format from.
    pub template_source: Option<String>,
}

/// ChatML, for folders without a template (llama.cpp's fallback too).
pub const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

impl TextFormat {
    pub fn from_folder(folder: &Path) -> Result<Self, String> {
        let tokenizer = Tokenizer::from_file(folder.join("tokenizer.json"))
            .map_err(|e| format!("tokenizer.json: {e}"))?;
        let config = read_json(&folder.join("tokenizer_config.json"))?.unwrap_or(Value::Null);
        let template_source = match config.get("chat_template") {
            Some(Value::String(s)) => Some(s.clone()),
            // A list of named templates: the default one.
            Some(Value::Array(list)) => list
                .iter()
                .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
                .or_else(|| list.first())
                .and_then(|t| t.get("template")?.as_str().map(str::to_string)),
            _ => std::fs::read_to_string(folder.join("chat_template.jinja")).ok(),
        };
        let token_text = |key: &str| match config.get(key) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Object(o)) => o.get("content")?.as_str().map(str::to_string),
            _ => None,
        };
        let bos = token_text("bos_token");
        let eos = token_text("eos_token");
        let mut eos_ids: Vec<u32> = eos
            .iter()
            .filter_map(|t| tokenizer.token_to_id(t))
            .collect();
        // generation_config.json and config.json may name more (Llama 3's <|eot_id|>).
        for file in ["generation_config.json", "config.json"] {
            if let Some(found) =
                read_json(&folder.join(file))?.and_then(|v| v.get("eos_token_id").cloned())
            {
                let ids: Vec<u32> = match found {
                    Value::Array(list) => list
                        .iter()
                        .filter_map(|v| v.as_u64())
                        .map(|v| v as u32)
                        .collect(),
                    v => v.as_u64().map(|v| v as u32).into_iter().collect(),
                };
                for id in ids {
                    if !eos_ids.contains(&id) {
                        eos_ids.push(id);
                    }
                }
            }
        }
        if eos_ids.is_empty() {
            return Err("the tokenizer names no end-of-turn token (eos_token)".into());
        }
        let source = template_source.as_deref().unwrap_or(CHATML);
        let template = ChatTemplate::new(
            source,
            bos.as_deref().unwrap_or_default(),
            eos.as_deref().unwrap_or_default(),
        )
        .map_err(|e| format!("chat template: {e}"))?;
        Ok(Self {
            tokenizer,
            template,
            add_bos: config
                .get("add_bos_token")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            bos,
            eos_ids,
            template_source,
        })
    }

    /// Tokens of a rendered prompt: special tokens in the text are parsed as such, and BOS is
    /// added when the tokenizer wants one and the template did not write it.
    pub fn encode(&self, prompt: &str) -> Result<Vec<u32>, String> {
        let encoding = self
            .tokenizer
            .encode(prompt, false)
            .map_err(|e| format!("tokenizer: {e}"))?;
        let mut ids = encoding.get_ids().to_vec();
        if self.add_bos {
            if let Some(bos) = self.bos.as_deref() {
                if !prompt.starts_with(bos) {
                    if let Some(id) = self.tokenizer.token_to_id(bos) {
                        ids.insert(0, id);
                    }
                }
            }
        }
        Ok(ids)
    }

    /// The bytes of one token as the model wrote it (a token may hold part of a character).
    pub fn token_bytes(&self, id: u32) -> Vec<u8> {
        // Decoding one token at a time loses nothing for byte-level BPE: its decoder maps
        // each token back to its own bytes.
        match self.tokenizer.id_to_token(id) {
            Some(piece) => {
                byte_level_bytes(&piece).unwrap_or_else(|| self.decode_one(id).into_bytes())
            }
            None => Vec::new(),
        }
    }

    fn decode_one(&self, id: u32) -> String {
        self.tokenizer.decode(&[id], false).unwrap_or_default()
    }
}

fn read_json(path: &Path) -> Result<Option<Value>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
            format!(
                "{}: {e}",
                path.file_name().unwrap_or_default().to_string_lossy()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// GPT-2's byte-level alphabet back to bytes: each byte was written as one printable
/// character. `None` when `piece` has a character outside it (a special token, or a
/// SentencePiece vocabulary).
fn byte_level_bytes(piece: &str) -> Option<Vec<u8>> {
    piece.chars().map(byte_of_char).collect()
}

fn byte_of_char(c: char) -> Option<u8> {
    let c = c as u32;
    let printable =
        |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    if printable(c) {
        return u8::try_from(c).ok();
    }
    // The other bytes were shifted to 256 and up, in order.
    let mut shifted = 256;
    for b in 0u32..256 {
        if !printable(b) {
            if shifted == c {
                return u8::try_from(b).ok();
            }
            shifted += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_level_pieces_map_back_to_their_bytes() {
        // "Ġ" is the space, "Ċ" the newline; "Ã©" is é's two bytes.
        assert_eq!(byte_level_bytes("Ġthe"), Some(b" the".to_vec()));
        assert_eq!(byte_level_bytes("Ċ"), Some(b"\n".to_vec()));
        assert_eq!(byte_level_bytes("Ã©"), Some("é".as_bytes().to_vec()));
        assert_eq!(byte_level_bytes("<|im_end|>").map(|b| b.len()), Some(10));
        assert_eq!(byte_level_bytes("▁"), None);
    }
}
