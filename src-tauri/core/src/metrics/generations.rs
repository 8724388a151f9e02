//! The last generations, for `/api/metrics/generations`: enough to see what a model did
//! recently without a metrics stack.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::Serialize;

use crate::vocab::Dialect;

/// How many generations are kept.
pub const KEPT: usize = 100;

/// One finished (or abandoned) generation.
#[derive(Debug, Clone, Serialize)]
pub struct GenerationRecord {
    pub model: String,
    /// The API the request came in through.
    pub dialect: Dialect,
    /// Unix time in milliseconds when it ended.
    pub finished_at: u64,
    /// From the request's arrival (including any load) to the first token.
    pub ttft_ms: Option<f64>,
    /// Generated tokens per second after the first one.
    pub tokens_per_second: Option<f64>,
    pub prompt_tokens: u32,
    /// Of the prompt tokens, those reused from the KV cache.
    pub cached_tokens: u32,
    pub generated_tokens: u32,
    /// "stop", "length", "error" or "cancelled".
    pub outcome: String,
    /// This process's resident memory when it ended.
    pub process_memory: Option<u64>,
    /// The model's measured footprint when it ended.
    pub model_memory: Option<u64>,
}

/// A generation's record as the event stream sends it, typed `generation`: the web UI lists it
/// among the recent events, naming the dialect.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename = "generation")]
pub struct GenerationFinished {
    #[serde(flatten)]
    pub record: GenerationRecord,
}

/// A ring of the last [`KEPT`] records.
#[derive(Debug, Default)]
pub struct GenerationLog {
    records: Mutex<VecDeque<GenerationRecord>>,
}

impl GenerationLog {
    pub fn push(&self, record: GenerationRecord) {
        if let Ok(mut records) = self.records.lock() {
            if records.len() == KEPT {
                records.pop_front();
            }
            records.push_back(record);
        }
    }

    /// Oldest first.
    pub fn recent(&self) -> Vec<GenerationRecord> {
        self.records
            .lock()
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: u32) -> GenerationRecord {
        GenerationRecord {
            model: "m".into(),
            dialect: Dialect::OpenAiChat,
            finished_at: 0,
            ttft_ms: None,
            tokens_per_second: None,
            prompt_tokens: n,
            cached_tokens: 0,
            generated_tokens: 0,
            outcome: "stop".into(),
            process_memory: None,
            model_memory: None,
        }
    }

    #[test]
    fn keeps_the_last_hundred_in_order() {
        let log = GenerationLog::default();
        for n in 0..150 {
            log.push(record(n));
        }
        let recent = log.recent();
        assert_eq!(recent.len(), KEPT);
        assert_eq!(recent[0].prompt_tokens, 50);
        assert_eq!(recent[KEPT - 1].prompt_tokens, 149);
    }
}
