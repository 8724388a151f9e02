//! Request fields that chat and text completions share, and their limits.

use serde::Deserialize;

use crate::api::error::ApiError;
use crate::engine::sampling::random_seed;
use crate::engine::SamplingParams;
use crate::vocab::{parse_idle_timeout, IdleTimeout};

/// `keep_alive` or `ttl`: a duration string or a number of seconds (negative = forever).
fn idle_timeout(field: &str, value: &serde_json::Value) -> Result<IdleTimeout, ApiError> {
    let parsed = match value {
        serde_json::Value::Number(n) => n
            .as_f64()
            .ok_or_else(|| format!("{n} is not a number of seconds"))
            .and_then(IdleTimeout::from_seconds),
        serde_json::Value::String(s) => parse_idle_timeout(s),
        other => Err(format!("{other} is neither a duration string nor a number")),
    };
    parsed.map_err(|why| ApiError::bad_request("invalid_keep_alive", format!("'{field}': {why}")))
}

/// OpenAI allows four stop sequences; so do we, each of a sane length.
const MAX_STOP_STRINGS: usize = 4;
const MAX_STOP_CHARS: usize = 256;

/// Generation options as OpenAI clients send them. Unknown fields are ignored, as OpenAI does.
#[derive(Debug, Default, Deserialize)]
pub struct GenerationOptions {
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub seed: Option<i64>,
    pub max_tokens: Option<i64>,
    /// The newer name of `max_tokens` in chat completions.
    pub max_completion_tokens: Option<i64>,
    pub stop: Option<Stop>,
    #[serde(default)]
    pub stream: bool,
    pub n: Option<i64>,
    /// How long the model stays loaded after this request, as Ollama writes it: "5m", "1h",
    /// seconds, 0 = unload when done, negative = forever.
    pub keep_alive: Option<serde_json::Value>,
    /// The same in seconds, as LM Studio writes it.
    pub ttl: Option<serde_json::Value>,
}

/// `stop` is a string or a list of strings.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

/// The checked form of [`GenerationOptions`].
#[derive(Debug)]
pub struct Checked {
    pub sampling: SamplingParams,
    pub max_tokens: Option<u32>,
    pub stop: Vec<String>,
    pub keep_alive: Option<IdleTimeout>,
}

impl GenerationOptions {
    /// Validates every field; `default_max_tokens` applies when the client gives none.
    pub fn check(&self, default_max_tokens: Option<u32>) -> Result<Checked, ApiError> {
        let temperature = self.temperature.unwrap_or(1.0);
        if !(0.0..=2.0).contains(&temperature) {
            return Err(ApiError::bad_request(
                "invalid_temperature",
                format!("'temperature' must be between 0 and 2, got {temperature}"),
            ));
        }
        let top_p = self.top_p.unwrap_or(1.0);
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(ApiError::bad_request(
                "invalid_top_p",
                format!("'top_p' must be greater than 0 and at most 1, got {top_p}"),
            ));
        }
        if let Some(n) = self.n {
            if n != 1 {
                return Err(ApiError::bad_request(
                    "invalid_n",
                    "only 'n' = 1 is supported",
                ));
            }
        }
        let max_tokens = match self.max_completion_tokens.or(self.max_tokens) {
            None => default_max_tokens,
            Some(n) if n >= 1 => Some(u32::try_from(n).unwrap_or(u32::MAX)),
            Some(n) => {
                return Err(ApiError::bad_request(
                    "invalid_max_tokens",
                    format!("'max_tokens' must be at least 1, got {n}"),
                ))
            }
        };
        let stop = match &self.stop {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s.clone()],
            Some(Stop::Many(v)) => v.clone(),
        };
        if stop.len() > MAX_STOP_STRINGS {
            return Err(ApiError::bad_request(
                "invalid_stop",
                format!(
                    "at most {MAX_STOP_STRINGS} stop strings are allowed, got {}",
                    stop.len()
                ),
            ));
        }
        if stop.iter().any(|s| s.chars().count() > MAX_STOP_CHARS) {
            return Err(ApiError::bad_request(
                "invalid_stop",
                format!("stop strings may be at most {MAX_STOP_CHARS} characters long"),
            ));
        }
        // Seeds are 32-bit in llama.cpp; larger ones are folded rather than refused.
        let seed = self.seed.map_or_else(random_seed, |s| s as u32);
        let keep_alive = match (&self.keep_alive, &self.ttl) {
            (Some(value), _) => Some(idle_timeout("keep_alive", value)?),
            (None, Some(value)) => Some(idle_timeout("ttl", value)?),
            (None, None) => None,
        };
        Ok(Checked {
            keep_alive,
            sampling: SamplingParams {
                temperature: temperature as f32,
                top_p: top_p as f32,
                seed,
            },
            max_tokens,
            stop,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(json: &str) -> GenerationOptions {
        serde_json::from_str(json).expect("parses")
    }

    #[test]
    fn defaults_are_openais() {
        let c = opts("{}").check(None).expect("valid");
        assert_eq!(c.sampling.temperature, 1.0);
        assert_eq!(c.sampling.top_p, 1.0);
        assert_eq!(c.max_tokens, None);
        assert!(c.stop.is_empty());
    }

    #[test]
    fn bad_values_are_refused_by_name() {
        for (json, code) in [
            (r#"{"max_tokens": -1}"#, "invalid_max_tokens"),
            (r#"{"max_tokens": 0}"#, "invalid_max_tokens"),
            (r#"{"temperature": 3}"#, "invalid_temperature"),
            (r#"{"top_p": 0}"#, "invalid_top_p"),
            (r#"{"n": 2}"#, "invalid_n"),
            (r#"{"stop": ["a","b","c","d","e"]}"#, "invalid_stop"),
        ] {
            let err = opts(json).check(None).expect_err(json);
            assert_eq!(err.code, code, "{json}");
        }
    }

    #[test]
    fn huge_max_tokens_saturate_and_max_completion_tokens_wins() {
        let c = opts(r#"{"max_tokens": 99999999999, "stop": "x"}"#)
            .check(None)
            .expect("valid");
        assert_eq!(c.max_tokens, Some(u32::MAX));
        assert_eq!(c.stop, vec!["x".to_string()]);
        let c = opts(r#"{"max_tokens": 5, "max_completion_tokens": 7}"#)
            .check(None)
            .expect("valid");
        assert_eq!(c.max_tokens, Some(7));
    }
}
