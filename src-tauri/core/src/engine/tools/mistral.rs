//! Mistral's calls: `[TOOL_CALLS]` then a JSON list of `{"name", "arguments"}` (v0.3, Nemo,
//! Small), or `[TOOL_CALLS]name[ARGS]{…}` per call (the 2025 templates).

use serde_json::{json, Value};

use super::reader::Output;
use super::{call_from_json, call_schema, Constraint, ToolChoice, ToolRequest};

pub(super) const OPEN: &str = "[TOOL_CALLS]";

pub(super) fn constraint(request: &ToolRequest) -> Constraint {
    let max_items = if request.parallel {
        Value::Null
    } else {
        json!(1)
    };
    let mut schema =
        json!({ "type": "array", "items": call_schema(request, "arguments"), "minItems": 1 });
    if !max_items.is_null() {
        schema["maxItems"] = max_items;
    }
    Constraint {
        schema,
        prefix: OPEN.to_string(),
        suffix: String::new(),
        repeat: false,
        trigger: (request.choice == ToolChoice::Auto).then(|| OPEN.to_string()),
    }
}

/// Everything after the marker.
pub(super) fn parse_calls(after: &str) -> Vec<Output> {
    let after = after.trim();
    if let Ok(Value::Array(calls)) = serde_json::from_str::<Value>(after) {
        return calls
            .iter()
            .filter_map(call_from_json)
            .map(Output::Call)
            .collect();
    }
    // `name[ARGS]{…}`, several joined by the marker.
    after
        .split(OPEN)
        .filter_map(|one| {
            let (name, arguments) = one.split_once("[ARGS]")?;
            let arguments: Value = serde_json::from_str(arguments.trim()).ok()?;
            call_from_json(&json!({ "name": name.trim(), "arguments": arguments }))
        })
        .map(Output::Call)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_generations_of_the_format_are_read() {
        let calls = parse_calls(
            r#" [{"name": "a", "arguments": {"x": 1}}, {"name": "b", "arguments": {}}]"#,
        );
        assert_eq!(calls.len(), 2);
        let calls = parse_calls(r#"a[ARGS]{"x": 1}[TOOL_CALLS]b[ARGS]{}"#);
        match calls.as_slice() {
            [Output::Call(a), Output::Call(b)] => {
                assert_eq!((a.name.as_str(), a.arguments.as_str()), ("a", r#"{"x":1}"#));
                assert_eq!(b.name, "b");
            }
            other => panic!("not two calls: {other:?}"),
        }
    }
}
