//! FunctionGemma's calls, which are not JSON:
//! `<start_function_call>call:NAME{key:<escape>text<escape>,n:3,nested:{…},list:[…]}<end_function_call>`.
//! Strings sit between `<escape>` markers; numbers, booleans and null are bare.
//!
//! Parsed, not constrained: llama.cpp's converter writes JSON grammars, and this syntax is not
//! JSON, so a required call is asked for but not enforced for this family.

use serde_json::{Map, Number, Value};

use super::reader::Output;
use super::ToolCall;

pub(super) const OPEN: &str = "<start_function_call>";
pub(super) const CLOSE: &str = "<end_function_call>";
const ESCAPE: &str = "<escape>";

/// One block's inside: `call:NAME{…}`.
pub(super) fn parse_block(inside: &str) -> Option<Output> {
    let rest = inside.trim().strip_prefix("call:")?;
    let brace = rest.find('{')?;
    let name = rest[..brace].trim();
    if name.is_empty() {
        return None;
    }
    let mut parser = Parser {
        text: &rest[brace..],
    };
    let arguments = parser.value()?;
    if !parser.text.trim().is_empty() || !arguments.is_object() {
        return None;
    }
    Some(Output::Call(ToolCall::new(name.to_string(), &arguments)))
}

struct Parser<'a> {
    text: &'a str,
}

impl Parser<'_> {
    fn eat(&mut self, prefix: &str) -> bool {
        let trimmed = self.text.trim_start();
        match trimmed.strip_prefix(prefix) {
            Some(rest) => {
                self.text = rest;
                true
            }
            None => false,
        }
    }

    fn value(&mut self) -> Option<Value> {
        if self.eat(ESCAPE) {
            let end = self.text.find(ESCAPE)?;
            let text = self.text[..end].to_string();
            self.text = &self.text[end + ESCAPE.len()..];
            return Some(Value::String(text));
        }
        if self.eat("{") {
            let mut object = Map::new();
            if self.eat("}") {
                return Some(Value::Object(object));
            }
            loop {
                let trimmed = self.text.trim_start();
                let colon = trimmed.find(':')?;
                let key = trimmed[..colon].trim().to_string();
                self.text = &trimmed[colon + 1..];
                let value = self.value()?;
                object.insert(key, value);
                if self.eat(",") {
                    continue;
                }
                return self.eat("}").then_some(Value::Object(object));
            }
        }
        if self.eat("[") {
            let mut list = Vec::new();
            if self.eat("]") {
                return Some(Value::Array(list));
            }
            loop {
                list.push(self.value()?);
                if self.eat(",") {
                    continue;
                }
                return self.eat("]").then_some(Value::Array(list));
            }
        }
        // A bare word: up to the next separator.
        let trimmed = self.text.trim_start();
        let end = trimmed.find([',', '}', ']']).unwrap_or(trimmed.len());
        let word = trimmed[..end].trim();
        self.text = &trimmed[end..];
        if word.is_empty() {
            return None;
        }
        Some(match word {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            "null" => Value::Null,
            _ => word
                .parse::<i64>()
                .ok()
                .map(Number::from)
                .or_else(|| word.parse::<f64>().ok().and_then(Number::from_f64))
                .map_or_else(|| Value::String(word.to_string()), Value::Number),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn call(inside: &str) -> Option<(String, Value)> {
        match parse_block(inside)? {
            Output::Call(c) => Some((c.name.clone(), c.arguments_value())),
            Output::Content(_) => None,
        }
    }

    #[test]
    fn strings_numbers_lists_and_nested_objects_are_read() {
        assert_eq!(
            call("call:get_weather{city:<escape>Paris, France<escape>,days:3,metric:true}"),
            Some((
                "get_weather".into(),
                json!({"city": "Paris, France", "days": 3, "metric": true})
            ))
        );
        assert_eq!(
            call("call:plan{stops:[<escape>a<escape>,<escape>b<escape>],at:{lat:48.85,lon:2.35},note:null}"),
            Some(("plan".into(), json!({"stops": ["a", "b"], "at": {"lat": 48.85, "lon": 2.35}, "note": null})))
        );
        assert_eq!(call("call:ping{}"), Some(("ping".into(), json!({}))));
    }

    #[test]
    fn malformed_blocks_are_not_calls() {
        for bad in [
            "get_weather{}",
            "call:{a:1}",
            "call:f{a:<escape>open",
            "call:f{a:1",
            "call:f{a:1}}",
        ] {
            assert_eq!(call(bad), None, "{bad}");
        }
    }
}
