//! Llama 3.1+ calls: the whole answer is `{"name": …, "parameters": {…}}` (after
//! `<|python_tag|>` in some fine-tunes). One call per turn: Meta's templates render no more.

use serde_json::Value;

use super::reader::Output;
use super::{call_from_json, call_schema, Constraint, ToolChoice, ToolRequest};

pub(super) const PYTHON_TAG: &str = "<|python_tag|>";

pub(super) fn constraint(request: &ToolRequest) -> Constraint {
    Constraint {
        schema: call_schema(request, "parameters"),
        prefix: String::new(),
        suffix: String::new(),
        repeat: false,
        // The object's opening, as the grammar writes it (properties in schema order).
        trigger: (request.choice == ToolChoice::Auto).then(|| "{\"name\"".to_string()),
    }
}

/// The whole answer, if it is a call; otherwise it stays content.
pub(super) fn parse(text: &str) -> Vec<Output> {
    let body = text.trim().trim_start_matches(PYTHON_TAG).trim();
    match serde_json::from_str::<Value>(body) {
        Ok(value) if value.get("parameters").is_some() || value.get("arguments").is_some() => {
            call_from_json(&value)
                .map(Output::Call)
                .into_iter()
                .collect()
        }
        _ if text.is_empty() => Vec::new(),
        _ => vec![Output::Content(text.to_string())],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_object_is_a_call_and_prose_is_content() {
        assert!(matches!(
            parse(r#"<|python_tag|>{"name": "f", "parameters": {"a": 1}}"#).as_slice(),
            [Output::Call(c)] if c.name == "f"
        ));
        assert_eq!(
            parse("{ not json"),
            vec![Output::Content("{ not json".into())]
        );
    }
}
