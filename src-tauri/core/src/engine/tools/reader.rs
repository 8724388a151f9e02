//! Reads a generation's text back into content and tool calls, piece by piece, so content
//! streams as it comes and a call is passed on as soon as it is complete.

use super::{functiongemma, generic, hermes, llama3, mistral, ToolCall, ToolFormat};

/// What the model said: text for the user, or a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Content(String),
    Call(ToolCall),
}

#[derive(Debug)]
pub struct OutputReader {
    mode: Mode,
    /// Text not passed on yet: a possible marker's beginning, or a call being written.
    held: String,
    /// Inside a call block (after its opening marker).
    inside: bool,
    /// Nothing but whitespace passed on yet (a Llama 3 call is the whole answer).
    at_start: bool,
    calls: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// No tools: text is content as it comes.
    Plain,
    /// The whole answer is one JSON object, read at the end.
    Generic,
    Native(ToolFormat),
}

impl OutputReader {
    fn new(mode: Mode) -> Self {
        Self {
            mode,
            held: String::new(),
            inside: false,
            at_start: true,
            calls: 0,
        }
    }

    pub fn plain() -> Self {
        Self::new(Mode::Plain)
    }

    pub(super) fn generic() -> Self {
        Self::new(Mode::Generic)
    }

    pub(super) fn native(format: ToolFormat) -> Self {
        match format {
            ToolFormat::Generic => Self::generic(),
            format => Self::new(Mode::Native(format)),
        }
    }

    /// Whether the text is read as it comes; the generic format's JSON is read only once it is
    /// complete.
    pub fn streams_content(&self) -> bool {
        self.mode != Mode::Generic
    }

    /// How many calls were passed on so far: a turn with calls finishes with `tool_calls`.
    pub fn calls(&self) -> usize {
        self.calls
    }

    /// The next piece of generated text; returns what can be passed on now.
    pub fn push(&mut self, text: &str) -> Vec<Output> {
        let out = match self.mode {
            Mode::Plain => content(text),
            Mode::Generic => {
                self.held.push_str(text);
                Vec::new()
            }
            Mode::Native(format) => {
                self.held.push_str(text);
                self.scan(format, false)
            }
        };
        self.count(out)
    }

    /// The generation ended: whatever is held.
    pub fn finish(&mut self) -> Vec<Output> {
        let out = match self.mode {
            Mode::Plain => Vec::new(),
            Mode::Generic => generic::parse(&std::mem::take(&mut self.held)),
            Mode::Native(format) => self.scan(format, true),
        };
        self.count(out)
    }

    fn count(&mut self, out: Vec<Output>) -> Vec<Output> {
        self.calls += out.iter().filter(|o| matches!(o, Output::Call(_))).count();
        out
    }

    fn scan(&mut self, format: ToolFormat, end: bool) -> Vec<Output> {
        match format {
            ToolFormat::Hermes => {
                self.scan_blocks(hermes::OPEN, hermes::CLOSE, hermes::parse_block, end)
            }
            ToolFormat::FunctionGemma => self.scan_blocks(
                functiongemma::OPEN,
                functiongemma::CLOSE,
                functiongemma::parse_block,
                end,
            ),
            ToolFormat::Mistral => self.scan_until_marker(mistral::OPEN, end, mistral::parse_calls),
            ToolFormat::Llama3 => self.scan_llama3(end),
            ToolFormat::Generic => Vec::new(),
        }
    }

    /// Content, `OPEN…CLOSE` blocks (Hermes' `<tool_call>`, FunctionGemma's), content.
    fn scan_blocks(
        &mut self,
        open: &str,
        close: &str,
        parse: fn(&str) -> Option<Output>,
        end: bool,
    ) -> Vec<Output> {
        let mut out = Vec::new();
        loop {
            if self.inside {
                let Some(at) = self.held.find(close) else {
                    if end {
                        // An unclosed block (cut short): a call if what is there parses.
                        let inside = std::mem::take(&mut self.held);
                        out.push(
                            parse(&inside)
                                .unwrap_or_else(|| Output::Content(format!("{open}{inside}"))),
                        );
                    }
                    return out;
                };
                let inside: String = self.held.drain(..at + close.len()).collect();
                let inside = &inside[..at];
                out.push(
                    parse(inside)
                        .unwrap_or_else(|| Output::Content(format!("{open}{inside}{close}"))),
                );
                self.inside = false;
            } else {
                let (before, found) = split_at_marker(&mut self.held, open, end);
                out.extend(content(&before));
                if !found {
                    return out;
                }
                self.inside = true;
            }
        }
    }

    /// Content, then a marker after which everything is calls, read at the end.
    fn scan_until_marker(
        &mut self,
        marker: &str,
        end: bool,
        parse: fn(&str) -> Vec<Output>,
    ) -> Vec<Output> {
        let mut out = Vec::new();
        if !self.inside {
            let (before, found) = split_at_marker(&mut self.held, marker, end);
            out.extend(content(&before));
            self.inside = found;
        }
        if self.inside && end {
            let after = std::mem::take(&mut self.held);
            let calls = parse(&after);
            if calls.is_empty() {
                out.extend(content(&format!("{marker}{after}")));
            } else {
                out.extend(calls);
            }
        }
        out
    }

    /// Llama 3: an answer that opens with `{` or the python tag is held and read whole.
    fn scan_llama3(&mut self, end: bool) -> Vec<Output> {
        if self.at_start {
            let trimmed = self.held.trim_start();
            if trimmed.is_empty() && !end {
                return Vec::new();
            }
            let may_be_call = trimmed.starts_with('{')
                || llama3::PYTHON_TAG.starts_with(trimmed)
                || trimmed.starts_with(llama3::PYTHON_TAG);
            if may_be_call {
                self.inside = true;
            }
            self.at_start = false;
        }
        if self.inside {
            return if end {
                llama3::parse(&std::mem::take(&mut self.held))
            } else {
                Vec::new()
            };
        }
        content(&std::mem::take(&mut self.held))
    }
}

/// Takes from `held` the text before `marker` (which is consumed too) and says whether the
/// marker was found. Without it, all but a tail that may be the marker's beginning is taken
/// (all of it at the end).
fn split_at_marker(held: &mut String, marker: &str, end: bool) -> (String, bool) {
    if let Some(at) = held.find(marker) {
        let before: String = held.drain(..at).collect();
        held.drain(..marker.len());
        return (before, true);
    }
    let keep = if end { 0 } else { partial_suffix(held, marker) };
    let cut = held.len() - keep;
    (held.drain(..cut).collect(), false)
}

/// The length of the longest tail of `text` that begins `marker`: text to hold back, since the
/// next piece may complete the marker.
pub(crate) fn partial_suffix(text: &str, marker: &str) -> usize {
    (1..marker.len().min(text.len() + 1))
        .rev()
        .find(|&n| {
            text.is_char_boundary(text.len() - n) && marker.starts_with(&text[text.len() - n..])
        })
        .unwrap_or(0)
}

/// Text as content, nothing for none.
pub(super) fn content(text: &str) -> Vec<Output> {
    if text.is_empty() {
        Vec::new()
    } else {
        vec![Output::Content(text.to_string())]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(reader: &mut OutputReader, pieces: &[&str]) -> Vec<Output> {
        let mut out = Vec::new();
        for piece in pieces {
            out.extend(reader.push(piece));
        }
        out.extend(reader.finish());
        out
    }

    #[test]
    fn hermes_content_streams_and_blocks_become_calls_split_anywhere() {
        let mut reader = OutputReader::native(ToolFormat::Hermes);
        let first = reader.push("Let me check. <tool");
        assert_eq!(first, vec![Output::Content("Let me check. ".into())]);
        let rest = feed(
            &mut reader,
            &[
                "_call>\n{\"name\": \"get_weather\", \"argu",
                "ments\": {\"city\": \"Paris\"}}\n</tool_",
                "call>\n<tool_call>{\"name\": \"b\", \"arguments\": {}}</tool_call>",
            ],
        );
        let names: Vec<&str> = rest
            .iter()
            .filter_map(|o| match o {
                Output::Call(c) => Some(c.name.as_str()),
                Output::Content(_) => None,
            })
            .collect();
        assert_eq!(names, ["get_weather", "b"]);
        assert_eq!(reader.calls(), 2);
    }

    #[test]
    fn a_partial_marker_that_was_not_one_is_content_after_all() {
        let mut reader = OutputReader::native(ToolFormat::Hermes);
        let out = feed(&mut reader, &["a <tool", "box> b", " <to"]);
        let text: String = out
            .iter()
            .map(|o| match o {
                Output::Content(t) => t.as_str(),
                Output::Call(_) => "",
            })
            .collect();
        assert_eq!(text, "a <toolbox> b <to");
        assert_eq!(reader.calls(), 0);
    }

    #[test]
    fn a_block_that_does_not_parse_stays_content() {
        let mut reader = OutputReader::native(ToolFormat::Hermes);
        let out = feed(&mut reader, &["<tool_call>oops</tool_call>"]);
        assert_eq!(
            out,
            vec![Output::Content("<tool_call>oops</tool_call>".into())]
        );
    }

    #[test]
    fn functiongemma_blocks_become_calls() {
        let mut reader = OutputReader::native(ToolFormat::FunctionGemma);
        let out = feed(
            &mut reader,
            &[
                "<start_function_",
                "call>call:get_weather{city:<escape>Paris<escape>}<end_function_call>",
            ],
        );
        assert!(
            matches!(out.as_slice(), [Output::Call(c)] if c.arguments == r#"{"city":"Paris"}"#),
            "{out:?}"
        );
    }

    #[test]
    fn mistral_calls_follow_the_marker() {
        let mut reader = OutputReader::native(ToolFormat::Mistral);
        let out = feed(
            &mut reader,
            &["[TOOL_", "CALLS][{\"name\": \"f\", \"arguments\": {}}]"],
        );
        assert!(matches!(out.as_slice(), [Output::Call(c)] if c.name == "f"));
    }

    #[test]
    fn llama3_prose_streams_and_an_object_is_a_call() {
        let mut reader = OutputReader::native(ToolFormat::Llama3);
        assert_eq!(reader.push("Hello"), vec![Output::Content("Hello".into())]);
        let mut reader = OutputReader::native(ToolFormat::Llama3);
        let out = feed(&mut reader, &[" {\"name\": \"f\",", " \"parameters\": {}}"]);
        assert!(matches!(out.as_slice(), [Output::Call(c)] if c.name == "f"));
    }

    #[test]
    fn generic_answers_are_read_at_the_end() {
        let mut reader = OutputReader::generic();
        assert!(!reader.streams_content());
        assert!(reader.push("{\"response\": \"hi\"").is_empty());
        assert_eq!(reader.push("}"), vec![]);
        assert_eq!(reader.finish(), vec![Output::Content("hi".into())]);
    }

    #[test]
    fn partial_suffixes_respect_characters() {
        assert_eq!(partial_suffix("abc<tool", "<tool_call>"), 5);
        assert_eq!(partial_suffix("abc", "<tool_call>"), 0);
        assert_eq!(partial_suffix("é<", "<tool_call>"), 1);
    }
}
