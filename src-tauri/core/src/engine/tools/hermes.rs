//! Hermes-style calls, which Qwen 2.5/3, Hermes and many fine-tunes write:
//! `<tool_call>\n{"name": …, "arguments": {…}}\n</tool_call>`, one block per call.

use serde_json::Value;

use super::reader::Output;
use super::{call_from_json, call_schema, Constraint, ToolChoice, ToolRequest};

pub(super) const OPEN: &str = "<tool_call>";
pub(super) const CLOSE: &str = "</tool_call>";

/// Calls in blocks; under `auto` only once the model opens one.
pub(super) fn constraint(request: &ToolRequest) -> Constraint {
    Constraint {
        schema: call_schema(request, "arguments"),
        prefix: format!("{OPEN}\n"),
        suffix: format!("\n{CLOSE}"),
        repeat: request.parallel,
        trigger: (request.choice == ToolChoice::Auto).then(|| OPEN.to_string()),
    }
}

/// One block's inside.
pub(super) fn parse_block(inside: &str) -> Option<Output> {
    let value: Value = serde_json::from_str(inside.trim()).ok()?;
    call_from_json(&value).map(Output::Call)
}
