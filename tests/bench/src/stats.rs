//! A figure is the median of several runs with its spread. These machines are noisy: one run
//! is an anecdote, and the spread says how far to trust the median.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub runs: usize,
}

impl Figure {
    /// The median and range of `samples`; `None` when there is no finite sample.
    pub fn of(samples: &[f64]) -> Option<Self> {
        let mut sorted: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        Some(Self {
            median,
            min: sorted[0],
            max: sorted[n - 1],
            runs: n,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_and_even_counts_have_the_middle_as_median() {
        let odd = Figure::of(&[5.0, 1.0, 3.0]).expect("figure");
        assert_eq!((odd.median, odd.min, odd.max, odd.runs), (3.0, 1.0, 5.0, 3));
        let even = Figure::of(&[4.0, 1.0, 2.0, 3.0]).expect("figure");
        assert_eq!(even.median, 2.5);
    }

    #[test]
    fn no_finite_sample_is_no_figure() {
        assert_eq!(Figure::of(&[]), None);
        assert_eq!(Figure::of(&[f64::NAN, f64::INFINITY]), None);
        let one = Figure::of(&[f64::NAN, 2.0]).expect("figure");
        assert_eq!(one.runs, 1);
    }
}
