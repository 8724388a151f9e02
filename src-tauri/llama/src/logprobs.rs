//! Log-probabilities of sampled tokens, from the model's raw logits, as llama-server reports
//! them by default: the softmax over the whole vocabulary before any sampler shaped it.

use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;

use headroom_core::engine::{TokenLogprob, TokenText};

/// `token`'s log-probability among `logits`, and the `top` likeliest tokens.
pub(crate) fn of(model: &LlamaModel, logits: &[f32], token: LlamaToken, top: u8) -> TokenLogprob {
    let (log_z, best) = log_partition_and_top(logits, usize::from(top));
    let text =
        |t: i32| TokenText::from_bytes(model.vocab().token_to_piece(LlamaToken(t), false, None));
    let logprob = usize::try_from(token.0)
        .ok()
        .and_then(|i| logits.get(i))
        .map_or(f32::NEG_INFINITY, |&l| l - log_z);
    TokenLogprob {
        token: text(token.0),
        logprob,
        top: best
            .into_iter()
            .map(|(i, l)| (text(i), l - log_z))
            .collect(),
    }
}

/// The log of the softmax's denominator, and the `n` largest logits (index, logit), largest
/// first. One pass over the vocabulary for the maximum, one for the sum and the top.
fn log_partition_and_top(logits: &[f32], n: usize) -> (f32, Vec<(i32, f32)>) {
    let max = logits
        .iter()
        .copied()
        .filter(|l| l.is_finite())
        .fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return (0.0, Vec::new());
    }
    let mut sum = 0.0f64;
    let mut top: Vec<(i32, f32)> = Vec::with_capacity(n + 1);
    for (i, &l) in logits.iter().enumerate() {
        if !l.is_finite() {
            continue;
        }
        sum += f64::from(l - max).exp();
        if n > 0 && (top.len() < n || l > top[top.len() - 1].1) {
            let at = top.partition_point(|&(_, other)| other >= l);
            top.insert(at, (i32::try_from(i).unwrap_or(i32::MAX), l));
            top.truncate(n);
        }
    }
    (max + sum.ln() as f32, top)
}

#[cfg(test)]
mod tests {
    use super::log_partition_and_top;

    #[test]
    fn probabilities_sum_to_one_and_the_top_is_ordered() {
        let logits = [1.0f32, 3.0, 2.0, f32::NEG_INFINITY, 0.5];
        let (log_z, top) = log_partition_and_top(&logits, 3);
        let total: f32 = logits
            .iter()
            .filter(|l| l.is_finite())
            .map(|l| (l - log_z).exp())
            .sum();
        assert!((total - 1.0).abs() < 1e-5, "{total}");
        assert_eq!(top.iter().map(|t| t.0).collect::<Vec<_>>(), [1, 2, 0]);
        assert!(log_partition_and_top(&logits, 0).1.is_empty());
        assert!(log_partition_and_top(&[f32::NEG_INFINITY], 2).1.is_empty());
    }
}
