//! The thread that owns a loaded MLX model and its KV cache, and serves its generations one
//! at a time, in the order they were queued.
//!
//! One sequence at a time: MLX's CPU backend computes one graph at a time, so batching the
//! active sequences would only interleave them (see docs/design.md, "The MLX engine").

use std::sync::atomic::Ordering;
use std::sync::Arc;

use mlx_rs::error::Exception;
use mlx_rs::ops::indexing::argmax_axis;
use mlx_rs::transforms::{async_eval, eval};
use mlx_rs::{Array, Dtype};
use tokio::sync::mpsc;

use headroom_core::engine::sampler::{log_softmax, Sampler};
use headroom_core::engine::stop::{StopMatcher, StopOutcome};
use headroom_core::engine::utf8::Utf8Assembler;
use headroom_core::engine::{
    CancelFlag, FinishReason, GenerateRequest, GenerationEvent, TokenLogprob, TokenText, Usage,
};

use crate::cache::KvCache;
use crate::llama::Llama;
use crate::tokenizer::TextFormat;
use crate::Shared;

/// Prompt tokens per forward pass while reading a prompt (mlx-lm's `prefill_step_size`).
const PREFILL_CHUNK: usize = 2048;

/// One queued generation.
pub(crate) struct Job {
    pub tokens: Vec<u32>,
    pub request: GenerateRequest,
    pub events: mpsc::Sender<GenerationEvent>,
    pub cancel: CancelFlag,
}

pub(crate) struct WorkerSetup {
    pub model: Llama,
    pub text: Arc<TextFormat>,
    pub context: u32,
    pub jobs: mpsc::Receiver<Job>,
    pub shared: Arc<Shared>,
}

/// Serves jobs until the queue closes, then lets the model's memory go.
pub(crate) fn run(setup: WorkerSetup) {
    let WorkerSetup {
        model,
        text,
        context,
        mut jobs,
        shared,
    } = setup;
    let mut cache = KvCache::new(model.config().num_hidden_layers as usize);
    while let Some(job) = jobs.blocking_recv() {
        shared.queued.fetch_sub(1, Ordering::Relaxed);
        if shared.stop.load(Ordering::Acquire) {
            let _ = job
                .events
                .blocking_send(GenerationEvent::Failed(shared.stop_reason()));
            continue;
        }
        shared.active.fetch_add(1, Ordering::Relaxed);
        let outcome = serve(&model, &text, &mut cache, context, &job, &shared);
        shared.active.fetch_sub(1, Ordering::Relaxed);
        let counter = match outcome {
            Ok(Ended::Cancelled) => &shared.cancelled,
            Ok(Ended::Finished) => &shared.completed,
            Err(e) => {
                // The cache may hold half a pass; start the next request from nothing.
                cache.clear();
                let _ = job
                    .events
                    .blocking_send(GenerationEvent::Failed(format!("MLX failed: {e}")));
                &shared.completed
            }
        };
        counter.fetch_add(1, Ordering::Relaxed);
        record_memory(&cache, &shared);
    }
    drop(cache);
    drop(model);
    // Freed arrays stay in MLX's allocator cache until cleared: give them back now, so the
    // unload's measurement sees the memory gone.
    let _ = mlx_rs::memory::clear_cache();
}

enum Ended {
    Finished,
    Cancelled,
}

/// Where a generation's text goes: UTF-8 assembly and stop strings, then the client.
struct Output<'a> {
    job: &'a Job,
    utf8: Utf8Assembler,
    stops: StopMatcher,
}

impl Output<'_> {
    /// Sends a token's text; `Some(stop)` when a stop string ended the generation.
    fn push(&mut self, bytes: &[u8]) -> Result<Option<String>, ()> {
        let text = self.utf8.push(bytes);
        match self.stops.push(&text) {
            StopOutcome::Continue(out) => self.send_text(out).map(|()| None),
            StopOutcome::Stopped { text, matched } => self.send_text(text).map(|()| Some(matched)),
        }
    }

    fn send_text(&self, text: String) -> Result<(), ()> {
        if text.is_empty() {
            return Ok(());
        }
        self.send(GenerationEvent::Text(text))
    }

    fn send(&self, event: GenerationEvent) -> Result<(), ()> {
        self.job.events.blocking_send(event).map_err(|_| ())
    }

    /// What was held back (a partial character, a possible stop string's start).
    fn flush(&mut self) -> Result<(), ()> {
        let rest = self.utf8.finish();
        let mut text = match self.stops.push(&rest) {
            StopOutcome::Continue(out) => out,
            StopOutcome::Stopped { text, .. } => text,
        };
        text.push_str(&self.stops.finish());
        self.send_text(text)
    }
}

fn serve(
    model: &Llama,
    text: &TextFormat,
    cache: &mut KvCache,
    context: u32,
    job: &Job,
    shared: &Shared,
) -> Result<Ended, Exception> {
    let request = &job.request;
    let prompt = &job.tokens;
    // Reuse what the cache holds of this prompt; at least the last token is computed, for
    // its logits.
    let reused = if request.cache_prompt {
        common_prefix(cache.tokens(), prompt).min(prompt.len() - 1)
    } else {
        0
    };
    cache.keep_prefix(reused);
    shared
        .cached_tokens
        .fetch_add(reused as u64, Ordering::Relaxed);

    let mut sampler = Sampler::new(request.sampling.clone(), prompt);
    let logprobs = request.logprobs;
    // Greedy with nothing to shape the logits: the argmax is taken by MLX, and the next
    // token's pass is queued before this one's text goes out (mlx-lm's pipelining).
    let on_device = !sampler.needs_logits() && logprobs.is_none();

    let last = prompt.len() - 1;
    for chunk in prompt[reused..last].chunks(PREFILL_CHUNK) {
        if job.cancel.is_cancelled() || shared.stop.load(Ordering::Acquire) {
            return stopped(job, shared);
        }
        model.forward(chunk, cache)?;
        eval(cache.arrays())?;
    }

    let room = context.saturating_sub(prompt.len() as u32);
    let limit = request.max_tokens.map_or(room, |m| m.min(room));
    let mut output = Output {
        job,
        utf8: Utf8Assembler::default(),
        stops: StopMatcher::new(request.stop.clone()),
    };
    let mut generated = 0u32;
    let mut next = prompt[last];
    let mut pending = if on_device {
        let y = greedy_on_device(&model.forward(&[next], cache)?)?;
        async_eval([&y])?;
        Some(y)
    } else {
        None
    };
    let (finish, stop_sequence) = loop {
        if job.cancel.is_cancelled() {
            return Ok(Ended::Cancelled);
        }
        if shared.stop.load(Ordering::Acquire) {
            return stopped(job, shared);
        }
        let token = match pending.take() {
            Some(y) => y
                .try_item_exact::<u32>()
                .map_err(|e| Exception::custom(e.to_string()))?,
            None => {
                let logits = model.forward(&[next], cache)?.as_dtype(Dtype::Float32)?;
                eval([&logits])?;
                let mut logits = logits.as_slice::<f32>().to_vec();
                let token = sampler.sample(&mut logits);
                if let Some(top) = logprobs {
                    let lp = log_softmax(&logits);
                    if output.send(token_logprob(text, &lp, token, top)).is_err() {
                        return Ok(Ended::Cancelled);
                    }
                }
                token
            }
        };
        sampler.accept(token);
        if text.eos_ids.contains(&token) {
            break (FinishReason::Stop, None);
        }
        generated += 1;
        shared.generated_tokens.fetch_add(1, Ordering::Relaxed);
        // Queue the next pass before this token's text goes out.
        if on_device && generated < limit {
            let y = greedy_on_device(&model.forward(&[token], cache)?)?;
            async_eval([&y])?;
            pending = Some(y);
        }
        next = token;
        match output.push(&text.token_bytes(token)) {
            Err(()) => return Ok(Ended::Cancelled),
            Ok(Some(matched)) => break (FinishReason::Stop, Some(matched)),
            Ok(None) => {}
        }
        if generated >= limit {
            break (FinishReason::Length, None);
        }
    };
    if stop_sequence.is_none() && output.flush().is_err() {
        return Ok(Ended::Cancelled);
    }
    let prompt_tokens = prompt.len() as u32;
    let usage = Usage {
        prompt_tokens,
        completion_tokens: generated,
        total_tokens: prompt_tokens + generated,
        cached_tokens: reused as u32,
    };
    // The footprint a client reads once it has its answer includes what this one grew.
    record_memory(cache, shared);
    let _ = output.send(GenerationEvent::Done {
        finish_reason: finish,
        usage,
        stop_sequence,
    });
    Ok(Ended::Finished)
}

/// What the KV buffers and MLX's allocator cache hold now, for the model's footprint.
fn record_memory(cache: &KvCache, shared: &Shared) {
    shared.kv.store(cache.nbytes(), Ordering::Relaxed);
    shared.compute.store(
        mlx_rs::memory::cache_memory().unwrap_or(0) as u64,
        Ordering::Relaxed,
    );
}

/// The generation ends because the model is unloading or the server stopping.
fn stopped(job: &Job, shared: &Shared) -> Result<Ended, Exception> {
    let _ = job
        .events
        .blocking_send(GenerationEvent::Failed(shared.stop_reason()));
    Ok(Ended::Cancelled)
}

/// The most likely token, as mlx-lm picks it: the argmax of the log-probabilities.
fn greedy_on_device(logits: &Array) -> Result<Array, Exception> {
    let lse = logits.logsumexp_axis(-1, true)?;
    argmax_axis(&logits.subtract(&lse)?, -1, None)
}

fn token_logprob(text: &TextFormat, logprobs: &[f32], token: u32, top: u8) -> GenerationEvent {
    let entry = |id: u32| TokenText::from_bytes(text.token_bytes(id));
    let mut order: Vec<u32> = (0..logprobs.len() as u32).collect();
    let n = usize::from(top).min(order.len());
    if n > 0 {
        order.select_nth_unstable_by(n - 1, |a, b| {
            logprobs[*b as usize].total_cmp(&logprobs[*a as usize])
        });
    }
    let mut best: Vec<u32> = order[..n].to_vec();
    best.sort_by(|a, b| logprobs[*b as usize].total_cmp(&logprobs[*a as usize]));
    GenerationEvent::Logprob(TokenLogprob {
        token: entry(token),
        logprob: logprobs
            .get(token as usize)
            .copied()
            .unwrap_or(f32::NEG_INFINITY),
        top: best
            .into_iter()
            .map(|id| (entry(id), logprobs[id as usize]))
            .collect(),
    })
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}
