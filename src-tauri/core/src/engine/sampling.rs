//! Sampling settings as a request states them, independent of any engine.

/// How the next token is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingParams {
    /// 0 means greedy (always the most likely token).
    pub temperature: f32,
    /// Nucleus sampling: keep the smallest set of tokens whose probabilities add up to this.
    pub top_p: f32,
    /// Same seed, same prompt, same settings: same text.
    pub seed: u32,
}

impl SamplingParams {
    /// OpenAI's defaults (temperature 1, top_p 1) with a fresh random seed.
    pub fn openai_defaults() -> Self {
        Self {
            temperature: 1.0,
            top_p: 1.0,
            seed: random_seed(),
        }
    }

    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0
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
