//! From a [`Constraint`] to a llama.cpp grammar sampler.
//!
//! The JSON part is llama.cpp's own JSON-Schema-to-GBNF converter (`common`), the one
//! llama-server uses for `response_format` and tool calls; the markers around it are GBNF
//! literals added here.

use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;

use headroom_core::engine::{Constraint, EngineError};

/// A constraint as GBNF, ready for a sampler.
#[derive(Debug, Clone)]
pub(crate) struct Grammar {
    pub gbnf: String,
    /// Enforced only after the model writes this (lazy grammar).
    pub trigger: Option<String>,
}

/// The rule the converter's `root` is renamed to when markers wrap it.
const JSON_RULE: &str = "headroom-json";

impl Grammar {
    pub(crate) fn from_constraint(constraint: &Constraint) -> Result<Self, EngineError> {
        let json =
            llama_cpp_2::json_schema_to_grammar(&constraint.schema.to_string()).map_err(|_| {
                EngineError::InvalidConstraint(
                    "llama.cpp cannot turn this JSON Schema into a grammar (an unresolvable \
                     '$ref', or a keyword combination it does not support)"
                        .into(),
                )
            })?;
        if constraint.is_bare() {
            return Ok(Self {
                gbnf: json,
                trigger: None,
            });
        }
        let mut rules: Vec<String> = json
            .lines()
            .map(|line| match line.strip_prefix("root ::=") {
                Some(rest) => format!("{JSON_RULE} ::={rest}"),
                None => line.to_string(),
            })
            .collect();
        let mut one = Vec::new();
        if !constraint.prefix.is_empty() {
            one.push(literal(&constraint.prefix));
        }
        one.push(JSON_RULE.to_string());
        if !constraint.suffix.is_empty() {
            one.push(literal(&constraint.suffix));
        }
        let one = one.join(" ");
        let root = if constraint.repeat {
            format!("root ::= {one} ( \"\\n\"? {one} )*")
        } else {
            format!("root ::= {one}")
        };
        rules.insert(0, root);
        Ok(Self {
            gbnf: rules.join("\n"),
            trigger: constraint.trigger.clone(),
        })
    }

    /// The sampler that enforces it. Fails on a grammar llama.cpp cannot parse.
    pub(crate) fn sampler(&self, model: &LlamaModel) -> Result<LlamaSampler, EngineError> {
        let made = match &self.trigger {
            None => LlamaSampler::grammar(model, &self.gbnf, "root"),
            Some(trigger) => LlamaSampler::grammar_lazy(
                model,
                &self.gbnf,
                "root",
                std::iter::once(trigger.as_bytes()),
                &[],
            ),
        };
        made.map_err(|e| {
            EngineError::InvalidConstraint(format!("llama.cpp rejected the output grammar: {e}"))
        })
    }
}

/// A GBNF string literal.
fn literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_bare_schema_is_the_converters_grammar() {
        let grammar = Grammar::from_constraint(&Constraint::any_object()).expect("converts");
        assert!(grammar.gbnf.contains("root ::="), "{}", grammar.gbnf);
        assert!(grammar.trigger.is_none());
    }

    #[test]
    fn markers_wrap_the_json_rule() {
        let constraint = Constraint {
            schema: json!({"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}),
            prefix: "<tool_call>\n".into(),
            suffix: "\n</tool_call>".into(),
            repeat: true,
            trigger: Some("<tool_call>".into()),
        };
        let grammar = Grammar::from_constraint(&constraint).expect("converts");
        let first = grammar.gbnf.lines().next().unwrap_or_default();
        assert_eq!(
            first,
            r#"root ::= "<tool_call>\n" headroom-json "\n</tool_call>" ( "\n"? "<tool_call>\n" headroom-json "\n</tool_call>" )*"#
        );
        assert_eq!(grammar.gbnf.matches("root ::=").count(), 1);
        assert!(grammar.gbnf.contains("headroom-json ::="));
    }
}
