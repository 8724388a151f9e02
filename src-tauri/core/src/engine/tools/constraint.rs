//! What the output must look like, in terms every engine can enforce: JSON that satisfies a
//! schema, optionally between fixed markers, optionally only once the model writes a trigger.
//!
//! The llama.cpp engine turns this into a GBNF grammar (llama.cpp's own JSON-Schema
//! converter for the JSON, literals around it); the schema is the one description that an
//! engine without GBNF could also enforce.

use serde_json::{json, Value};

#[derive(Debug, Clone, PartialEq)]
pub struct Constraint {
    /// The JSON the model writes must satisfy this schema.
    pub schema: Value,
    /// Written before the JSON (a format's opening marker).
    pub prefix: String,
    /// Written after it (the closing marker).
    pub suffix: String,
    /// One or more `prefix JSON suffix` in a row (parallel calls in a marker format).
    pub repeat: bool,
    /// Enforced only from the moment the model writes this text, which begins `prefix`: the
    /// model may answer in prose instead (`tool_choice: auto`).
    pub trigger: Option<String>,
}

impl Constraint {
    /// Exactly one JSON value satisfying `schema`, nothing around it.
    pub fn json(schema: Value) -> Self {
        Self {
            schema,
            prefix: String::new(),
            suffix: String::new(),
            repeat: false,
            trigger: None,
        }
    }

    /// `response_format: {"type": "json_object"}`: any object.
    pub fn any_object() -> Self {
        Self::json(json!({ "type": "object" }))
    }

    /// Whether the JSON stands alone (the whole output), so a schema's grammar is used as is.
    pub fn is_bare(&self) -> bool {
        self.prefix.is_empty() && self.suffix.is_empty() && !self.repeat && self.trigger.is_none()
    }
}
