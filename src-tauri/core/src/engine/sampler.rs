//! Picks the next token from a vector of logits, for engines that hand Headroom the logits
//! (MLX) rather than sampling themselves (llama.cpp samples with its own chain).
//!
//! The order is llama.cpp's: bias and penalties shape the logits, then greedy takes the best;
//! otherwise top-k, temperature, top-p and min-p narrow the candidates and a seeded generator
//! draws one, so the same seed and settings give the same text.

use std::collections::VecDeque;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::SamplingParams;

/// The sampling state of one generation.
pub struct Sampler {
    params: SamplingParams,
    rng: StdRng,
    /// The last `repeat_last_n` tokens (prompt, then output), oldest first, for the penalties.
    recent: VecDeque<u32>,
}

impl Sampler {
    /// `prompt` seeds the penalties' window, as llama.cpp's sampler is primed with it.
    pub fn new(params: SamplingParams, prompt: &[u32]) -> Self {
        let rng = StdRng::seed_from_u64(u64::from(params.seed));
        let mut sampler = Self {
            params,
            rng,
            recent: VecDeque::new(),
        };
        for &token in prompt {
            sampler.accept(token);
        }
        sampler
    }

    pub fn is_greedy(&self) -> bool {
        self.params.is_greedy()
    }

    /// Whether `logits` must pass through [`Sampler::sample`] rather than an argmax the engine
    /// can take on its own (on the device, without copying the logits out).
    pub fn needs_logits(&self) -> bool {
        !self.params.is_greedy() || self.params.shapes_logits()
    }

    /// Records a token that is now part of the sequence.
    pub fn accept(&mut self, token: u32) {
        let window = self.params.repeat_last_n as usize;
        if window == 0 {
            return;
        }
        if self.recent.len() == window {
            self.recent.pop_front();
        }
        self.recent.push_back(token);
    }

    /// The next token. `logits` is changed in place (biases and penalties).
    pub fn sample(&mut self, logits: &mut [f32]) -> u32 {
        self.shape(logits);
        if self.params.is_greedy() {
            return argmax(logits);
        }
        let mut candidates: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .filter(|(_, l)| l.is_finite())
            .map(|(i, &l)| (i as u32, l))
            .collect();
        if candidates.is_empty() {
            return argmax(logits);
        }
        candidates.sort_unstable_by(|a, b| b.1.total_cmp(&a.1));
        let p = &self.params;
        if p.top_k > 0 {
            candidates.truncate(p.top_k as usize);
        }
        // Softmax at the temperature, over what is left.
        let top = candidates[0].1;
        let mut sum = 0.0f64;
        for c in candidates.iter_mut() {
            let weight = (f64::from(c.1 - top) / f64::from(p.temperature)).exp();
            c.1 = weight as f32;
            sum += weight;
        }
        for c in candidates.iter_mut() {
            c.1 = (f64::from(c.1) / sum) as f32;
        }
        if p.top_p < 1.0 {
            let mut cumulative = 0.0f32;
            let keep = candidates
                .iter()
                .position(|c| {
                    cumulative += c.1;
                    cumulative >= p.top_p
                })
                .map_or(candidates.len(), |i| i + 1);
            candidates.truncate(keep.max(1));
        }
        if p.min_p > 0.0 {
            let floor = candidates[0].1 * p.min_p;
            candidates.retain(|c| c.1 >= floor);
        }
        let total: f32 = candidates.iter().map(|c| c.1).sum();
        let mut draw = self.rng.random::<f32>() * total;
        for &(token, weight) in &candidates {
            if draw < weight {
                return token;
            }
            draw -= weight;
        }
        candidates.last().map_or(0, |c| c.0)
    }

    /// `logit_bias`, then the repetition, frequency and presence penalties over the window.
    fn shape(&self, logits: &mut [f32]) {
        let p = &self.params;
        for &(token, bias) in &p.logit_bias {
            if let Some(l) = usize::try_from(token).ok().and_then(|t| logits.get_mut(t)) {
                *l += bias;
            }
        }
        if p.repeat_penalty == 1.0 && p.presence_penalty == 0.0 && p.frequency_penalty == 0.0 {
            return;
        }
        let mut counts = std::collections::HashMap::<u32, u32>::new();
        for &token in &self.recent {
            *counts.entry(token).or_default() += 1;
        }
        for (token, count) in counts {
            let Some(l) = logits.get_mut(token as usize) else {
                continue;
            };
            if p.repeat_penalty != 1.0 {
                *l = if *l > 0.0 {
                    *l / p.repeat_penalty
                } else {
                    *l * p.repeat_penalty
                };
            }
            *l -= count as f32 * p.frequency_penalty + p.presence_penalty;
        }
    }
}

/// The index of the largest logit; the first one on a tie.
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// Log-probabilities of `logits` (a log-softmax), for `logprobs` in the answer.
pub fn log_softmax(logits: &[f32]) -> Vec<f32> {
    let top = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| f64::from(l - top).exp()).sum();
    let log_sum = sum.ln() as f32 + top;
    logits.iter().map(|&l| l - log_sum).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::sampling::SERVER_DEFAULTS;

    fn params(temperature: f32, seed: u32) -> SamplingParams {
        SamplingParams {
            temperature,
            seed,
            ..SERVER_DEFAULTS.clone()
        }
    }

    #[test]
    fn greedy_takes_the_first_best_token() {
        let mut s = Sampler::new(params(0.0, 1), &[]);
        assert_eq!(s.sample(&mut [0.1, 2.0, 2.0, -1.0]), 1);
        assert!(!s.needs_logits());
    }

    #[test]
    fn the_same_seed_draws_the_same_tokens_and_another_seed_others() {
        let logits: Vec<f32> = (0..50).map(|i| (i % 7) as f32 * 0.3).collect();
        let draw = |seed| {
            let mut s = Sampler::new(
                SamplingParams {
                    top_k: 0,
                    top_p: 1.0,
                    min_p: 0.0,
                    ..params(1.0, seed)
                },
                &[],
            );
            (0..40)
                .map(|_| s.sample(&mut logits.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }

    #[test]
    fn top_k_and_min_p_keep_only_the_likely_tokens() {
        let logits = vec![5.0, 4.9, 0.0, -3.0, 4.8];
        let mut s = Sampler::new(
            SamplingParams {
                top_k: 2,
                ..params(1.0, 3)
            },
            &[],
        );
        for _ in 0..200 {
            assert!([0, 1].contains(&s.sample(&mut logits.clone())));
        }
        let mut s = Sampler::new(
            SamplingParams {
                top_k: 0,
                top_p: 1.0,
                min_p: 0.5,
                ..params(1.0, 3)
            },
            &[],
        );
        for _ in 0..200 {
            assert!([0, 1, 4].contains(&s.sample(&mut logits.clone())));
        }
    }

    #[test]
    fn penalties_and_bias_change_what_greedy_picks() {
        let mut s = Sampler::new(
            SamplingParams {
                repeat_penalty: 2.0,
                ..params(0.0, 1)
            },
            &[0, 0],
        );
        assert!(s.needs_logits());
        // Token 0 was seen: 3.0 / 2 falls below token 1's 2.0.
        assert_eq!(s.sample(&mut [3.0, 2.0]), 1);
        let mut s = Sampler::new(
            SamplingParams {
                logit_bias: vec![(1, 5.0)],
                ..params(0.0, 1)
            },
            &[],
        );
        assert_eq!(s.sample(&mut [3.0, 2.0]), 1);
    }

    #[test]
    fn log_softmax_sums_to_one_in_probability() {
        let lp = log_softmax(&[1.0, 2.0, 3.0]);
        let total: f32 = lp.iter().map(|l| l.exp()).sum();
        assert!((total - 1.0).abs() < 1e-5, "{total}");
        assert!(lp[2] > lp[1] && lp[1] > lp[0]);
    }
}
