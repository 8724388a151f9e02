//! The llama.cpp engine (GGUF files; CPU everywhere, Metal on macOS) on the `llama-cpp-2` crate.
//!
//! A loaded model is one `LlamaModel` (the weights, mmap'd and shared) and one worker thread that
//! owns the model's only `LlamaContext`: a KV cache with one sequence per parallel slot, decoded
//! together in one batch per step, the way llama-server does it. Concurrent requests therefore
//! share the weights and the KV allocation; none of them loads anything.

mod estimate;
mod ggml;
mod grammar;
mod logprobs;
mod prompt;
mod worker;

use headroom_core::engine::worker_state::{WorkerState, WorkerThread};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use tokio::sync::mpsc;

use headroom_core::memory::{process_memory, resident_bytes_of_file};
use headroom_core::models::gguf::{self, GgufSummary};

use headroom_core::engine::EmbedInput;
use headroom_core::engine::{
    CancelFlag, ChatMessage, Engine, EngineError, Footprint, GenerateRequest, Generation,
    GenerationStats, KvCacheType, LoadOptions, LoadedModel, PendingEmbeddings, SamplingDefaults,
    ToolFormat,
};
use prompt::PromptFormat;
use worker::{EmbedJob, Job, Work};

/// Tokens decoded per `llama_decode` call: long prompts are fed in chunks of this size.
const BATCH_TOKENS: u32 = 512;

/// The llama.cpp engine. Construct it once per process: llama.cpp's backend is global.
pub struct LlamaEngine {
    backend: &'static LlamaBackend,
}

static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();

impl LlamaEngine {
    /// Initialises llama.cpp and routes its log lines into `tracing` instead of raw stderr.
    pub fn new() -> Result<Self, EngineError> {
        let backend = BACKEND.get_or_init(|| {
            llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
            LlamaBackend::init().map_err(|e| e.to_string())
        });
        match backend {
            Ok(backend) => Ok(Self { backend }),
            Err(e) => Err(EngineError::Internal(format!(
                "llama.cpp failed to initialise: {e}"
            ))),
        }
    }
}

impl Engine for LlamaEngine {
    fn name(&self) -> &'static str {
        "llama.cpp"
    }

    fn is_native_format(&self, path: &Path) -> bool {
        path.is_file()
    }

    fn estimate(&self, path: &Path, options: &LoadOptions) -> Result<Footprint, EngineError> {
        let summary = read_header(path)?;
        Ok(estimate::estimate(&summary, options))
    }

    fn load(
        &self,
        path: &Path,
        options: &LoadOptions,
    ) -> Result<Box<dyn LoadedModel>, EngineError> {
        let bad = |reason: String| EngineError::BadModelFile {
            path: path.display().to_string(),
            reason,
        };
        // llama.cpp aborts the process on some malformed files instead of returning an
        // error; a file whose header does not hold together never reaches it.
        let summary = read_header(path)?;

        // Held until the context is measured: the measurements are process-wide differences,
        // and another load (or another model's first large batch) in between would count twice.
        let _measuring = measuring();
        let before_load = process_memory();
        let params = LlamaModelParams::default().with_use_mmap(options.map_weights);
        #[cfg(target_os = "macos")]
        let params = params.with_n_gpu_layers(u32::MAX);
        // llama-cpp-2 asserts that the file exists (a panic, not an error); a file removed
        // since its header was read is named as such here instead.
        if !path.exists() {
            return Err(bad(
                "the file was removed while it was being loaded".to_string()
            ));
        }
        let model = LlamaModel::load_from_file(self.backend, path, &params).map_err(|e| {
            if path.exists() {
                bad(format!(
                    "llama.cpp could not read it as a GGUF model ({e}); the file may be truncated or corrupt"
                ))
            } else {
                bad("the file was removed while it was being loaded".to_string())
            }
        })?;
        let weights_anon = match (before_load, process_memory()) {
            (Some(a), Some(b)) => b.anon.saturating_sub(a.anon),
            _ => 0,
        };
        let model = Arc::new(model);
        let format = PromptFormat::from_model(&model)?;
        let embedding = pooling(&model).is_some();
        let tool_format = ToolFormat::detect(
            model
                .meta_val_str("tokenizer.chat_template")
                .ok()
                .as_deref(),
        );
        tracing::info!(path = %path.display(), tool_format = tool_format.name(), "tool calls in the {} format", tool_format.name());
        let sampling_defaults = SamplingDefaults::from_metadata(|key| model.meta_val_str(key).ok());
        if sampling_defaults.is_empty() {
            tracing::info!(path = %path.display(), "no sampling recommendation in the file: requests default to llama-server's samplers");
        } else {
            tracing::info!(path = %path.display(), ?sampling_defaults, "sampling defaults from the file's general.sampling keys");
        }

        let slots = options.parallel.max(1);
        let per_slot = options.context_per_slot.max(16);
        let n_ctx = per_slot
            .checked_mul(slots)
            .and_then(NonZeroU32::new)
            .ok_or_else(|| {
                EngineError::Internal("context size × parallel slots overflows".into())
            })?;
        let threads = i32::try_from(options.threads.max(1)).unwrap_or(1);
        let context_params = LlamaContextParams::default()
            .with_n_ctx(Some(n_ctx))
            .with_n_seq_max(slots)
            // One KV stream per slot: each request is guaranteed its full context, and one long
            // conversation cannot push the others out of the cache.
            .with_kv_unified(false)
            // Sliding-window layers (Gemma 3) keep only their window, not the full context.
            .with_swa_full(false)
            .with_n_batch(BATCH_TOKENS)
            .with_n_ubatch(BATCH_TOKENS)
            .with_n_threads(threads)
            .with_n_threads_batch(threads)
            .with_embeddings(embedding);
        let context_params = with_kv_cache_type(context_params, options.kv_cache);
        if options.kv_cache != KvCacheType::F16 {
            tracing::info!(path = %path.display(), kv_cache = options.kv_cache.name(), "a quantized KV cache, with flash attention");
        }
        if embedding {
            tracing::info!(path = %path.display(), pooling = ?pooling(&model), "an embedding model: it serves /v1/embeddings, not text");
        }

        // Conversations saved when this file's model last unloaded, restored on demand.
        let saved = options
            .conversations
            .as_ref()
            .filter(|_| !embedding)
            .and_then(|store| store.for_model(path));
        let (jobs_tx, jobs_rx) = mpsc::channel(options.queue.max(1));
        let shared = Arc::new(Shared::default());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let worker = {
            let model = Arc::clone(&model);
            let shared = Arc::clone(&shared);
            let backend = self.backend;
            std::thread::Builder::new()
                .name("llama-worker".into())
                .spawn(move || {
                    worker::run(worker::WorkerSetup {
                        backend,
                        model: &model,
                        context_params,
                        slots,
                        context_per_slot: per_slot,
                        sliding_window: summary.sliding_window,
                        saved,
                        jobs: jobs_rx,
                        shared: &shared,
                        ready: ready_tx,
                    })
                })
                .map_err(|e| {
                    EngineError::Internal(format!("cannot start the model's worker thread: {e}"))
                })?
        };
        let context_memory = match ready_rx.recv() {
            Ok(Ok(measured)) => {
                shared.compute.store(measured.compute, Ordering::Relaxed);
                measured
            }
            Ok(Err(e)) => {
                let _ = worker.join();
                return Err(e);
            }
            Err(_) => {
                let _ = worker.join();
                return Err(EngineError::Internal(
                    "the model's worker thread died while starting".into(),
                ));
            }
        };

        // The weights' resident pages, first reading: what the load added to the process's
        // file-backed memory (the measuring lock makes that this model's, and the KV cache and
        // compute buffers are anonymous). Walking /proc/self/smaps for it instead would add ~5 ms
        // to every load. Later readings walk it, per file.
        let weights_mapped = match (before_load, process_memory()) {
            (Some(a), Some(b)) => Some((Instant::now(), b.file.saturating_sub(a.file))),
            _ => None,
        };

        Ok(Box::new(LlamaLoaded {
            path: path.to_path_buf(),
            weights_anon,
            resident: Mutex::new(weights_mapped),
            context_memory,
            model,
            format,
            tool_format,
            embedding,
            sampling_defaults,
            context_per_slot: per_slot,
            queue_capacity: options.queue.max(1),
            jobs: Mutex::new(Some(jobs_tx)),
            shared,
            worker: WorkerThread::new(worker, "llama.cpp"),
        }))
    }
}

/// The KV cache's storage type. A quantized V cache needs flash attention in llama.cpp, so it
/// is asked for outright rather than left to llama.cpp's automatic choice, which could leave it
/// off and fail the context.
fn with_kv_cache_type(params: LlamaContextParams, kind: KvCacheType) -> LlamaContextParams {
    use llama_cpp_2::context::params::KvCacheType as Ggml;
    let ggml = match kind {
        KvCacheType::F16 => return params,
        KvCacheType::Q8_0 => Ggml::Q8_0,
        KvCacheType::Q4_0 => Ggml::Q4_0,
    };
    params
        .with_type_k(ggml)
        .with_type_v(ggml)
        .with_flash_attention_policy(llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_ENABLED)
}

static MEASURING: Mutex<()> = Mutex::new(());

/// Serialises the sections that measure memory as before/after differences of the process.
pub(crate) fn measuring() -> std::sync::MutexGuard<'static, ()> {
    MEASURING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The same, but `None` instead of waiting when a measurement is under way.
pub(crate) fn try_measuring() -> Option<std::sync::MutexGuard<'static, ()>> {
    match MEASURING.try_lock() {
        Ok(guard) => Some(guard),
        Err(std::sync::TryLockError::Poisoned(e)) => Some(e.into_inner()),
        Err(std::sync::TryLockError::WouldBlock) => None,
    }
}

/// The GGUF header, or why the file is not a model llama.cpp can be given.
fn read_header(path: &Path) -> Result<GgufSummary, EngineError> {
    let bad = |reason: String| EngineError::BadModelFile {
        path: path.display().to_string(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| bad(e.to_string()))?;
    if !meta.is_file() {
        return Err(bad("not a regular file".into()));
    }
    gguf::read_summary(path, ggml::block_layout).map_err(|e| bad(e.to_string()))
}

/// State the worker and the request side both see: the engine-neutral part, and the compute
/// buffers' measurement.
#[derive(Default)]
pub(crate) struct Shared {
    state: WorkerState,
    /// Resident compute-buffer bytes: measured at the warm-up, grown by larger batches.
    compute: AtomicU64,
}

struct LlamaLoaded {
    model: Arc<LlamaModel>,
    format: PromptFormat,
    /// How the model writes tool calls, from its template.
    tool_format: ToolFormat,
    /// The file names a pooling: the model makes embeddings, not text.
    embedding: bool,
    /// From the file's `general.sampling.*` keys.
    sampling_defaults: SamplingDefaults,
    context_per_slot: u32,
    queue_capacity: usize,
    /// `None` once unloading began.
    jobs: Mutex<Option<mpsc::Sender<Work>>>,
    shared: Arc<Shared>,
    worker: WorkerThread,
    path: PathBuf,
    /// Weights llama.cpp copied out of the file into its own memory at load (tensors it
    /// repacks for faster CPU kernels), measured as anonymous memory added by the load.
    weights_anon: u64,
    /// The last reading of the weights' resident pages, and when: reading them walks every
    /// mapping of the process (~20 ms with llama.cpp's thread stacks), too slow for each call.
    resident: Mutex<Option<(Instant, u64)>>,
    context_memory: worker::ContextMemory,
}

/// How stale the weights' resident figure may be.
const RESIDENT_REFRESH: Duration = Duration::from_secs(1);

impl LlamaLoaded {
    /// The weights are mmap'd: the pages resident now count. Where that cannot be read,
    /// llama.cpp's tensor bytes are the best figure there is.
    fn resident_weights(&self) -> u64 {
        let Ok(mut cached) = self.resident.lock() else {
            return self.model.size();
        };
        if let Some((at, bytes)) = *cached {
            if at.elapsed() < RESIDENT_REFRESH {
                return bytes;
            }
        }
        let bytes = resident_bytes_of_file(&self.path).unwrap_or_else(|| self.model.size());
        *cached = Some((Instant::now(), bytes));
        bytes
    }
}

impl LlamaLoaded {
    /// Queues work for the worker, or says why it cannot take it.
    fn send(&self, work: Work) -> Result<(), EngineError> {
        let jobs = self
            .jobs
            .lock()
            .map_err(|_| EngineError::Internal("model state poisoned".into()))?
            .clone()
            .ok_or_else(|| EngineError::Internal("the model is unloading".into()))?;
        // Counted before the send: the worker may take the job (and count it out) at once.
        self.shared.state.queued.fetch_add(1, Ordering::Relaxed);
        jobs.try_send(work).map_err(|e| {
            self.shared.state.queued.fetch_sub(1, Ordering::Relaxed);
            match e {
                mpsc::error::TrySendError::Full(_) => EngineError::QueueFull {
                    queued: self.queue_capacity,
                },
                mpsc::error::TrySendError::Closed(_) => {
                    EngineError::Internal("the model's worker has stopped".into())
                }
            }
        })
    }
}

/// The pooling the file names (`<arch>.pooling_type`, llama.cpp's enum: 1 mean, 2 CLS, 3 last,
/// 4 rank), if any; 0 is none.
fn pooling(model: &LlamaModel) -> Option<i64> {
    let arch = model.meta_val_str("general.architecture").ok()?;
    model
        .meta_val_str(&format!("{arch}.pooling_type"))
        .ok()?
        .trim()
        .parse::<i64>()
        .ok()
        .filter(|&p| p > 0)
}

impl LoadedModel for LlamaLoaded {
    fn engine(&self) -> &'static str {
        "llama.cpp"
    }

    fn footprint(&self) -> Footprint {
        let weights = self.resident_weights().saturating_add(self.weights_anon);
        let compute = self.shared.compute.load(Ordering::Relaxed);
        Footprint::new(weights, self.context_memory.kv, compute)
    }

    fn context_per_request(&self) -> u32 {
        self.context_per_slot
    }

    fn render_chat(
        &self,
        messages: &[ChatMessage],
        tools: Option<&[serde_json::Value]>,
    ) -> Result<String, EngineError> {
        self.format.render(&self.model, messages, tools)
    }

    fn tool_format(&self) -> ToolFormat {
        self.tool_format
    }

    fn sampling_defaults(&self) -> SamplingDefaults {
        self.sampling_defaults
    }

    fn is_embedding_model(&self) -> bool {
        self.embedding
    }

    fn count_tokens(&self, prompt: &str) -> Result<u32, EngineError> {
        Ok(u32::try_from(prompt::tokenize(&self.model, prompt).len()).unwrap_or(u32::MAX))
    }

    fn embed(&self, inputs: Vec<EmbedInput>) -> Result<PendingEmbeddings, EngineError> {
        if !self.embedding {
            return Err(EngineError::Unsupported(
                "this model makes text, not embeddings: its file names no pooling".into(),
            ));
        }
        let n_vocab = self.model.n_vocab();
        // A non-causal model reads an input in one batch.
        let longest = self.context_per_slot.min(BATCH_TOKENS);
        let mut tokenized = Vec::with_capacity(inputs.len());
        for (i, input) in inputs.into_iter().enumerate() {
            let tokens = match input {
                // With the model's special tokens around it ([CLS] … [SEP] for BERT).
                EmbedInput::Text(text) => self.model.vocab().tokenize(text.as_bytes(), true, false),
                EmbedInput::Tokens(ids) => {
                    if let Some(bad) = ids.iter().find(|t| !(0..n_vocab).contains(*t)) {
                        return Err(EngineError::InvalidInput(format!(
                            "input {i} names token {bad}, but this model's vocabulary has tokens 0 to {}",
                            n_vocab - 1
                        )));
                    }
                    ids.into_iter()
                        .map(llama_cpp_2::token::LlamaToken)
                        .collect()
                }
            };
            let count = u32::try_from(tokens.len()).unwrap_or(u32::MAX);
            if count > longest {
                return Err(EngineError::PromptTooLong {
                    prompt_tokens: count,
                    context: longest,
                });
            }
            tokenized.push(tokens);
        }
        let (reply, pending) = tokio::sync::oneshot::channel();
        self.send(Work::Embed(EmbedJob {
            inputs: tokenized,
            reply,
        }))?;
        Ok(PendingEmbeddings::new(pending))
    }

    fn generate(&self, request: GenerateRequest) -> Result<Generation, EngineError> {
        if self.embedding {
            return Err(EngineError::Unsupported(
                "this is an embedding model: it makes vectors (POST /v1/embeddings), not text"
                    .into(),
            ));
        }
        let n_vocab = self.model.n_vocab();
        if let Some(&(token, _)) = request
            .sampling
            .logit_bias
            .iter()
            .find(|(token, _)| !(0..n_vocab).contains(token))
        {
            return Err(EngineError::InvalidSampling(format!(
                "'logit_bias' names token {token}, but this model's vocabulary has tokens 0 to {}",
                n_vocab - 1
            )));
        }
        // Made here, not in the worker, so that a schema llama.cpp cannot take is the
        // client's error at once.
        let grammar = match &request.constraint {
            Some(constraint) => {
                let grammar = grammar::Grammar::from_constraint(constraint)?;
                drop(grammar.sampler(&self.model)?);
                Some(grammar)
            }
            None => None,
        };
        let tokens = prompt::tokenize(&self.model, &request.prompt);
        // With no token there is nothing to compute the first logits from.
        if tokens.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        let prompt_tokens = u32::try_from(tokens.len()).unwrap_or(u32::MAX);
        // At least one token must fit after the prompt.
        if prompt_tokens >= self.context_per_slot {
            return Err(EngineError::PromptTooLong {
                prompt_tokens,
                context: self.context_per_slot,
            });
        }
        // Room for every token of a typical answer: the worker pauses a slot whose client
        // does not read, instead of blocking the other slots.
        let (events_tx, events_rx) = mpsc::channel(256);
        let cancel = CancelFlag::default();
        self.send(Work::Generate(Box::new(Job {
            tokens,
            grammar,
            request,
            events: events_tx,
            cancel: cancel.clone(),
        })))?;
        Ok(Generation::new(events_rx, cancel))
    }

    fn stats(&self) -> GenerationStats {
        self.shared.state.stats()
    }

    fn keep_conversations(&self, keep: bool) {
        self.shared.state.keep_conversations(keep);
    }

    fn stop(&self, reason: &str) {
        self.shared.state.stop(reason);
        // Closing the queue wakes a worker that waits for work.
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.take();
        }
    }
}

impl Drop for LlamaLoaded {
    fn drop(&mut self) {
        self.stop("the model was unloaded");
        // The worker frees the context before it ends: then the memory is gone.
        self.worker.join();
    }
}
