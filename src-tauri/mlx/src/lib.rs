//! The MLX engine (Apple's array framework, through mlx-rs): MLX model folders as
//! mlx-community publishes them, and GGUF files a user chooses to run on MLX. Metal on Apple
//! Silicon; MLX's CPU backend elsewhere (the `mlx-cpu` wheel, see `src-tauri/mlx-sys`).
//!
//! A loaded model is its arrays, read into MLX's memory, and one worker thread that owns the
//! KV cache and serves one generation at a time (see `worker`). The model code is Headroom's
//! own, op for op as mlx-lm computes it (`llama`), so greedy output matches `mlx_lm.generate`.

mod cache;
mod config;
mod folder;
mod gguf;
mod llama;
mod tokenizer;
mod worker;

use headroom_core::engine::worker_state::{WorkerState, WorkerThread};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use headroom_core::engine::{
    CancelFlag, ChatMessage, Engine, EngineError, Footprint, GenerateRequest, Generation,
    GenerationStats, LoadOptions, LoadedModel, ToolFormat,
};

pub use folder::is_model_folder;

/// The MLX engine. One per process: MLX's allocator and streams are global.
pub struct MlxEngine {}

impl MlxEngine {
    pub fn new() -> Self {
        Self {}
    }
}

/// Caps what MLX's allocator keeps of freed buffers (the `mlx_cache_limit` setting: small by
/// default, as the MLX servers Headroom's users ran set it, so that memory a generation used
/// goes back to the system soon after).
fn set_cache_limit(bytes: u64) {
    if let Err(e) = mlx_rs::memory::set_cache_limit(usize::try_from(bytes).unwrap_or(usize::MAX)) {
        tracing::warn!(error = %e, "MLX refused the cache limit");
    }
}

impl Default for MlxEngine {
    fn default() -> Self {
        Self::new()
    }
}

/// A model this engine can read: an MLX folder, or a GGUF file.
enum Source {
    Folder,
    Gguf,
}

fn source_of(path: &Path) -> Result<Source, EngineError> {
    if folder::is_model_folder(path) {
        Ok(Source::Folder)
    } else if path.is_file() {
        Ok(Source::Gguf)
    } else {
        Err(bad(
            path,
            "not an MLX model folder (config.json and .safetensors weights) or a GGUF file".into(),
        ))
    }
}

fn bad(path: &Path, reason: String) -> EngineError {
    EngineError::BadModelFile {
        path: path.display().to_string(),
        reason,
    }
}

impl Engine for MlxEngine {
    fn name(&self) -> &'static str {
        "MLX"
    }

    fn is_native_format(&self, path: &Path) -> bool {
        folder::is_model_folder(path)
    }

    fn estimate(&self, path: &Path, options: &LoadOptions) -> Result<Footprint, EngineError> {
        let (config, weights, element) = match source_of(path)? {
            Source::Folder => {
                let summary = folder::summary(path).map_err(|e| bad(path, e))?;
                (
                    folder::read_config(path).map_err(|e| bad(path, e))?,
                    summary.bytes,
                    summary.activation_bytes,
                )
            }
            // A GGUF's norms are f32, and so the activations are.
            Source::Gguf => {
                let (config, bytes) = gguf::estimate(path).map_err(|e| bad(path, e))?;
                (config, bytes, 4)
            }
        };
        let context = u64::from(options.context_per_slot.max(16));
        let storage = cache::Storage::of(options.kv_cache);
        let kv = context * config.kv_bytes_per_token(storage, element);
        // The largest transient buffers: a prompt chunk's activations and the logits.
        let chunk = context.min(2048);
        let activations =
            chunk * (4 * config.hidden_size as u64 + 3 * config.intermediate_size as u64) * element
                + config.vocab_size as u64 * 4 * 2;
        Ok(Footprint::new(
            weights,
            kv,
            activations.min(options.allocator_cache_limit.max(activations / 4)),
        ))
    }

    /// MLX copies the weights into its own arrays (and MLX's GGUF reader opens the file for
    /// writing, which would break a read lease): nothing stays mapped.
    fn keeps_file_mapped(&self, _path: &Path, _options: &LoadOptions) -> bool {
        false
    }

    fn release_cached_memory(&self) -> Option<String> {
        let cached = mlx_rs::memory::cache_memory().unwrap_or(0);
        mlx_rs::memory::clear_cache().ok()?;
        Some(format!(
            "MLX's allocator cache cleared ({} MB)",
            cached / 1_000_000
        ))
    }

    fn load(
        &self,
        path: &Path,
        options: &LoadOptions,
    ) -> Result<Box<dyn LoadedModel>, EngineError> {
        set_cache_limit(options.allocator_cache_limit);
        let (model, text) = match source_of(path)? {
            Source::Folder => {
                let config = folder::read_config(path).map_err(|e| bad(path, e))?;
                let text = tokenizer::TextFormat::from_folder(path).map_err(|e| bad(path, e))?;
                let weights = folder::load_weights(path).map_err(|e| bad(path, e))?;
                let model =
                    llama::Llama::from_weights(config, weights).map_err(|e| bad(path, e))?;
                (model, text)
            }
            Source::Gguf => gguf::load(path).map_err(|e| bad(path, e))?,
        };
        // MLX reads lazily: evaluate every array now, so a damaged file fails the load, not
        // the first request, and the memory is held (and measured) from here on.
        mlx_rs::transforms::eval(model.arrays())
            .map_err(|e| bad(path, format!("MLX could not read the weights: {e}")))?;
        let storage = cache::Storage::of(options.kv_cache);
        if let cache::Storage::Quantized { bits } = storage {
            tracing::info!(path = %path.display(), bits, "a quantized KV cache (MLX affine, groups of 64)");
        }
        // The conversation saved when this model last unloaded, restored on demand.
        let saved = options
            .conversations
            .as_ref()
            .and_then(|store| store.for_model(path));
        let weights = model.nbytes();
        let text = Arc::new(text);
        let tool_format = ToolFormat::detect(text.template_source.as_deref());
        let context = options
            .context_per_slot
            .max(16)
            .min(model.config().max_position_embeddings.unwrap_or(u32::MAX));
        let shared = Arc::new(Shared::default());
        let (jobs_tx, jobs_rx) = mpsc::channel(options.queue.max(1));
        let worker = {
            let shared = Arc::clone(&shared);
            let text = Arc::clone(&text);
            std::thread::Builder::new()
                .name("mlx-worker".into())
                .spawn(move || {
                    worker::run(worker::WorkerSetup {
                        model,
                        text,
                        context,
                        jobs: jobs_rx,
                        shared,
                        storage,
                        saved,
                    })
                })
                .map_err(|e| {
                    EngineError::Internal(format!("cannot start the model's worker thread: {e}"))
                })?
        };
        tracing::info!(path = %path.display(), weights, context, "MLX model loaded");
        Ok(Box::new(MlxLoaded {
            text,
            tool_format,
            weights,
            context,
            queue_capacity: options.queue.max(1),
            jobs: Mutex::new(Some(jobs_tx)),
            shared,
            worker: WorkerThread::new(worker, "MLX"),
        }))
    }
}

/// State the worker and the request side both see: the engine-neutral part, and the memory
/// the worker measures.
#[derive(Default)]
pub(crate) struct Shared {
    state: WorkerState,
    /// Bytes of the KV cache's buffers, after the last generation.
    kv: AtomicU64,
    /// MLX's allocator cache after the last generation: buffers this model's passes freed,
    /// kept for reuse (bounded by the cache limit).
    compute: AtomicU64,
}

struct MlxLoaded {
    text: Arc<tokenizer::TextFormat>,
    tool_format: ToolFormat,
    /// Bytes of the model's arrays.
    weights: u64,
    context: u32,
    queue_capacity: usize,
    /// `None` once unloading began.
    jobs: Mutex<Option<mpsc::Sender<worker::Job>>>,
    shared: Arc<Shared>,
    worker: WorkerThread,
}

impl LoadedModel for MlxLoaded {
    fn engine(&self) -> &'static str {
        "MLX"
    }

    fn footprint(&self) -> Footprint {
        Footprint::new(
            self.weights,
            self.shared.kv.load(Ordering::Relaxed),
            self.shared.compute.load(Ordering::Relaxed),
        )
    }

    fn context_per_request(&self) -> u32 {
        self.context
    }

    fn render_chat(
        &self,
        messages: &[ChatMessage],
        tools: Option<&[serde_json::Value]>,
    ) -> Result<String, EngineError> {
        self.text
            .template
            .render(messages, tools)
            .map_err(EngineError::Template)
    }

    fn count_tokens(&self, prompt: &str) -> Result<u32, EngineError> {
        let tokens = self
            .text
            .encode(prompt)
            .map_err(EngineError::InvalidInput)?;
        Ok(u32::try_from(tokens.len()).unwrap_or(u32::MAX))
    }

    fn tool_format(&self) -> ToolFormat {
        self.tool_format
    }

    fn generate(&self, request: GenerateRequest) -> Result<Generation, EngineError> {
        if request.constraint.is_some() {
            return Err(EngineError::Unsupported(
                "structured output (response_format, required tool calls) is not available on the MLX engine yet; serve this model with llama.cpp for it".into(),
            ));
        }
        let vocab = self.text.tokenizer.get_vocab_size(true) as i32;
        if let Some(&(token, _)) = request
            .sampling
            .logit_bias
            .iter()
            .find(|(token, _)| !(0..vocab).contains(token))
        {
            return Err(EngineError::InvalidSampling(format!(
                "'logit_bias' names token {token}, but this model's vocabulary has tokens 0 to {}",
                vocab - 1
            )));
        }
        let tokens = self
            .text
            .encode(&request.prompt)
            .map_err(EngineError::InvalidInput)?;
        if tokens.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        let prompt_tokens = u32::try_from(tokens.len()).unwrap_or(u32::MAX);
        if prompt_tokens >= self.context {
            return Err(EngineError::PromptTooLong {
                prompt_tokens,
                context: self.context,
            });
        }
        let (events_tx, events_rx) = mpsc::channel(256);
        let cancel = CancelFlag::default();
        let jobs = self
            .jobs
            .lock()
            .map_err(|_| EngineError::Internal("model state poisoned".into()))?
            .clone()
            .ok_or_else(|| EngineError::Internal("the model is unloading".into()))?;
        self.shared.state.queued.fetch_add(1, Ordering::Relaxed);
        let job = worker::Job {
            tokens,
            request,
            events: events_tx,
            cancel: cancel.clone(),
        };
        jobs.try_send(job).map_err(|e| {
            self.shared.state.queued.fetch_sub(1, Ordering::Relaxed);
            match e {
                mpsc::error::TrySendError::Full(_) => EngineError::QueueFull {
                    queued: self.queue_capacity,
                },
                mpsc::error::TrySendError::Closed(_) => {
                    EngineError::Internal("the model's worker has stopped".into())
                }
            }
        })?;
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
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.take();
        }
    }
}

impl Drop for MlxLoaded {
    fn drop(&mut self) {
        self.stop("the model was unloaded");
        // The worker drops the arrays and clears MLX's cache before it ends: then the memory
        // is gone.
        self.worker.join();
    }
}

/// mlx-rs seeds its random keys from macOS's `mach_approximate_time`, which other systems do
/// not have; this stands in for it there (monotonic nanoseconds, which is all it is used for).
#[cfg(not(target_vendor = "apple"))]
#[no_mangle]
pub extern "C" fn mach_approximate_time() -> u64 {
    use std::time::Instant;
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}
