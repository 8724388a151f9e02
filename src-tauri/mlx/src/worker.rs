//! The thread that owns a loaded MLX model and its KV cache, and serves its generations one
//! at a time, in the order they were queued.
//!
//! One sequence at a time: MLX's CPU backend computes one graph at a time, so batching the
//! active sequences would only interleave them (see docs/design.md, "The MLX engine").

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use mlx_rs::error::Exception;
use mlx_rs::ops::indexing::argmax_axis;
use mlx_rs::transforms::{async_eval, eval};
use mlx_rs::{Array, Dtype};
use tokio::sync::mpsc;

use headroom_core::engine::sampler::{log_softmax, Sampler};
use headroom_core::engine::saved::{ModelPrefixes, MIN_RESTORED_GAIN, MIN_SAVED_TOKENS};
use headroom_core::engine::stop::{StopMatcher, StopOutcome};
use headroom_core::engine::utf8::Utf8Assembler;
use headroom_core::engine::{
    CancelFlag, FinishReason, GenerateRequest, GenerationEvent, TokenLogprob, TokenText, Usage,
};

use crate::cache::{KvCache, Storage};
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
    /// How the KV cache stores keys and values.
    pub storage: Storage,
    /// Where this model's conversation is saved at unload and restored from.
    pub saved: Option<ModelPrefixes>,
}

/// Serves jobs until the queue closes, then lets the model's memory go.
pub(crate) fn run(setup: WorkerSetup) {
    let WorkerSetup {
        model,
        text,
        context,
        mut jobs,
        shared,
        storage,
        saved,
    } = setup;
    let c = model.config();
    let mut cache = KvCache::new(
        c.num_hidden_layers as usize,
        c.kv_heads(),
        c.head_dim(),
        storage,
    );
    while let Some(job) = jobs.blocking_recv() {
        shared.state.queued.fetch_sub(1, Ordering::Relaxed);
        if shared.state.is_stopping() {
            let _ = job
                .events
                .blocking_send(GenerationEvent::Failed(shared.state.stop_reason()));
            continue;
        }
        shared.state.active.fetch_add(1, Ordering::Relaxed);
        if job.request.cache_prompt {
            if let Some(saved) = &saved {
                restore(saved, &mut cache, &job.tokens);
            }
        }
        let outcome = serve(&model, &text, &mut cache, context, &job, &shared);
        shared.state.active.fetch_sub(1, Ordering::Relaxed);
        let counter = match outcome {
            Ok(Ended::Cancelled) => &shared.state.cancelled,
            Ok(Ended::Finished) => &shared.state.completed,
            Err(e) => {
                // The cache may hold half a pass; start the next request from nothing.
                cache.clear();
                let _ = job
                    .events
                    .blocking_send(GenerationEvent::Failed(format!("MLX failed: {e}")));
                &shared.state.completed
            }
        };
        counter.fetch_add(1, Ordering::Relaxed);
        record_memory(&cache, &shared);
    }
    if let Some(saved) = &saved {
        if shared.state.keeps_conversations() {
            save(saved, &cache);
        }
    }
    drop(cache);
    drop(model);
    // Freed arrays stay in MLX's allocator cache until cleared: give them back now, so the
    // unload's measurement sees the memory gone.
    let _ = mlx_rs::memory::clear_cache();
}

/// Reads into `cache` the saved conversation sharing the longest prefix with `prompt`, when it
/// spares clearly more than what the cache holds of it. A file MLX cannot read, or that does
/// not fit this model, is deleted.
fn restore(saved: &ModelPrefixes, cache: &mut KvCache, prompt: &[u32]) {
    let held = common_prefix(cache.tokens(), prompt);
    let tokens: Vec<i32> = prompt.iter().map(|&t| t as i32).collect();
    let Some((entry, n)) = saved.best(&tokens) else {
        return;
    };
    if n < held.saturating_add(MIN_RESTORED_GAIN) || !saved.verify(&entry) {
        return;
    }
    let started = std::time::Instant::now();
    let entry_tokens: Vec<u32> = entry.tokens.iter().map(|&t| t as u32).collect();
    let read = with_safetensors_name(&entry.state, |path| cache.restore(path, &entry_tokens));
    match read {
        Ok(()) => tracing::info!(
            tokens = entry_tokens.len(),
            ms = started.elapsed().as_millis() as u64,
            "restored a saved conversation"
        ),
        Err(e) => {
            tracing::warn!(file = %entry.state.display(), error = %e, "a saved conversation could not be restored; deleted");
            saved.discard(&entry);
        }
    }
}

/// Writes what the cache holds, for the model's next load (at unload; skipped when the model
/// unloads for want of memory, see `keep_conversations`).
fn save(saved: &ModelPrefixes, cache: &KvCache) {
    if cache.tokens().len() < MIN_SAVED_TOKENS {
        return;
    }
    let started = std::time::Instant::now();
    let tokens: Vec<i32> = cache.tokens().iter().map(|&t| t as i32).collect();
    let written = saved.save(&tokens, |path| {
        let named = path.with_extension("partial.safetensors");
        let result = cache
            .save(&named)
            .and_then(|()| std::fs::rename(&named, path).map_err(|e| e.to_string()));
        if result.is_err() {
            let _ = std::fs::remove_file(&named);
        }
        result
    });
    match written {
        Ok(bytes) => tracing::info!(
            tokens = tokens.len(),
            bytes,
            ms = started.elapsed().as_millis() as u64,
            "saved the conversation for the next load"
        ),
        Err(e) => tracing::warn!(error = %e, "could not save the conversation"),
    }
}

/// Runs `read` on the state file under a `.safetensors` name (a hard link beside it), the
/// only name mlx-rs reads safetensors from.
fn with_safetensors_name<T>(
    state: &Path,
    read: impl FnOnce(&Path) -> Result<T, String>,
) -> Result<T, String> {
    let named = state.with_extension("reading.safetensors");
    let _ = std::fs::remove_file(&named);
    std::fs::hard_link(state, &named).map_err(|e| e.to_string())?;
    let result = read(&named);
    let _ = std::fs::remove_file(&named);
    result
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
        .state
        .cached_tokens
        .fetch_add(reused as u64, Ordering::Relaxed);

    let mut sampler = Sampler::new(request.sampling.clone(), prompt);
    let logprobs = request.logprobs;
    // Greedy with nothing to shape the logits: the argmax is taken by MLX, and the next
    // token's pass is queued before this one's text goes out (mlx-lm's pipelining).
    let on_device = !sampler.needs_logits() && logprobs.is_none();

    let last = prompt.len() - 1;
    for chunk in prompt[reused..last].chunks(PREFILL_CHUNK) {
        if job.cancel.is_cancelled() || shared.state.is_stopping() {
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
        if shared.state.is_stopping() {
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
        shared
            .state
            .generated_tokens
            .fetch_add(1, Ordering::Relaxed);
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
        .blocking_send(GenerationEvent::Failed(shared.state.stop_reason()));
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
