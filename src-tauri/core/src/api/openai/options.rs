//! Request fields that chat and text completions share, and their limits.

use serde::Deserialize;

use crate::api::error::ApiError;
use crate::api::generation::Settings;
use crate::engine::SamplingRequest;
use crate::vocab::{parse_idle_timeout, IdleTimeout};

/// `keep_alive` or `ttl`: a duration string or a number of seconds (negative = forever).
pub(super) fn idle_timeout(
    field: &str,
    value: &serde_json::Value,
) -> Result<IdleTimeout, ApiError> {
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
/// OpenAI takes at most 300 `logit_bias` entries; llama-server any number. A thousand is more
/// than any client sends and keeps a request's sampler small.
const MAX_LOGIT_BIAS: usize = 1024;

/// A number in `range`, or a 400 naming the field and the range.
fn within(
    field: &str,
    code: &'static str,
    value: Option<f64>,
    ok: impl Fn(f64) -> bool,
    range: &str,
) -> Result<Option<f32>, ApiError> {
    match value {
        None => Ok(None),
        Some(v) if v.is_finite() && ok(v) => Ok(Some(v as f32)),
        Some(v) => Err(ApiError::bad_request(
            code,
            format!("'{field}' must be {range}, got {v}"),
        )),
    }
}

/// Generation options as OpenAI clients send them. Unknown fields are ignored, as OpenAI does.
#[derive(Debug, Default, Deserialize)]
pub struct GenerationOptions {
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    /// llama-server's samplers beyond OpenAI's.
    pub top_k: Option<i64>,
    pub min_p: Option<f64>,
    pub typical_p: Option<f64>,
    pub repeat_penalty: Option<f64>,
    pub repeat_last_n: Option<i64>,
    pub presence_penalty: Option<f64>,
    pub frequency_penalty: Option<f64>,
    /// Token id (as a JSON object key) → bias from −100 to 100.
    pub logit_bias: Option<std::collections::BTreeMap<String, f64>>,
    pub seed: Option<i64>,
    pub max_tokens: Option<i64>,
    /// The newer name of `max_tokens` in chat completions.
    pub max_completion_tokens: Option<i64>,
    pub stop: Option<Stop>,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    pub n: Option<i64>,
    /// Chat: `true` to get each token's log-probability; text completions: how many
    /// alternatives per token.
    pub logprobs: Option<serde_json::Value>,
    /// Chat: how many alternatives per token (0–20), with `logprobs: true`.
    pub top_logprobs: Option<i64>,
    /// How long the model stays loaded after this request, as Ollama writes it: "5m", "1h",
    /// seconds, 0 = unload when done, negative = forever.
    pub keep_alive: Option<serde_json::Value>,
    /// The same in seconds, as LM Studio writes it.
    pub ttl: Option<serde_json::Value>,
    /// llama-server's switch: `false` computes the whole prompt even when a slot holds a
    /// prefix of it. Absent, the `cache_prompt` setting decides.
    pub cache_prompt: Option<bool>,
}

/// `stream_options`: OpenAI's `include_usage` asks for a last chunk with the usage.
#[derive(Debug, Default, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
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
    /// What the request asked for; the model's own defaults fill the rest once it is known.
    pub sampling: SamplingRequest,
    pub max_tokens: Option<u32>,
    pub stop: Vec<String>,
    pub keep_alive: Option<IdleTimeout>,
    /// Stream the usage in a chunk of its own at the end (`stream_options.include_usage`).
    pub include_usage: bool,
    /// Log-probabilities with this many alternatives per token, if asked for.
    pub logprobs: Option<u8>,
    pub cache_prompt: Option<bool>,
}

impl Checked {
    /// What the generation needs of it (the rest shapes the OpenAI response).
    pub fn settings(&self) -> Settings {
        Settings {
            sampling: self.sampling.clone(),
            max_tokens: self.max_tokens,
            stop: self.stop.clone(),
            keep_alive: self.keep_alive,
            logprobs: self.logprobs,
            cache_prompt: self.cache_prompt,
        }
    }
}

/// llama-server's and OpenAI's most alternatives per token.
const MAX_TOP_LOGPROBS: i64 = 20;

impl GenerationOptions {
    /// Validates every field; `default_max_tokens` applies when the client gives none.
    pub fn check(&self, default_max_tokens: Option<u32>) -> Result<Checked, ApiError> {
        let sampling = self.sampling()?;
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
        let keep_alive = match (&self.keep_alive, &self.ttl) {
            (Some(value), _) => Some(idle_timeout("keep_alive", value)?),
            (None, Some(value)) => Some(idle_timeout("ttl", value)?),
            (None, None) => None,
        };
        Ok(Checked {
            logprobs: self.logprobs()?,
            cache_prompt: self.cache_prompt,
            keep_alive,
            include_usage: self
                .stream_options
                .as_ref()
                .is_some_and(|o| o.include_usage),
            sampling,
            max_tokens,
            stop,
        })
    }
}

impl GenerationOptions {
    /// `logprobs` as chat (`true` plus `top_logprobs`) or text completions (a count) write it.
    fn logprobs(&self) -> Result<Option<u8>, ApiError> {
        let count = |field: &str, n: i64| {
            if (0..=MAX_TOP_LOGPROBS).contains(&n) {
                Ok(n as u8)
            } else {
                Err(ApiError::bad_request(
                    "invalid_logprobs",
                    format!("'{field}' must be between 0 and {MAX_TOP_LOGPROBS}, got {n}"),
                ))
            }
        };
        let top = self
            .top_logprobs
            .map(|n| count("top_logprobs", n))
            .transpose()?;
        match &self.logprobs {
            None | Some(serde_json::Value::Null) | Some(serde_json::Value::Bool(false)) => {
                if top.is_some_and(|n| n > 0) {
                    return Err(ApiError::bad_request(
                        "invalid_logprobs",
                        "'top_logprobs' needs 'logprobs': true",
                    ));
                }
                Ok(None)
            }
            Some(serde_json::Value::Bool(true)) => Ok(Some(top.unwrap_or(0))),
            Some(serde_json::Value::Number(n)) => match n.as_i64() {
                Some(n) => count("logprobs", n).map(Some),
                None => Err(ApiError::bad_request(
                    "invalid_logprobs",
                    format!("'logprobs' must be true, false or a whole number, got {n}"),
                )),
            },
            Some(other) => Err(ApiError::bad_request(
                "invalid_logprobs",
                format!("'logprobs' must be true, false or a whole number, got {other}"),
            )),
        }
    }

    /// The samplers asked for, each checked against its range.
    fn sampling(&self) -> Result<SamplingRequest, ApiError> {
        let whole = |field: &str,
                     code: &'static str,
                     value: Option<i64>,
                     min: i64|
         -> Result<Option<u32>, ApiError> {
            match value {
                None => Ok(None),
                Some(v) if v >= min => Ok(Some(u32::try_from(v.max(0)).unwrap_or(u32::MAX))),
                Some(v) => Err(ApiError::bad_request(
                    code,
                    format!("'{field}' must be a whole number of at least {min}, got {v}"),
                )),
            }
        };
        let logit_bias = self.logit_bias()?;
        Ok(SamplingRequest {
            temperature: within(
                "temperature",
                "invalid_temperature",
                self.temperature,
                |v| (0.0..=2.0).contains(&v),
                "between 0 and 2",
            )?,
            top_p: within(
                "top_p",
                "invalid_top_p",
                self.top_p,
                |v| v > 0.0 && v <= 1.0,
                "greater than 0 and at most 1",
            )?,
            top_k: whole("top_k", "invalid_top_k", self.top_k, 0)?,
            min_p: within(
                "min_p",
                "invalid_min_p",
                self.min_p,
                |v| (0.0..=1.0).contains(&v),
                "between 0 and 1",
            )?,
            typical_p: within(
                "typical_p",
                "invalid_typical_p",
                self.typical_p,
                |v| v > 0.0 && v <= 1.0,
                "greater than 0 and at most 1",
            )?,
            repeat_penalty: within(
                "repeat_penalty",
                "invalid_repeat_penalty",
                self.repeat_penalty,
                |v| v > 0.0 && v <= 10.0,
                "greater than 0 and at most 10 (1 is off)",
            )?,
            // -1: the whole context, as llama-server has it.
            repeat_last_n: whole(
                "repeat_last_n",
                "invalid_repeat_last_n",
                self.repeat_last_n,
                -1,
            )?
            .map(|n| {
                if self.repeat_last_n == Some(-1) {
                    u32::MAX
                } else {
                    n
                }
            }),
            presence_penalty: within(
                "presence_penalty",
                "invalid_presence_penalty",
                self.presence_penalty,
                |v| (-2.0..=2.0).contains(&v),
                "between -2 and 2",
            )?,
            frequency_penalty: within(
                "frequency_penalty",
                "invalid_frequency_penalty",
                self.frequency_penalty,
                |v| (-2.0..=2.0).contains(&v),
                "between -2 and 2",
            )?,
            logit_bias,
            // Seeds are 32-bit in llama.cpp; larger ones are folded rather than refused.
            seed: self.seed.map(|s| s as u32),
        })
    }

    /// `logit_bias` as OpenAI writes it: token ids as keys, biases from −100 to 100.
    fn logit_bias(&self) -> Result<Vec<(i32, f32)>, ApiError> {
        let Some(map) = &self.logit_bias else {
            return Ok(Vec::new());
        };
        let bad = |message: String| ApiError::bad_request("invalid_logit_bias", message);
        if map.len() > MAX_LOGIT_BIAS {
            return Err(bad(format!(
                "'logit_bias' may have at most {MAX_LOGIT_BIAS} entries, got {}",
                map.len()
            )));
        }
        map.iter()
            .map(|(key, &bias)| {
                let token = key.trim().parse::<i32>().ok().filter(|t| *t >= 0).ok_or_else(|| {
                    bad(format!("'logit_bias' keys are token ids (whole numbers), got {key:?}"))
                })?;
                if !(bias.is_finite() && (-100.0..=100.0).contains(&bias)) {
                    return Err(bad(format!(
                        "'logit_bias' values must be between -100 and 100, got {bias} for token {token}"
                    )));
                }
                Ok((token, bias as f32))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(json: &str) -> GenerationOptions {
        serde_json::from_str(json).expect("parses")
    }

    #[test]
    fn unstated_samplers_are_left_to_the_model() {
        let c = opts("{}").check(None).expect("valid");
        assert_eq!(c.sampling, SamplingRequest::default());
        assert_eq!(c.max_tokens, None);
        assert!(c.stop.is_empty());
        let c = opts(
            r#"{"temperature": 0.2, "top_k": 5, "min_p": 0.1, "repeat_penalty": 1.1,
                "repeat_last_n": -1, "presence_penalty": -0.5, "logit_bias": {"42": -100, "7": 5}}"#,
        )
        .check(None)
        .expect("valid");
        assert_eq!(c.sampling.temperature, Some(0.2));
        assert_eq!(c.sampling.top_k, Some(5));
        assert_eq!(c.sampling.repeat_last_n, Some(u32::MAX));
        assert_eq!(c.sampling.logit_bias, vec![(42, -100.0), (7, 5.0)]);
    }

    #[test]
    fn bad_values_are_refused_by_name() {
        for (json, code) in [
            (r#"{"max_tokens": -1}"#, "invalid_max_tokens"),
            (r#"{"max_tokens": 0}"#, "invalid_max_tokens"),
            (r#"{"temperature": 3}"#, "invalid_temperature"),
            (r#"{"top_p": 0}"#, "invalid_top_p"),
            (r#"{"top_k": -1}"#, "invalid_top_k"),
            (r#"{"min_p": 1.5}"#, "invalid_min_p"),
            (r#"{"typical_p": 0}"#, "invalid_typical_p"),
            (r#"{"repeat_penalty": 0}"#, "invalid_repeat_penalty"),
            (r#"{"repeat_last_n": -2}"#, "invalid_repeat_last_n"),
            (r#"{"presence_penalty": 3}"#, "invalid_presence_penalty"),
            (
                r#"{"frequency_penalty": -2.5}"#,
                "invalid_frequency_penalty",
            ),
            (r#"{"logit_bias": {"x": 1}}"#, "invalid_logit_bias"),
            (r#"{"logit_bias": {"5": 101}}"#, "invalid_logit_bias"),
            (r#"{"logit_bias": {"-3": 1}}"#, "invalid_logit_bias"),
            (r#"{"n": 2}"#, "invalid_n"),
            (r#"{"stop": ["a","b","c","d","e"]}"#, "invalid_stop"),
            (
                r#"{"logprobs": true, "top_logprobs": 99}"#,
                "invalid_logprobs",
            ),
            (r#"{"top_logprobs": 3}"#, "invalid_logprobs"),
            (r#"{"logprobs": "yes"}"#, "invalid_logprobs"),
            (r#"{"logprobs": 21}"#, "invalid_logprobs"),
        ] {
            let err = opts(json).check(None).expect_err(json);
            assert_eq!(err.code, code, "{json}");
        }
    }

    #[test]
    fn logprobs_are_read_as_chat_and_text_completions_write_them() {
        assert_eq!(opts("{}").check(None).expect("valid").logprobs, None);
        let chat = opts(r#"{"logprobs": true, "top_logprobs": 5}"#);
        assert_eq!(chat.check(None).expect("valid").logprobs, Some(5));
        let chat = opts(r#"{"logprobs": true}"#);
        assert_eq!(chat.check(None).expect("valid").logprobs, Some(0));
        let text = opts(r#"{"logprobs": 3}"#);
        assert_eq!(text.check(None).expect("valid").logprobs, Some(3));
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
