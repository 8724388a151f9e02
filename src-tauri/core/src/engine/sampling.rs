//! Sampling settings as a request states them, independent of any engine.
//!
//! A request names some samplers or none. What it leaves out comes from the model's own
//! recommendation where its file carries one (GGUF `general.sampling.*`), else from
//! llama-server's defaults, so that the first request a newcomer types, with no temperature,
//! shows the model at its best rather than at OpenAI's temperature 1.

/// How the next token is chosen, every sampler settled.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 means greedy (always the most likely token, after penalties and biases).
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens; 0 keeps all.
    pub top_k: u32,
    /// Nucleus sampling: keep the smallest set of tokens whose probabilities add up to this; 1
    /// keeps all.
    pub top_p: f32,
    /// Drop tokens less likely than `min_p` times the most likely one; 0 keeps all.
    pub min_p: f32,
    /// Locally typical sampling; 1 is off.
    pub typical_p: f32,
    /// Divides the logits of tokens seen in the last `repeat_last_n` (llama.cpp's); 1 is off.
    pub repeat_penalty: f32,
    /// How many of the last tokens the penalties look at.
    pub repeat_last_n: u32,
    /// Subtracted once from the logit of every token already present (OpenAI's).
    pub presence_penalty: f32,
    /// Subtracted per occurrence (OpenAI's).
    pub frequency_penalty: f32,
    /// Added to the logits of these tokens (OpenAI's `logit_bias`: token id → −100…100).
    pub logit_bias: Vec<(i32, f32)>,
    /// Same seed, same prompt, same settings: same text.
    pub seed: u32,
}

/// What a request asked for; `None`: not stated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SamplingRequest {
    pub temperature: Option<f32>,
    pub top_k: Option<u32>,
    pub top_p: Option<f32>,
    pub min_p: Option<f32>,
    pub typical_p: Option<f32>,
    pub repeat_penalty: Option<f32>,
    pub repeat_last_n: Option<u32>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub logit_bias: Vec<(i32, f32)>,
    pub seed: Option<u32>,
}

/// What a model's file recommends; `None`: it says nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SamplingDefaults {
    pub temperature: Option<f32>,
    pub top_k: Option<u32>,
    pub top_p: Option<f32>,
    pub min_p: Option<f32>,
    pub repeat_penalty: Option<f32>,
    pub repeat_last_n: Option<u32>,
}

/// llama-server's defaults, for whatever neither the request nor the model states.
pub const SERVER_DEFAULTS: SamplingParams = SamplingParams {
    temperature: 0.8,
    top_k: 40,
    top_p: 0.95,
    min_p: 0.05,
    typical_p: 1.0,
    repeat_penalty: 1.0,
    repeat_last_n: 64,
    presence_penalty: 0.0,
    frequency_penalty: 0.0,
    logit_bias: Vec::new(),
    seed: 0,
};

impl SamplingRequest {
    /// The settings in force: the request's, else the model's, else llama-server's.
    pub fn resolve(&self, model: &SamplingDefaults) -> SamplingParams {
        let d = &SERVER_DEFAULTS;
        SamplingParams {
            temperature: self
                .temperature
                .or(model.temperature)
                .unwrap_or(d.temperature),
            top_k: self.top_k.or(model.top_k).unwrap_or(d.top_k),
            top_p: self.top_p.or(model.top_p).unwrap_or(d.top_p),
            min_p: self.min_p.or(model.min_p).unwrap_or(d.min_p),
            typical_p: self.typical_p.unwrap_or(d.typical_p),
            repeat_penalty: self
                .repeat_penalty
                .or(model.repeat_penalty)
                .unwrap_or(d.repeat_penalty),
            repeat_last_n: self
                .repeat_last_n
                .or(model.repeat_last_n)
                .unwrap_or(d.repeat_last_n),
            presence_penalty: self.presence_penalty.unwrap_or(d.presence_penalty),
            frequency_penalty: self.frequency_penalty.unwrap_or(d.frequency_penalty),
            logit_bias: self.logit_bias.clone(),
            seed: self.seed.unwrap_or_else(random_seed),
        }
    }
}

impl SamplingDefaults {
    /// Reads GGUF's `general.sampling.*` keys through `value` (the key's value as text, when
    /// the file has it). Values out of range are ignored, not trusted.
    pub fn from_metadata(value: impl Fn(&str) -> Option<String>) -> Self {
        let number = |key: &str| {
            value(&format!("general.sampling.{key}"))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|v| v.is_finite())
        };
        let unit = |key: &str| {
            number(key)
                .filter(|v| (0.0..=1.0).contains(v))
                .map(|v| v as f32)
        };
        Self {
            temperature: number("temp")
                .filter(|v| (0.0..=2.0).contains(v))
                .map(|v| v as f32),
            top_k: number("top_k")
                .filter(|v| *v >= 0.0 && v.fract() == 0.0)
                .map(|v| v.min(f64::from(u32::MAX)) as u32),
            top_p: unit("top_p").filter(|v| *v > 0.0),
            min_p: unit("min_p"),
            repeat_penalty: number("penalty_repeat")
                .filter(|v| *v > 0.0)
                .map(|v| v as f32),
            repeat_last_n: number("penalty_last_n")
                .filter(|v| *v >= 0.0 && v.fract() == 0.0)
                .map(|v| v.min(f64::from(u32::MAX)) as u32),
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

impl SamplingParams {
    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0
    }

    /// Whether the logits are changed before a token is picked (penalties, biases).
    pub fn shapes_logits(&self) -> bool {
        self.repeat_penalty != 1.0
            || self.presence_penalty != 0.0
            || self.frequency_penalty != 0.0
            || !self.logit_bias.is_empty()
    }
}

/// A seed for requests that do not give one. Not cryptographic; it only has to differ.
pub fn random_seed() -> u32 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    hasher.finish() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_wins_then_the_model_then_llama_server() {
        let model = SamplingDefaults {
            temperature: Some(0.6),
            top_k: Some(20),
            ..SamplingDefaults::default()
        };
        let asked = SamplingRequest {
            temperature: Some(0.0),
            seed: Some(7),
            ..SamplingRequest::default()
        };
        let p = asked.resolve(&model);
        assert_eq!(p.temperature, 0.0);
        assert_eq!(p.top_k, 20);
        assert_eq!(p.top_p, 0.95);
        assert_eq!(p.min_p, 0.05);
        assert_eq!(p.seed, 7);
        let p = SamplingRequest::default().resolve(&SamplingDefaults::default());
        assert_eq!(SamplingParams { seed: 0, ..p }, SERVER_DEFAULTS);
    }

    #[test]
    fn a_models_recommendation_is_read_and_nonsense_is_ignored() {
        let meta = |key: &str| {
            match key {
                "general.sampling.temp" => Some("0.7"),
                "general.sampling.top_k" => Some("64"),
                "general.sampling.top_p" => Some("1.5"),
                "general.sampling.min_p" => Some("0.0"),
                "general.sampling.penalty_repeat" => Some("-1"),
                "general.sampling.penalty_last_n" => Some("nope"),
                _ => None,
            }
            .map(String::from)
        };
        let d = SamplingDefaults::from_metadata(meta);
        assert_eq!(d.temperature, Some(0.7));
        assert_eq!(d.top_k, Some(64));
        assert_eq!(d.top_p, None, "1.5 is not a probability");
        assert_eq!(d.min_p, Some(0.0));
        assert_eq!(d.repeat_penalty, None);
        assert_eq!(d.repeat_last_n, None);
        assert!(SamplingDefaults::from_metadata(|_| None).is_empty());
    }
}
