//! Tokens are byte pieces; one character can span two tokens (emoji, CJK). Text goes out only
//! as whole characters.

/// Collects token bytes and hands back the longest complete UTF-8 prefix.
#[derive(Debug, Default)]
pub struct Utf8Assembler {
    pending: Vec<u8>,
}

impl Utf8Assembler {
    /// Adds a token's bytes; returns the text that is now complete. Bytes that can never become
    /// valid UTF-8 come out as U+FFFD rather than stalling the stream.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(text) => {
                    out.push_str(text);
                    self.pending.clear();
                    return out;
                }
                Err(err) => {
                    let valid = err.valid_up_to();
                    // `valid` bytes were just checked to be UTF-8.
                    out.push_str(&String::from_utf8_lossy(&self.pending[..valid]));
                    match err.error_len() {
                        // An incomplete character at the end: wait for the next token.
                        None => {
                            self.pending.drain(..valid);
                            return out;
                        }
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + bad);
                        }
                    }
                }
            }
        }
    }

    /// Whatever is left at the end of a generation.
    pub fn finish(&mut self) -> String {
        let rest = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        rest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_character_split_across_tokens_comes_out_whole() {
        let mut asm = Utf8Assembler::default();
        let smile = "é🙂".as_bytes();
        assert_eq!(asm.push(&smile[..1]), "");
        assert_eq!(asm.push(&smile[1..4]), "é");
        assert_eq!(asm.push(&smile[4..]), "🙂");
        assert_eq!(asm.finish(), "");
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let mut asm = Utf8Assembler::default();
        assert_eq!(asm.push(b"a\xffb"), "a\u{fffd}b");
        assert_eq!(asm.push(b"\xe2\x82"), "");
        assert_eq!(asm.finish(), "\u{fffd}");
    }
}
