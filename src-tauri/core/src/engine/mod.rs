//! Engines turn a model file into tokens.
//!
//! Everything above this module (pool, API) talks to a model only through [`Engine`] and
//! [`LoadedModel`], so llama.cpp today and MLX on Apple Silicon later sit side by side without
//! the pool knowing which one it holds.

pub mod embed;
pub mod reasoning;
pub mod router;
pub mod sampler;
pub mod sampling;
pub mod saved;
pub mod stop;
pub mod template;
pub mod tools;
pub mod utf8;
pub mod worker_state;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::mpsc;

pub use embed::{EmbedInput, Embeddings, PendingEmbeddings};
pub use router::{EngineChoice, Router};
pub use sampling::{SamplingDefaults, SamplingParams, SamplingRequest};
pub use template::ChatMessage;
pub use tools::{Constraint, ToolFormat};

/// Loads model files of one format.
pub trait Engine: Send + Sync + 'static {
    /// A short name for logs and the status API ("llama.cpp").
    fn name(&self) -> &'static str;

    /// Whether `path` is in this engine's own format (a GGUF file for llama.cpp, a model folder
    /// for MLX): what the `auto` choice serves it with. Another engine may still read it when
    /// the user chooses so.
    fn is_native_format(&self, path: &Path) -> bool;

    /// Whether a model loaded from `path` keeps its file mapped (llama.cpp's weights), so the
    /// file must be kept from changing under it (`protect`); an engine that reads the weights
    /// into its own memory (MLX) needs no protection, and must not get a lease it would break
    /// by opening the file itself.
    fn keeps_file_mapped(&self, _path: &Path, _options: &LoadOptions) -> bool {
        true
    }

    /// Gives back memory the engine keeps for reuse (MLX's allocator cache), when memory runs
    /// short; says what it did, or `None` when it keeps nothing.
    fn release_cached_memory(&self) -> Option<String> {
        None
    }

    /// The engine that would serve `path` with `options`: itself, or for a [`Router`] the one
    /// it would pick.
    fn engine_for(&self, _path: &Path, _options: &LoadOptions) -> &'static str {
        self.name()
    }

    /// What loading `path` with `options` would hold in memory, from the file's header alone.
    /// Fast (reads the header, not the weights), so the pool can decide before it loads.
    fn estimate(&self, path: &Path, options: &LoadOptions) -> Result<Footprint, EngineError>;

    /// Loads `path` and makes it ready to generate. Blocking and slow (seconds): callers run it
    /// on a blocking thread and never while holding a lock.
    fn load(&self, path: &Path, options: &LoadOptions)
        -> Result<Box<dyn LoadedModel>, EngineError>;
}

/// A model in memory, shared by every request that uses it.
///
/// Dropping the last handle unloads it: weights, KV cache and worker thread go with it.
pub trait LoadedModel: Send + Sync {
    /// The engine that serves it, as the UI names it ("llama.cpp", "MLX").
    fn engine(&self) -> &'static str;

    /// What the model holds in memory, by part.
    fn footprint(&self) -> Footprint;

    /// The longest prompt plus completion one request may use, in tokens.
    fn context_per_request(&self) -> u32;

    /// The sampling the model's file recommends, for what a request leaves out.
    fn sampling_defaults(&self) -> SamplingDefaults {
        SamplingDefaults::default()
    }

    /// Renders chat messages into the model's own prompt format; `tools` (OpenAI's function
    /// objects) go to templates that know tools (see [`LoadedModel::tool_format`]).
    fn render_chat(
        &self,
        messages: &[ChatMessage],
        tools: Option<&[serde_json::Value]>,
    ) -> Result<String, EngineError>;

    /// How many tokens `prompt` is for this model (a rendered chat prompt, special tokens
    /// parsed as the generation would).
    fn count_tokens(&self, _prompt: &str) -> Result<u32, EngineError> {
        Err(EngineError::Unsupported(
            "this engine cannot count tokens".into(),
        ))
    }

    /// How the model writes tool calls, read off its chat template at load.
    fn tool_format(&self) -> ToolFormat {
        ToolFormat::Generic
    }

    /// Queues a generation. Tokens arrive on the returned [`Generation`]; dropping it cancels.
    fn generate(&self, request: GenerateRequest) -> Result<Generation, EngineError>;

    /// Whether the model makes embeddings (its file names a pooling) rather than text.
    fn is_embedding_model(&self) -> bool {
        false
    }

    /// Queues `inputs` for embedding: one vector each, in order.
    fn embed(&self, inputs: Vec<EmbedInput>) -> Result<PendingEmbeddings, EngineError> {
        drop(inputs);
        Err(EngineError::Unsupported(
            "this model makes text, not embeddings: its file names no pooling".into(),
        ))
    }

    /// Counters of the model's generations so far.
    fn stats(&self) -> GenerationStats;

    /// Ends every running and queued generation now, telling each client `reason` (the model
    /// was stopped, the server is shutting down). The model serves nothing after this; drop it.
    fn stop(&self, reason: &str);

    /// Whether what its slots hold is saved to disk when it is dropped (see [`saved`]): not
    /// when memory is short or its file changed. Engines without saved conversations ignore it.
    fn keep_conversations(&self, _keep: bool) {}
}

/// How a model is loaded and served.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Tokens of context each parallel slot gets.
    pub context_per_slot: u32,
    /// How many requests decode at once; the rest wait in the queue.
    pub parallel: u32,
    /// How many requests may wait for a slot before new ones are turned away.
    pub queue: usize,
    /// CPU threads for generation and prompt processing.
    pub threads: u32,
    /// Map the weights from the file (reclaimable file pages), or read them into memory (where
    /// the file cannot be kept from changing under the mapping; see `protect`).
    pub map_weights: bool,
    /// How the KV cache stores keys and values.
    pub kv_cache: KvCacheType,
    /// Per model id, where a model's differs from `kv_cache`.
    pub kv_cache_by_model: std::collections::BTreeMap<String, KvCacheType>,
    /// Where conversations are saved when a model unloads, if anywhere.
    pub conversations: Option<saved::SavedPrefixes>,
    /// Which engine serves a model: `auto` goes by its format.
    pub engine: EngineChoice,
    /// Per model id, where a model's differs from `engine`.
    pub engine_by_model: std::collections::BTreeMap<String, EngineChoice>,
    /// What an engine's own allocator may keep of freed buffers for reuse (MLX's cache).
    pub allocator_cache_limit: u64,
}

impl LoadOptions {
    /// The options for one model: its own KV cache type and engine, if it has them.
    pub fn for_model(&self, id: &str) -> Self {
        let mut options = self.clone();
        if let Some(kind) = self.kv_cache_by_model.get(id) {
            options.kv_cache = *kind;
        }
        if let Some(choice) = self.engine_by_model.get(id) {
            options.engine = *choice;
        }
        options
    }
}

/// How the KV cache stores keys and values: 16-bit floats, or quantized to 8 or 4 bits in
/// blocks of 32 (llama.cpp's `q8_0`, `q4_0`), which halves or nearly quarters its memory for a
/// small loss of precision, as Ollama's `OLLAMA_KV_CACHE_TYPE` does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub enum KvCacheType {
    #[default]
    #[serde(rename = "f16")]
    F16,
    #[serde(rename = "q8_0")]
    Q8_0,
    #[serde(rename = "q4_0")]
    Q4_0,
}

impl KvCacheType {
    pub const ALL: [Self; 3] = [Self::F16, Self::Q8_0, Self::Q4_0];

    pub fn name(self) -> &'static str {
        match self {
            Self::F16 => "f16",
            Self::Q8_0 => "q8_0",
            Self::Q4_0 => "q4_0",
        }
    }

    /// Bytes of a block and the elements it holds.
    pub fn block(self) -> (u64, u64) {
        match self {
            Self::F16 => (2, 1),
            Self::Q8_0 => (34, 32),
            Self::Q4_0 => (18, 32),
        }
    }

    /// Bytes that `elements` values take (a row of whole blocks).
    pub fn bytes(self, elements: u64) -> u64 {
        let (bytes, per_block) = self.block();
        elements.div_ceil(per_block).saturating_mul(bytes)
    }
}

impl std::str::FromStr for KvCacheType {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.name().eq_ignore_ascii_case(text.trim()))
            .ok_or_else(|| format!("'{text}' is not one of f16, q8_0, q4_0"))
    }
}

/// A model's memory, in bytes, measured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Footprint {
    /// Resident pages of the weights (mmap'd file pages count as far as they are in RAM).
    pub weights: u64,
    /// The KV cache: what creating the context added to the process.
    pub kv: u64,
    /// Compute buffers: what the first full batch added on top.
    pub compute: u64,
    pub total: u64,
}

impl Footprint {
    pub fn new(weights: u64, kv: u64, compute: u64) -> Self {
        Self {
            weights,
            kv,
            compute,
            total: weights.saturating_add(kv).saturating_add(compute),
        }
    }
}

/// Counters of one loaded model's generations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct GenerationStats {
    /// Generations decoding right now.
    pub active: u64,
    /// Generations waiting for a slot.
    pub queued: u64,
    /// Tokens sampled, over all generations.
    pub generated_tokens: u64,
    /// Generations that ran to a stop, a length limit or an error.
    pub completed: u64,
    /// Generations ended early because the client went away or the request was cancelled.
    pub cancelled: u64,
    /// Prompt tokens reused from the KV cache instead of being computed, over all generations.
    pub cached_tokens: u64,
}

/// One request's prompt and how to sample its completion.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    pub prompt: String,
    pub sampling: SamplingParams,
    /// Upper bound on generated tokens; `None` means until the context is full.
    pub max_tokens: Option<u32>,
    /// Generation ends before any of these strings; they are not part of the output.
    pub stop: Vec<String>,
    /// What the output must look like (structured output, tool calls).
    pub constraint: Option<Constraint>,
    /// Report each sampled token's log-probability and this many alternatives (0–20).
    pub logprobs: Option<u8>,
    /// Reuse the longest prefix of the prompt that a slot's KV cache still holds from an
    /// earlier request (llama-server's `cache_prompt`), computing only the rest.
    pub cache_prompt: bool,
}

/// Why a generation ended, in OpenAI's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model ended its turn or a stop string matched.
    Stop,
    /// `max_tokens` or the context ran out.
    Length,
}

/// Token counts of a finished generation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub total_tokens: u32,
    /// Prompt tokens whose KV came from the cache rather than being computed (part of
    /// `prompt_tokens`).
    pub cached_tokens: u32,
}

/// A sampled token's log-probability, and the likeliest tokens at its place.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    pub token: TokenText,
    pub logprob: f32,
    /// Most likely first; as many as the request asked for.
    pub top: Vec<(TokenText, f32)>,
}

/// A token's text, and its bytes (a token may hold part of a UTF-8 character).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenText {
    pub text: String,
    pub bytes: Vec<u8>,
}

impl TokenText {
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self {
            text: String::from_utf8_lossy(&bytes).into_owned(),
            bytes,
        }
    }
}

/// What a generation sends, in order: text pieces (each sampled token's `Logprob` before the
/// text it makes, when asked for), then exactly one `Done` or `Failed`.
#[derive(Debug, Clone, PartialEq)]
pub enum GenerationEvent {
    Text(String),
    Logprob(TokenLogprob),
    Done {
        finish_reason: FinishReason,
        usage: Usage,
        /// The request's stop string that ended it, if one did.
        stop_sequence: Option<String>,
    },
    Failed(String),
}

/// A running generation. Receive its events; drop it (or call [`Generation::cancel`]) to stop it
/// between two tokens.
pub struct Generation {
    events: mpsc::Receiver<GenerationEvent>,
    cancel: CancelFlag,
}

impl Generation {
    pub fn new(events: mpsc::Receiver<GenerationEvent>, cancel: CancelFlag) -> Self {
        Self { events, cancel }
    }

    /// The next event, or `None` once the engine has nothing more to say.
    pub async fn next(&mut self) -> Option<GenerationEvent> {
        self.events.recv().await
    }

    pub fn cancel(&self) {
        self.cancel.cancel();
    }
}

impl Drop for Generation {
    fn drop(&mut self) {
        // A client that hangs up drops the generation; the engine sees the flag before its next
        // token and frees the slot.
        self.cancel.cancel();
    }
}

/// Shared between a [`Generation`] and the engine's worker.
#[derive(Debug, Clone, Default)]
pub struct CancelFlag(Arc<AtomicBool>);

impl CancelFlag {
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Why an engine could not load or serve.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The file is missing, unreadable, or not a model this engine understands.
    #[error("cannot load model file {path}: {reason}")]
    BadModelFile { path: String, reason: String },
    /// The prompt does not fit the context a request may use.
    #[error("the prompt is {prompt_tokens} tokens but this model's context per request is {context} tokens")]
    PromptTooLong { prompt_tokens: u32, context: u32 },
    /// The prompt is empty and the model adds no start token: nothing to generate from.
    #[error("the prompt is empty; give at least one token of prompt")]
    EmptyPrompt,
    /// A sampling setting this model cannot take (a `logit_bias` token it does not have).
    #[error("{0}")]
    InvalidSampling(String),
    /// Input this model cannot read (a token id outside its vocabulary).
    #[error("{0}")]
    InvalidInput(String),
    /// The model cannot do what was asked (text from an embedding model, or the reverse).
    #[error("{0}")]
    Unsupported(String),
    /// A schema or tool definition the engine cannot turn into a constraint.
    #[error("{0}")]
    InvalidConstraint(String),
    /// Every slot is busy and the waiting queue is full.
    #[error("the model is busy: {queued} requests are already waiting")]
    QueueFull { queued: usize },
    /// The chat template could not render these messages.
    #[error("chat template error: {0}")]
    Template(String),
    /// The engine itself failed (out of memory for the context, a decode error, ...).
    #[error("{0}")]
    Internal(String),
}
