//! Reasoning: models that think in `<think>…</think>` before they answer (Qwen3, DeepSeek-R1
//! distills) get the thinking split off, as llama-server and LM Studio split it, so clients show
//! it apart (`reasoning_content`) and tool calls and JSON are read from the answer alone.
//!
//! A template that opens the block itself (its generation prompt ends with `<think>`) starts
//! the model inside it; otherwise a block counts only at the very start of the output.

use super::tools::reader::partial_suffix;

/// Where the text goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Reasoning(String),
    Answer(String),
}

const OPEN: &str = "<think>";
const CLOSE: &str = "</think>";

#[derive(Debug)]
pub struct ReasoningSplitter {
    state: State,
    held: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing but whitespace yet: a block may still open.
    Start,
    Thinking,
    Answering,
    /// The request asked for the text as it is (`reasoning_format: "none"`).
    Inline,
}

impl ReasoningSplitter {
    /// `prompt` is the rendered prompt: one that ends in `<think>` (and whitespace) has the
    /// model thinking from its first token.
    pub fn new(prompt: &str, split: bool) -> Self {
        let state = if !split {
            State::Inline
        } else if prompt.trim_end().ends_with(OPEN) {
            State::Thinking
        } else {
            State::Start
        };
        Self {
            state,
            held: String::new(),
        }
    }

    /// Text that never holds reasoning (plain text completions).
    pub fn inline() -> Self {
        Self::new("", false)
    }

    pub fn push(&mut self, text: &str) -> Vec<Part> {
        self.held.push_str(text);
        self.split(false)
    }

    pub fn finish(&mut self) -> Vec<Part> {
        self.split(true)
    }

    fn split(&mut self, end: bool) -> Vec<Part> {
        let mut out = Vec::new();
        loop {
            match self.state {
                State::Inline | State::Answering => {
                    push(&mut out, Part::Answer(std::mem::take(&mut self.held)));
                    return out;
                }
                State::Start => {
                    let trimmed = self.held.trim_start();
                    if let Some(rest) = trimmed.strip_prefix(OPEN) {
                        self.held = rest.to_string();
                        self.state = State::Thinking;
                    } else if OPEN.starts_with(trimmed) && !end {
                        // Whitespace, or the beginning of the marker: wait for more.
                        return out;
                    } else {
                        self.state = State::Answering;
                    }
                }
                State::Thinking => match self.held.find(CLOSE) {
                    Some(at) => {
                        let thought: String = self.held.drain(..at).collect();
                        self.held.drain(..CLOSE.len());
                        // The answer begins after the blank line models write.
                        let rest = self.held.trim_start().to_string();
                        self.held = rest;
                        push(&mut out, Part::Reasoning(thought));
                        self.state = State::Answering;
                    }
                    None => {
                        let keep = if end {
                            0
                        } else {
                            partial_suffix(&self.held, CLOSE)
                        };
                        let cut = self.held.len() - keep;
                        let thought: String = self.held.drain(..cut).collect();
                        push(&mut out, Part::Reasoning(thought));
                        return out;
                    }
                },
            }
        }
    }
}

fn push(out: &mut Vec<Part>, part: Part) {
    let empty = match &part {
        Part::Reasoning(t) | Part::Answer(t) => t.is_empty(),
    };
    if !empty {
        out.push(part);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(splitter: &mut ReasoningSplitter, pieces: &[&str]) -> (String, String) {
        let mut parts = Vec::new();
        for piece in pieces {
            parts.extend(splitter.push(piece));
        }
        parts.extend(splitter.finish());
        let mut thought = String::new();
        let mut answer = String::new();
        for part in parts {
            match part {
                Part::Reasoning(t) => thought.push_str(&t),
                Part::Answer(t) => answer.push_str(&t),
            }
        }
        (thought, answer)
    }

    #[test]
    fn a_block_at_the_start_is_reasoning_split_anywhere() {
        let mut s = ReasoningSplitter::new("<|im_start|>assistant\n", true);
        let (thought, answer) = run(
            &mut s,
            &["\n<th", "ink>Let me see.", " 2+2=4</th", "ink>\n\nIt is 4."],
        );
        assert_eq!(
            (thought.as_str(), answer.as_str()),
            ("Let me see. 2+2=4", "It is 4.")
        );
    }

    #[test]
    fn a_template_that_opens_the_block_starts_the_model_thinking() {
        let mut s = ReasoningSplitter::new("<|Assistant|><think>\n", true);
        let (thought, answer) = run(&mut s, &["hmm", "</think>", "Yes."]);
        assert_eq!((thought.as_str(), answer.as_str()), ("hmm", "Yes."));
        // Cut short while thinking: all of it is reasoning.
        let mut s = ReasoningSplitter::new("<think>\n", true);
        assert_eq!(
            run(&mut s, &["still </thi"]),
            ("still </thi".into(), String::new())
        );
    }

    #[test]
    fn text_without_a_block_and_inline_requests_are_the_answer() {
        let mut s = ReasoningSplitter::new("", true);
        assert_eq!(
            run(&mut s, &["Hello <think>x</think>"]),
            (String::new(), "Hello <think>x</think>".into())
        );
        let mut s = ReasoningSplitter::new("<think>", false);
        assert_eq!(
            run(&mut s, &["a</think>b"]),
            (String::new(), "a</think>b".into())
        );
        let mut s = ReasoningSplitter::new("", true);
        assert_eq!(run(&mut s, &["<"]), (String::new(), "<".into()));
    }
}
