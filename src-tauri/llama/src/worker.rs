//! The worker thread that owns a model's context and decodes every slot together.
//!
//! One loop, one batch per step: each generating slot contributes its last sampled token, each
//! slot still reading its prompt contributes a chunk of it, and a single `llama_decode` moves them
//! all forward. Requests beyond the slots wait in the job queue. Between two steps the loop
//! drops slots whose client went away, so a hang-up costs at most one more token.
//!
//! A slot's KV sequence outlives its generation: the worker remembers which tokens it holds,
//! and the next request goes to the free slot sharing the longest prefix with its prompt,
//! keeps that part of the cache and computes only the rest (llama-server's prompt cache). A
//! chat's next turn thus costs its new tokens, not the whole conversation again.

use std::sync::atomic::Ordering;
use std::time::Duration;

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use llama_cpp_2::token::logit_bias::LlamaLogitBias;
use llama_cpp_2::token::LlamaToken;
use tokio::sync::mpsc;

use crate::grammar::Grammar;
use crate::{Shared, BATCH_TOKENS};
use headroom_core::engine::saved::{
    ModelPrefixes, MIN_RESTORED_GAIN, MIN_SAVED_TOKENS, SAVE_BUDGET,
};
use headroom_core::engine::stop::{StopMatcher, StopOutcome};
use headroom_core::engine::utf8::Utf8Assembler;
use headroom_core::engine::{
    CancelFlag, Embeddings, EngineError, FinishReason, GenerateRequest, GenerationEvent,
    SamplingParams, Usage,
};
use headroom_core::memory::{process_memory, ProcessMemory};

/// The most events one step sends to one generation: a log-probability, text, a held-back
/// tail, done.
const EVENTS_PER_STEP: usize = 4;

/// What the worker is asked to do.
pub(super) enum Work {
    Generate(Box<Job>),
    Embed(EmbedJob),
}

/// Inputs to embed, each already tokenized and checked to fit one batch.
pub(super) struct EmbedJob {
    pub inputs: Vec<Vec<LlamaToken>>,
    pub reply: tokio::sync::oneshot::Sender<Result<Embeddings, EngineError>>,
}

/// A queued generation.
pub(super) struct Job {
    pub tokens: Vec<LlamaToken>,
    /// The request's constraint as a grammar, checked when it was queued.
    pub grammar: Option<Grammar>,
    pub request: GenerateRequest,
    pub events: mpsc::Sender<GenerationEvent>,
    pub cancel: CancelFlag,
}

pub(super) struct WorkerSetup<'m> {
    pub backend: &'static LlamaBackend,
    pub model: &'m LlamaModel,
    pub context_params: LlamaContextParams,
    pub slots: u32,
    pub context_per_slot: u32,
    /// Sliding-window attention's window (Gemma 3): such layers drop older positions, which
    /// limits what prefix of a sequence can be reused.
    pub sliding_window: Option<u32>,
    /// Where this model's conversations are saved at unload and restored from.
    pub saved: Option<ModelPrefixes>,
    pub jobs: mpsc::Receiver<Work>,
    pub shared: &'m Shared,
    /// Told once: what the context added to the process, or why it could not be made.
    pub ready: std::sync::mpsc::Sender<Result<ContextMemory, EngineError>>,
}

/// Runs until the model is unloaded (the job queue closes) or stopped.
pub(super) fn run(setup: WorkerSetup<'_>) {
    let WorkerSetup {
        backend,
        model,
        context_params,
        slots,
        context_per_slot,
        sliding_window,
        saved,
        mut jobs,
        shared,
        ready,
    } = setup;

    let before = process_memory();
    let mut ctx = match model.new_context(backend, context_params) {
        Ok(ctx) => ctx,
        Err(e) => {
            let _ = ready.send(Err(EngineError::Internal(format!(
                "llama.cpp could not create a context of {} tokens × {slots} slots ({e}); lower the context size",
                context_per_slot
            ))));
            return;
        }
    };
    // llama.cpp clears the KV cache when it creates it, so its pages are resident now.
    let with_kv = process_memory();
    let warmup_started = std::time::Instant::now();
    if let Err(e) = warm_up(model, &mut ctx) {
        let _ = ready.send(Err(e));
        return;
    }
    let warmed = process_memory();
    let anon_delta = |a: Option<ProcessMemory>, b: Option<ProcessMemory>| match (a, b) {
        (Some(a), Some(b)) => b.anon.saturating_sub(a.anon),
        _ => 0,
    };
    let measured = ContextMemory {
        kv: anon_delta(before, with_kv),
        compute: anon_delta(with_kv, warmed),
    };
    tracing::debug!(
        ?measured,
        warmup_ms = warmup_started.elapsed().as_millis() as u64,
        "context measured"
    );
    if ready.send(Ok(measured)).is_err() {
        return;
    }

    let mut worker = Worker {
        model,
        ctx,
        batch: LlamaBatch::new(BATCH_TOKENS as usize, 1),
        slots: (0..slots).map(|_| None).collect(),
        kept: (0..slots).map(|_| None).collect(),
        uses: 0,
        context_per_slot,
        sliding_window,
        saved,
        shared,
        largest_batch: WARM_UP_TOKENS,
    };
    worker.serve(&mut jobs);
    worker.save_conversations();
}

/// What creating and warming up a context added to the process's anonymous memory.
#[derive(Debug, Clone, Copy)]
pub(super) struct ContextMemory {
    /// Across context creation: the KV cache (llama.cpp zeroes it, so it is all resident).
    pub kv: u64,
    /// Across the warm-up decode: the compute buffers a single-token step touches.
    pub compute: u64,
}

/// Tokens the warm-up decodes: as llama.cpp's own tools do, one, which is cheap (a few ms) and
/// still runs every layer.
const WARM_UP_TOKENS: usize = 1;

/// Decodes a token in sequence 0 and forgets it.
///
/// This reads every weight page in (the first request does not pay for that) and makes the
/// compute buffers a single-token step uses resident, so both can be measured at load.
/// llama.cpp reserves its compute buffers for the largest batch, but their pages become
/// resident only as larger batches use them; the worker counts that growth as it happens.
fn warm_up(model: &LlamaModel, ctx: &mut LlamaContext<'_>) -> Result<(), EngineError> {
    let mut batch = LlamaBatch::new(WARM_UP_TOKENS, 1);
    // Any valid token does; a model without a BOS token reports -1 for it.
    let bos = model.vocab().bos();
    let token = if bos.0 >= 0 { bos } else { LlamaToken(0) };
    batch
        .add(token, 0, &[0], true)
        .map_err(|e| EngineError::Internal(format!("warm-up batch: {e}")))?;
    ctx.decode(&mut batch)
        .map_err(|e| EngineError::Internal(format!("warm-up decode failed: {e}")))?;
    ctx.clear_kv_cache_seq(Some(0), None, None)
        .map_err(|e| EngineError::Internal(format!("warm-up cleanup failed: {e}")))?;
    Ok(())
}

/// A generation occupying one KV sequence.
struct Slot {
    job: Job,
    picker: Picker,
    /// Prompt tokens already decoded (or reused from the cache).
    prompt_done: usize,
    /// Prompt tokens reused from what the sequence held.
    cached: usize,
    /// Generated tokens decoded into the sequence, in order (the last sampled one is not yet).
    fed: Vec<LlamaToken>,
    /// Next position in this sequence.
    pos: i32,
    /// The token sampled last, to be decoded next.
    last: Option<LlamaToken>,
    generated: u32,
    /// Index in the current batch whose logits belong to this slot.
    logits_at: Option<i32>,
    text: Utf8Assembler,
    stop: StopMatcher,
    /// The stop string that matched, once one has.
    stopped_by: Option<String>,
}

impl Slot {
    /// A slot whose sequence already holds the first `cached` tokens of the job's prompt.
    fn new(
        job: Job,
        grammar: Option<LlamaSampler>,
        n_vocab: i32,
        context: u32,
        cached: usize,
    ) -> Self {
        let picker = Picker::for_request(&job.request.sampling, grammar, n_vocab, context);
        let stop = StopMatcher::new(job.request.stop.clone());
        Self {
            job,
            picker,
            prompt_done: cached,
            cached,
            fed: Vec::new(),
            pos: i32::try_from(cached).unwrap_or(i32::MAX),
            last: None,
            generated: 0,
            logits_at: None,
            text: Utf8Assembler::default(),
            stop,
            stopped_by: None,
        }
    }

    fn usage(&self) -> Usage {
        let prompt_tokens = u32::try_from(self.job.tokens.len()).unwrap_or(u32::MAX);
        Usage {
            prompt_tokens,
            completion_tokens: self.generated,
            total_tokens: prompt_tokens.saturating_add(self.generated),
            cached_tokens: u32::try_from(self.cached).unwrap_or(u32::MAX),
        }
    }

    fn gone(&self) -> bool {
        self.job.cancel.is_cancelled() || self.job.events.is_closed()
    }

    /// The tokens its sequence holds: the prompt read so far and the generated tokens fed
    /// back, `None` if that does not add up to its position (then nothing is reused).
    fn held(self) -> Option<Vec<LlamaToken>> {
        let mut tokens = self.job.tokens;
        tokens.truncate(self.prompt_done);
        tokens.extend(self.fed);
        (i32::try_from(tokens.len()).ok() == Some(self.pos)).then_some(tokens)
    }
}

/// What restoring a saved conversation came to.
enum Restored {
    Tokens(usize),
    Failed,
    NotTried,
}

/// What a free slot's KV sequence still holds from its last generation.
struct Kept {
    tokens: Vec<LlamaToken>,
    /// When it was last used (the worker's use counter): the least recent is given up first.
    used: u64,
}

/// The length of the common prefix of two token lists.
fn common_prefix(a: &[LlamaToken], b: &[LlamaToken]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Which free slot a prompt goes to, and how many of its tokens that slot's sequence shares.
///
/// The slot sharing the longest prefix, when most of what it holds is that prefix (a chat's
/// next turn): nothing of value is overwritten. Otherwise another conversation would be pushed
/// out for a few shared tokens (a chat template's opening), so an empty slot is taken, else
/// the least recently used. With `reuse` off, the prefix is not looked at.
fn choose_slot(
    free: &[(usize, Option<&Kept>)],
    prompt: &[LlamaToken],
    reuse: bool,
) -> Option<(usize, usize)> {
    let shared = |kept: Option<&Kept>| match kept {
        Some(k) if reuse => common_prefix(&k.tokens, prompt),
        _ => 0,
    };
    let best = free
        .iter()
        .map(|&(i, kept)| (i, shared(kept), kept.map_or(0, |k| k.tokens.len())))
        .max_by_key(|&(i, n, _)| (n, std::cmp::Reverse(i)));
    if let Some((i, n, held)) = best {
        if n > 0 && n * 2 >= held {
            return Some((i, n));
        }
    }
    free.iter()
        .min_by_key(|(i, kept)| (kept.map_or(0, |k| k.used + 1), *i))
        .map(|&(i, kept)| (i, shared(kept)))
}

/// How much of a prefix of `shared` tokens a sequence can keep. At least one prompt token is
/// always computed (its logits pick the first token). Sliding-window layers keep only their
/// window: the reused prefix must still have its last `window` positions there, as
/// llama-server checks; `pos_min` is the oldest position the sequence holds.
fn reusable(shared: usize, prompt: usize, window: Option<u32>, pos_min: i32) -> usize {
    let keep = shared.min(prompt.saturating_sub(1));
    // Without a known window, only a sequence that still holds position 0 is trusted.
    let needed_from = window.map_or(0, |w| keep.saturating_sub(w as usize));
    if keep == 0 || usize::try_from(pos_min).unwrap_or(0) > needed_from {
        return 0;
    }
    keep
}

/// How a slot picks its next token from the logits of its last step.
enum Picker {
    /// The most likely token, read straight from the logits. llama.cpp's greedy sampler picks
    /// the same token, but only after copying every logit into a candidate array (12 bytes per
    /// vocabulary entry: 3 MB for Gemma's 262k) and scanning that; with several slots that is
    /// several arrays per step, made on this thread while the other compute threads wait for
    /// the next decode.
    Greedy,
    /// llama.cpp's samplers. Always a chain, even of one: `llama_sampler_sample` keeps the
    /// candidate array in a chain and reuses it, while a lone sampler gets a new one for every
    /// token, which with the mmap threshold pinned at 1 MiB
    /// (`memory::keep_large_blocks_returnable`) is a fresh mapping and its page faults.
    Chain(LlamaSampler),
    /// A grammar (structured output, tool calls) beside the greedy pick (`chain` None) or the
    /// chain. Applying a grammar to every candidate costs a walk of its parse stacks per
    /// vocabulary entry per token: 12× slower generation for Gemma 3's 262k tokens, measured.
    /// So, as llama.cpp's common sampler does, the token is picked without the grammar and only
    /// checked against it; only when the grammar rejects it is the pick made again over the
    /// candidates the grammar allows.
    Constrained {
        grammar: LlamaSampler,
        chain: Option<LlamaSampler>,
    },
}

impl Picker {
    /// llama-server's order: penalties, logit biases, then top-k, typical, top-p, min-p,
    /// temperature and the draw (or the greedy pick at temperature 0). A sampler at its
    /// neutral value is left out of the chain. A grammar stands beside them (see `Constrained`).
    fn for_request(
        params: &SamplingParams,
        grammar: Option<LlamaSampler>,
        n_vocab: i32,
        context: u32,
    ) -> Self {
        let picker = Self::unconstrained(params, n_vocab, context);
        match (grammar, picker) {
            (None, picker) => picker,
            (Some(grammar), Self::Chain(chain)) => Self::Constrained {
                grammar,
                chain: Some(chain),
            },
            (Some(grammar), _) => Self::Constrained {
                grammar,
                chain: None,
            },
        }
    }

    fn unconstrained(params: &SamplingParams, n_vocab: i32, context: u32) -> Self {
        if params.is_greedy() && !params.shapes_logits() {
            return Self::Greedy;
        }
        let mut chain = Vec::new();
        if params.repeat_penalty != 1.0
            || params.frequency_penalty != 0.0
            || params.presence_penalty != 0.0
        {
            let last_n = i32::try_from(params.repeat_last_n.min(context)).unwrap_or(i32::MAX);
            chain.push(LlamaSampler::penalties(
                n_vocab,
                last_n,
                params.repeat_penalty,
                params.frequency_penalty,
                params.presence_penalty,
            ));
        }
        if !params.logit_bias.is_empty() {
            let biases: Vec<LlamaLogitBias> = params
                .logit_bias
                .iter()
                .map(|&(token, bias)| LlamaLogitBias::new(LlamaToken(token), bias))
                .collect();
            chain.push(LlamaSampler::logit_bias(n_vocab, &biases));
        }
        if params.is_greedy() {
            chain.push(LlamaSampler::greedy());
            return Self::Chain(LlamaSampler::chain_simple(chain));
        }
        if params.top_k > 0 {
            chain.push(LlamaSampler::top_k(
                i32::try_from(params.top_k).unwrap_or(i32::MAX),
            ));
        }
        if params.typical_p < 1.0 {
            chain.push(LlamaSampler::typical(params.typical_p, 1));
        }
        if params.top_p < 1.0 {
            chain.push(LlamaSampler::top_p(params.top_p.max(0.0), 1));
        }
        if params.min_p > 0.0 {
            chain.push(LlamaSampler::min_p(params.min_p, 1));
        }
        chain.push(LlamaSampler::temp(params.temperature));
        chain.push(LlamaSampler::dist(params.seed));
        Self::Chain(LlamaSampler::chain_simple(chain))
    }

    fn pick(&mut self, ctx: &LlamaContext<'_>, at: i32) -> LlamaToken {
        match self {
            Self::Greedy => LlamaToken(most_likely(ctx.get_logits_ith(at))),
            Self::Chain(sampler) => sampler.sample(ctx, at),
            Self::Constrained { grammar, chain } => {
                let logits = ctx.get_logits_ith(at);
                // Greedy reads the logits straight, as the unconstrained fast path does: no
                // candidate array per token.
                let first = match chain.as_mut() {
                    Some(chain) => pick_from(Some(chain), candidates(logits)),
                    None => LlamaToken(most_likely(logits)),
                };
                let token = if allows(grammar, first, logits) {
                    first
                } else {
                    let mut allowed = candidates(logits);
                    grammar.apply(&mut allowed);
                    pick_from(chain.as_mut(), allowed)
                };
                // Both learn the token only now: the first pick may have been thrown away.
                grammar.accept(token);
                if let Some(chain) = chain {
                    chain.accept(token);
                }
                token
            }
        }
    }
}

/// Every vocabulary entry with its logit.
fn candidates(logits: &[f32]) -> LlamaTokenDataArray {
    LlamaTokenDataArray::from_iter(
        logits.iter().enumerate().map(|(i, &logit)| {
            LlamaTokenData::new(LlamaToken(i32::try_from(i).unwrap_or(i32::MAX)), logit, 0.0)
        }),
        false,
    )
}

/// The chain's pick among `candidates` (it selects without learning the token), or the most
/// likely of them.
fn pick_from(chain: Option<&mut LlamaSampler>, mut candidates: LlamaTokenDataArray) -> LlamaToken {
    if let Some(chain) = chain {
        chain.apply(&mut candidates);
        if let Some(token) = candidates.selected_token() {
            return token;
        }
    }
    // The first of the largest, as `most_likely` picks, without copying the logits out.
    let mut best = (candidates.data.first(), f32::NEG_INFINITY);
    for candidate in &candidates.data {
        if candidate.logit() > best.1 {
            best = (Some(candidate), candidate.logit());
        }
    }
    best.0.map_or(LlamaToken(0), LlamaTokenData::id)
}

/// Whether the grammar lets `token` come next: applied to that one candidate, it leaves its
/// logit finite.
fn allows(grammar: &mut LlamaSampler, token: LlamaToken, logits: &[f32]) -> bool {
    let logit = usize::try_from(token.0)
        .ok()
        .and_then(|i| logits.get(i))
        .copied()
        .unwrap_or(f32::NEG_INFINITY);
    let mut one = LlamaTokenDataArray::new(vec![LlamaTokenData::new(token, logit, 0.0)], false);
    grammar.apply(&mut one);
    one.data.first().is_some_and(|d| d.logit().is_finite())
}

/// The index of the largest logit; the first of equals, as llama.cpp's greedy sampler has it.
fn most_likely(logits: &[f32]) -> i32 {
    let mut best = (0, f32::NEG_INFINITY);
    for (i, &logit) in logits.iter().enumerate() {
        if logit > best.1 {
            best = (i, logit);
        }
    }
    i32::try_from(best.0).unwrap_or(0)
}

struct Worker<'m> {
    model: &'m LlamaModel,
    ctx: LlamaContext<'m>,
    batch: LlamaBatch<'static>,
    slots: Vec<Option<Slot>>,
    /// Per slot, while it is free: what its sequence holds, for the next prompt to reuse.
    kept: Vec<Option<Kept>>,
    /// Counts admissions, to date `Kept::used`.
    uses: u64,
    context_per_slot: u32,
    sliding_window: Option<u32>,
    saved: Option<ModelPrefixes>,
    shared: &'m Shared,
    /// Tokens in the largest batch decoded so far (the warm-up's is 1).
    largest_batch: usize,
}

/// How a slot ends.
enum End {
    Finished(FinishReason),
    Failed(String),
    Cancelled,
}

impl Worker<'_> {
    fn serve(&mut self, jobs: &mut mpsc::Receiver<Work>) {
        loop {
            if self.shared.state.is_stopping() {
                let why = self.shared.state.stop_reason();
                self.end_all(&why);
                jobs.close();
                while let Ok(work) = jobs.try_recv() {
                    self.shared.state.queued.fetch_sub(1, Ordering::Relaxed);
                    match work {
                        Work::Generate(job) => {
                            let _ = job.events.try_send(GenerationEvent::Failed(why.clone()));
                        }
                        Work::Embed(job) => {
                            let _ = job.reply.send(Err(EngineError::Internal(why.clone())));
                        }
                    }
                }
                return;
            }
            if !self.admit(jobs) {
                return;
            }
            self.drop_abandoned();
            if self.fill_batch() {
                self.step();
            } else if self.slots.iter().any(Option::is_some) {
                // Every busy slot waits for its client to read; do not spin.
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }

    /// Moves queued jobs into free slots. Blocks while there is nothing at all to do. Returns
    /// false when the queue is closed and every slot is idle: time to exit.
    fn admit(&mut self, jobs: &mut mpsc::Receiver<Work>) -> bool {
        while self.slots.iter().any(Option::is_none) {
            let idle = self.slots.iter().all(Option::is_none);
            let work = if idle {
                match jobs.blocking_recv() {
                    Some(work) => work,
                    None => return false,
                }
            } else {
                match jobs.try_recv() {
                    Ok(work) => work,
                    Err(_) => break,
                }
            };
            self.shared.state.queued.fetch_sub(1, Ordering::Relaxed);
            let job = match work {
                Work::Generate(job) => *job,
                Work::Embed(job) => {
                    // An embedding model generates nothing, so no slot waits meanwhile.
                    let result = self.embed(&job.inputs);
                    self.shared.state.completed.fetch_add(1, Ordering::Relaxed);
                    let _ = job.reply.send(result);
                    continue;
                }
            };
            if job.cancel.is_cancelled() || job.events.is_closed() {
                self.shared.state.cancelled.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            // Checked when the job was queued, so this fails only if llama.cpp does.
            let grammar = match job.grammar.as_ref().map(|g| g.sampler(self.model)) {
                Some(Err(e)) => {
                    self.shared.state.completed.fetch_add(1, Ordering::Relaxed);
                    let _ = job.events.try_send(GenerationEvent::Failed(e.to_string()));
                    continue;
                }
                Some(Ok(sampler)) => Some(sampler),
                None => None,
            };
            let Some((free, cached)) = self.claim_slot(&job.tokens, job.request.cache_prompt)
            else {
                break;
            };
            self.shared.state.active.fetch_add(1, Ordering::Relaxed);
            self.shared
                .state
                .cached_tokens
                .fetch_add(cached as u64, Ordering::Relaxed);
            let n_vocab = self.model.n_vocab();
            self.slots[free] = Some(Slot::new(
                job,
                grammar,
                n_vocab,
                self.context_per_slot,
                cached,
            ));
        }
        true
    }

    /// Takes a free slot for `prompt` and readies its sequence: keeps the longest prefix it
    /// can reuse (when `reuse`) and removes the rest. Returns the slot and how many prompt
    /// tokens its sequence already holds.
    fn claim_slot(&mut self, prompt: &[LlamaToken], reuse: bool) -> Option<(usize, usize)> {
        let free: Vec<(usize, Option<&Kept>)> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, slot)| slot.is_none())
            .map(|(i, _)| (i, self.kept[i].as_ref()))
            .collect();
        let (i, shared) = choose_slot(&free, prompt, reuse)?;
        self.uses += 1;
        self.kept[i] = None;
        if reuse {
            match self.restore(i, prompt, shared) {
                Restored::Tokens(keep) => return Some((i, keep)),
                // The sequence was cleared for it.
                Restored::Failed => return Some((i, 0)),
                Restored::NotTried => {}
            }
        }
        if let Some(keep) = self.keep_prefix(i, shared, prompt.len()) {
            return Some((i, keep));
        }
        if let Err(e) = self.ctx.clear_kv_cache_seq(Some(i as u32), None, None) {
            tracing::warn!(error = %e, slot = i, "could not clear a KV sequence");
        }
        Some((i, 0))
    }

    /// Cuts sequence `i`, which shares `shared` tokens with a prompt of `prompt` tokens, down
    /// to the prefix it can reuse. Returns that prefix's length, or `None` (the sequence then
    /// holds what it held, to be cleared).
    fn keep_prefix(&mut self, i: usize, shared: usize, prompt: usize) -> Option<usize> {
        let pos_min = self.ctx.kv_cache_seq_pos_min(i as i32);
        let keep = reusable(shared, prompt, self.sliding_window, pos_min);
        let cut = self
            .ctx
            .clear_kv_cache_seq(Some(i as u32), u32::try_from(keep).ok(), None);
        (keep > 0 && matches!(cut, Ok(true))).then_some(keep)
    }

    /// Restores into sequence `i` the saved conversation sharing the longest prefix with
    /// `prompt`, if it shares clearly more than the `shared` tokens the sequence holds.
    fn restore(&mut self, i: usize, prompt: &[LlamaToken], shared: usize) -> Restored {
        // A copy of the folder's handle (two paths), so the context can be borrowed meanwhile.
        let Some(saved) = self.saved.clone() else {
            return Restored::NotTried;
        };
        let tokens: Vec<i32> = prompt.iter().map(|t| t.0).collect();
        let Some((entry, n)) = saved.best(&tokens) else {
            return Restored::NotTried;
        };
        if n < shared.saturating_add(MIN_RESTORED_GAIN) || !saved.verify(&entry) {
            return Restored::NotTried;
        }
        let started = std::time::Instant::now();
        let seq = i as i32;
        let _ = self.ctx.clear_kv_cache_seq(Some(i as u32), None, None);
        let capacity = self.context_per_slot as usize;
        let loaded = self.ctx.state_seq_load_file(&entry.state, seq, capacity);
        let matches = loaded
            .as_ref()
            .is_ok_and(|(got, _)| got.iter().map(|t| t.0).eq(entry.tokens.iter().copied()));
        if matches {
            if let Some(keep) = self.keep_prefix(i, n, prompt.len()) {
                tracing::info!(
                    slot = i,
                    tokens = keep,
                    ms = started.elapsed().as_millis() as u64,
                    "restored a saved conversation"
                );
                return Restored::Tokens(keep);
            }
        } else {
            tracing::warn!(file = %entry.state.display(), error = ?loaded.err(), "a saved conversation could not be restored; deleted");
            saved.discard(&entry);
        }
        let _ = self.ctx.clear_kv_cache_seq(Some(i as u32), None, None);
        Restored::Failed
    }

    /// Writes what the free slots' sequences hold, for the model's next load. Skipped when the
    /// model unloads for want of memory (or its file changed), and cut short after
    /// [`SAVE_BUDGET`]: the unload waits for it.
    fn save_conversations(&mut self) {
        let Some(saved) = self.saved.as_ref() else {
            return;
        };
        if !self.shared.state.keeps_conversations() {
            return;
        }
        let started = std::time::Instant::now();
        let (mut count, mut bytes) = (0, 0);
        for (i, kept) in self.kept.iter().enumerate() {
            let Some(kept) = kept else { continue };
            if kept.tokens.len() < MIN_SAVED_TOKENS || started.elapsed() > SAVE_BUDGET {
                continue;
            }
            let tokens: Vec<i32> = kept.tokens.iter().map(|t| t.0).collect();
            let ctx = &self.ctx;
            let written = saved.save(&tokens, |path| {
                ctx.state_seq_save_file(path, i as i32, &kept.tokens)
                    .map(drop)
                    .map_err(|e| e.to_string())
            });
            match written {
                Ok(n) => {
                    count += 1;
                    bytes += n;
                }
                Err(e) => tracing::warn!(error = %e, slot = i, "could not save a conversation"),
            }
        }
        if count > 0 {
            tracing::info!(
                count,
                bytes,
                ms = started.elapsed().as_millis() as u64,
                "saved conversations for the next load"
            );
        }
    }

    fn drop_abandoned(&mut self) {
        for i in 0..self.slots.len() {
            if self.slots[i].as_ref().is_some_and(Slot::gone) {
                self.end(i, End::Cancelled);
            }
        }
    }

    /// Puts one step's tokens in the batch. Returns false if there are none.
    fn fill_batch(&mut self) -> bool {
        self.batch.clear();
        let capacity = BATCH_TOKENS as usize;
        let mut failed = Vec::new();
        // Generating slots first: one token each keeps every stream moving.
        for (i, slot) in self.slots.iter_mut().enumerate() {
            let Some(slot) = slot else { continue };
            slot.logits_at = None;
            let Some(token) = slot.last else { continue };
            // A client that does not read pauses its own slot, not everyone's. A step sends at
            // most EVENTS_PER_STEP events, so they always fit.
            if slot.job.events.capacity() < EVENTS_PER_STEP {
                continue;
            }
            let at = self.batch.n_tokens();
            if let Err(e) = self.batch.add(token, slot.pos, &[i as i32], true) {
                failed.push((i, e.to_string()));
                continue;
            }
            slot.logits_at = Some(at);
            slot.fed.push(token);
            slot.pos += 1;
        }
        // Then prompt chunks, as much as the batch holds.
        for (i, slot) in self.slots.iter_mut().enumerate() {
            let Some(slot) = slot else { continue };
            if slot.last.is_some() {
                continue;
            }
            let room = capacity.saturating_sub(self.batch.n_tokens() as usize);
            if room == 0 {
                break;
            }
            let rest = &slot.job.tokens[slot.prompt_done..];
            let chunk = rest.len().min(room);
            for (k, token) in rest[..chunk].iter().enumerate() {
                let last_of_prompt = slot.prompt_done + k + 1 == slot.job.tokens.len();
                if let Err(e) = self
                    .batch
                    .add(*token, slot.pos, &[i as i32], last_of_prompt)
                {
                    failed.push((i, e.to_string()));
                    break;
                }
                slot.pos += 1;
                if last_of_prompt {
                    slot.logits_at = Some(self.batch.n_tokens() - 1);
                }
            }
            slot.prompt_done += chunk;
        }
        for (i, reason) in failed {
            self.end(i, End::Failed(format!("batch error: {reason}")));
        }
        self.batch.n_tokens() > 0
    }

    fn step(&mut self) {
        // The compute buffers' pages become resident as larger batches first use them; count
        // that growth so the footprint stays what the model really holds. Only a batch larger
        // than any before can grow them, so this reads /proc only a few times per model.
        let tokens = usize::try_from(self.batch.n_tokens()).unwrap_or(0);
        // While another model loads (and measures), skip: generation must not wait for a load,
        // and the next large batch measures instead.
        let measuring = (tokens > self.largest_batch)
            .then(super::try_measuring)
            .flatten();
        let before = measuring.as_ref().and_then(|_| process_memory());
        let decoded = self.ctx.decode(&mut self.batch);
        if let (Some(before), Some(after)) = (before, process_memory()) {
            self.largest_batch = tokens;
            let grown = after.anon.saturating_sub(before.anon);
            self.shared.compute.fetch_add(grown, Ordering::Relaxed);
        }
        drop(measuring);
        if let Err(e) = decoded {
            tracing::error!(error = %e, "llama_decode failed");
            for i in 0..self.slots.len() {
                if self.slots[i].is_some() {
                    self.end(i, End::Failed(format!("decoding failed: {e}")));
                }
            }
            return;
        }
        for i in 0..self.slots.len() {
            if let Some(end) = self.sample(i) {
                self.end(i, end);
            }
        }
    }

    /// Samples slot `i`'s next token if this step computed logits for it.
    fn sample(&mut self, i: usize) -> Option<End> {
        let model = self.model;
        let per_slot = self.context_per_slot;
        let slot = self.slots[i].as_mut()?;
        let at = slot.logits_at.take()?;
        let token = slot.picker.pick(&self.ctx, at);
        self.shared
            .state
            .generated_tokens
            .fetch_add(1, Ordering::Relaxed);
        if model.vocab().is_eog(token) {
            return Some(End::Finished(FinishReason::Stop));
        }
        if let Some(top) = slot.job.request.logprobs {
            let logprob = crate::logprobs::of(model, self.ctx.get_logits_ith(at), token, top);
            // Room was reserved (EVENTS_PER_STEP).
            let _ = slot.job.events.try_send(GenerationEvent::Logprob(logprob));
        }
        slot.generated += 1;
        slot.last = Some(token);
        let bytes = model.vocab().token_to_piece(token, false, None);
        let text = slot.text.push(&bytes);
        match slot.stop.push(&text) {
            StopOutcome::Stopped { text, matched } => {
                send_text(slot, text);
                slot.stopped_by = Some(matched);
                // Whatever follows the stop string is not part of the answer.
                slot.text.finish();
                return Some(End::Finished(FinishReason::Stop));
            }
            StopOutcome::Continue(text) => send_text(slot, text),
        }
        let out_of_tokens = slot
            .job
            .request
            .max_tokens
            .is_some_and(|max| slot.generated >= max);
        // The sampled token still needs a cell to be decoded into.
        let out_of_context = u32::try_from(slot.pos).unwrap_or(u32::MAX) >= per_slot;
        if out_of_tokens || out_of_context {
            return Some(End::Finished(FinishReason::Length));
        }
        None
    }

    fn end(&mut self, i: usize, end: End) {
        let Some(mut slot) = self.slots[i].take() else {
            return;
        };
        self.shared.state.active.fetch_sub(1, Ordering::Relaxed);
        let event = match end {
            End::Cancelled => {
                self.shared.state.cancelled.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(slot = i, generated = slot.generated, "generation cancelled");
                None
            }
            End::Finished(finish_reason) => {
                let mut tail = slot.text.finish();
                tail.push_str(&slot.stop.finish());
                if !tail.is_empty() {
                    send_text(&mut slot, tail);
                }
                Some(GenerationEvent::Done {
                    finish_reason,
                    usage: slot.usage(),
                    stop_sequence: slot.stopped_by.take(),
                })
            }
            End::Failed(message) => Some(GenerationEvent::Failed(message)),
        };
        let failed = matches!(event, Some(GenerationEvent::Failed(_)));
        if let Some(event) = event {
            self.shared.state.completed.fetch_add(1, Ordering::Relaxed);
            // Room was reserved when the slot was scheduled (EVENTS_PER_STEP).
            let _ = slot.job.events.try_send(event);
        }
        // The sequence stays as it is for the next prompt that shares a prefix with it, unless
        // its last decode failed (then what it holds is unknown).
        self.kept[i] = match (failed, slot.held()) {
            (false, Some(tokens)) => Some(Kept {
                tokens,
                used: self.uses,
            }),
            _ => {
                if let Err(e) = self.ctx.clear_kv_cache_seq(Some(i as u32), None, None) {
                    tracing::warn!(error = %e, slot = i, "could not clear a KV sequence");
                }
                None
            }
        };
    }

    /// Each input in sequence 0, one batch each; the pooled vector llama.cpp computes for the
    /// sequence is its embedding.
    fn embed(&mut self, inputs: &[Vec<LlamaToken>]) -> Result<Embeddings, EngineError> {
        let mut vectors = Vec::with_capacity(inputs.len());
        let mut prompt_tokens = 0u32;
        for tokens in inputs {
            self.batch.clear();
            for (pos, token) in tokens.iter().enumerate() {
                let pos = i32::try_from(pos).unwrap_or(i32::MAX);
                self.batch
                    .add(*token, pos, &[0], true)
                    .map_err(|e| EngineError::Internal(format!("embedding batch: {e}")))?;
            }
            let decoded = self.ctx.decode(&mut self.batch);
            let vector = decoded
                .map_err(|e| EngineError::Internal(format!("embedding failed: {e}")))
                .and_then(|()| {
                    self.ctx
                        .embeddings_seq_ith(0)
                        .map(<[f32]>::to_vec)
                        .map_err(|e| EngineError::Internal(format!("no pooled embedding: {e}")))
                });
            if let Err(e) = self.ctx.clear_kv_cache_seq(Some(0), None, None) {
                tracing::warn!(error = %e, "could not clear the embedding sequence");
            }
            vectors.push(vector?);
            prompt_tokens =
                prompt_tokens.saturating_add(u32::try_from(tokens.len()).unwrap_or(u32::MAX));
        }
        Ok(Embeddings {
            vectors,
            prompt_tokens,
        })
    }

    fn end_all(&mut self, why: &str) {
        for i in 0..self.slots.len() {
            if self.slots[i].is_some() {
                self.end(i, End::Failed(why.to_string()));
            }
        }
    }
}

fn send_text(slot: &mut Slot, text: String) {
    if text.is_empty() {
        return;
    }
    // The slot is only scheduled while its channel has room (EVENTS_PER_STEP), so this fits;
    // a client that vanished in between is noticed before the next step.
    let _ = slot.job.events.try_send(GenerationEvent::Text(text));
}

#[cfg(test)]
mod tests {
    use super::{choose_slot, most_likely, reusable, Kept};
    use llama_cpp_2::token::LlamaToken;

    fn kept(tokens: &[i32], used: u64) -> Kept {
        Kept {
            tokens: tokens.iter().map(|&t| LlamaToken(t)).collect(),
            used,
        }
    }

    fn prompt(tokens: &[i32]) -> Vec<LlamaToken> {
        tokens.iter().map(|&t| LlamaToken(t)).collect()
    }

    #[test]
    fn a_prompt_goes_to_the_slot_holding_its_longest_prefix() {
        let (a, b) = (kept(&[1, 2, 3], 5), kept(&[1, 2, 3, 4, 5], 1));
        let free = [(0, Some(&a)), (1, Some(&b)), (2, None)];
        assert_eq!(
            choose_slot(&free, &prompt(&[1, 2, 3, 4, 9]), true),
            Some((1, 4))
        );
        assert_eq!(choose_slot(&free, &prompt(&[1, 2, 7]), true), Some((0, 2)));
        // With reuse off, the empty slot, and nothing counted as shared.
        assert_eq!(
            choose_slot(&free, &prompt(&[1, 2, 3, 4, 9]), false),
            Some((2, 0))
        );
    }

    #[test]
    fn a_few_shared_tokens_do_not_push_another_conversation_out() {
        // Slot 0 holds a long conversation that shares only its first two tokens.
        let long = kept(&[1, 2, 3, 4, 5, 6, 7, 8], 5);
        let older = kept(&[9, 9], 2);
        assert_eq!(
            choose_slot(&[(0, Some(&long)), (1, None)], &prompt(&[1, 2, 9]), true),
            Some((1, 0))
        );
        // No empty slot: the least recently used goes, still reusing what it shares.
        assert_eq!(
            choose_slot(
                &[(0, Some(&long)), (1, Some(&older))],
                &prompt(&[1, 2, 9]),
                true
            ),
            Some((1, 0))
        );
        let old_long = kept(&[1, 2, 3, 4, 5, 6, 7, 8], 1);
        let recent = kept(&[9, 9], 6);
        assert_eq!(
            choose_slot(
                &[(0, Some(&old_long)), (1, Some(&recent))],
                &prompt(&[1, 2, 9]),
                true
            ),
            Some((0, 2))
        );
        assert_eq!(choose_slot(&[], &prompt(&[9]), true), None);
    }

    #[test]
    fn one_prompt_token_is_always_computed_and_a_sliding_window_limits_reuse() {
        // The whole prompt cached: its last token is computed again for its logits.
        assert_eq!(reusable(10, 10, None, 0), 9);
        assert_eq!(reusable(4, 10, None, 0), 4);
        assert_eq!(reusable(0, 10, None, 0), 0);
        // Window 512: keeping 1000 positions needs 488.. still there.
        assert_eq!(reusable(1000, 2000, Some(512), 400), 1000);
        assert_eq!(reusable(1000, 2000, Some(512), 600), 0);
        // Short of the window, the sequence must still start at 0.
        assert_eq!(reusable(300, 2000, Some(512), 0), 300);
        assert_eq!(reusable(300, 2000, Some(512), 1), 0);
        // An unknown window: only a sequence that still holds position 0.
        assert_eq!(reusable(300, 2000, None, 7), 0);
    }

    #[test]
    fn the_most_likely_token_is_the_first_of_the_largest_logits() {
        assert_eq!(most_likely(&[0.5, 2.0, -1.0, 2.0]), 1);
        assert_eq!(most_likely(&[f32::NAN, -3.0, f32::NAN]), 1);
        assert_eq!(most_likely(&[f32::NEG_INFINITY; 3]), 0);
        assert_eq!(most_likely(&[]), 0);
    }
}
