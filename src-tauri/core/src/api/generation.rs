//! One generation from request to answer, whatever the dialect: find the model, load it if
//! needed, queue the generation, and read what it says back as reasoning, content and tool
//! calls ([`Step`]s). The OpenAI, Anthropic and Ollama translators each turn the steps into
//! their own response or event stream; none of them touches the pool or the engine directly.

use std::time::Instant;

use crate::api::error::ApiError;
use crate::api::AppState;
use crate::engine::reasoning::{Part, ReasoningSplitter};
use crate::engine::tools::reader::{Output, OutputReader};
use crate::engine::tools::{self, ToolCall, ToolRequest};
use crate::engine::{
    ChatMessage, Constraint, FinishReason, GenerateRequest, Generation, GenerationEvent,
    LoadedModel, SamplingRequest, TokenLogprob, Usage,
};
use crate::events::Bus;
use crate::memory::process_rss;
use crate::metrics::{GenerationFinished, GenerationRecord, Metrics};
use crate::pool::Lease;
use crate::vocab::{Dialect, IdleTimeout};

/// How to generate, as a dialect's request asked, checked.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// What the request asked for; the model's own defaults fill the rest once it is known.
    pub sampling: SamplingRequest,
    pub max_tokens: Option<u32>,
    pub stop: Vec<String>,
    pub keep_alive: Option<IdleTimeout>,
    /// Log-probabilities with this many alternatives per token, if asked for.
    pub logprobs: Option<u8>,
    /// Reuse a cached prompt prefix; `None` follows the `cache_prompt` setting.
    pub cache_prompt: Option<bool>,
}

/// What a request puts to the model: its prompt, the constraint on the output, and how the
/// output is read back (plain text, or content and tool calls).
pub struct Prepared {
    pub prompt: String,
    pub constraint: Option<Constraint>,
    /// Splits thinking off the answer (chat), or passes everything on (text completions).
    pub reasoning: ReasoningSplitter,
    pub reader: OutputReader,
}

impl Prepared {
    /// A prompt answered in plain text, optionally constrained (structured output).
    pub fn text(prompt: String, constraint: Option<Constraint>) -> Self {
        Self {
            prompt,
            constraint,
            reasoning: ReasoningSplitter::inline(),
            reader: OutputReader::plain(),
        }
    }
}

/// A chat prompt in the model's own format: the tools planned for its tool format, rendered by
/// its template, the thinking split off when `split_reasoning`.
pub fn chat_prompt(
    model: &dyn LoadedModel,
    messages: Vec<ChatMessage>,
    tools: &ToolRequest,
    split_reasoning: bool,
) -> Result<Prepared, ApiError> {
    let plan = tools::plan(model.tool_format(), messages, tools);
    let prompt = model.render_chat(&plan.messages, plan.template_tools.as_deref())?;
    Ok(Prepared {
        reasoning: ReasoningSplitter::new(&prompt, split_reasoning),
        prompt,
        constraint: plan.constraint,
        reader: plan.reader,
    })
}

/// A whole answer, read.
#[derive(Debug, Default)]
pub struct Whole {
    pub thought: String,
    pub content: String,
    pub calls: Vec<ToolCall>,
    pub logprobs: Vec<TokenLogprob>,
    /// The stop string that ended it, if one did.
    pub stop_sequence: Option<String>,
}

impl Whole {
    /// Adds what one step read.
    pub fn take(&mut self, thought: String, outputs: Vec<Output>) {
        self.thought.push_str(&thought);
        for output in outputs {
            match output {
                Output::Content(text) => self.content.push_str(&text),
                Output::Call(call) => self.calls.push(call),
            }
        }
    }
}

/// What the generation said since the last step.
#[derive(Debug)]
pub enum Step {
    /// Thinking, and what the reader passed on of the answer (either may be empty).
    Read {
        thought: String,
        outputs: Vec<Output>,
    },
    /// A sampled token's log-probability (when asked for), before the text it makes.
    Logprob(TokenLogprob),
    /// The end: the last of the text, why it ended (and at which stop string, if one), and
    /// the token counts.
    Done {
        thought: String,
        outputs: Vec<Output>,
        finish_reason: FinishReason,
        usage: Usage,
        stop_sequence: Option<String>,
    },
    Failed(String),
}

/// A generation under way.
pub struct Generating {
    model_id: String,
    dialect: Dialect,
    generation: Generation,
    /// Holding the lease keeps the model loaded, and counted busy, until the response ends.
    lease: Lease,
    timing: Timing,
    metrics: Metrics,
    /// Where the finished generation is announced (the web UI's recent events).
    bus: Bus,
    reasoning: ReasoningSplitter,
    reader: OutputReader,
}

/// When things happened, for the generation's record.
struct Timing {
    /// The request arrived (before any load).
    arrived: Instant,
    first_token: Option<Instant>,
    /// Text pieces received: tokens, near enough, when the request ends early.
    pieces: u32,
    prompt_tokens: u32,
    cached_tokens: u32,
    recorded: bool,
}

/// Finds and loads `model_id`, makes its prompt and queues the generation. `dialect` is the
/// API the request came in through, for the record.
pub async fn start(
    state: &AppState,
    dialect: Dialect,
    model_id: &str,
    prepare: impl FnOnce(&dyn LoadedModel) -> Result<Prepared, ApiError>,
    settings: Settings,
) -> Result<Generating, ApiError> {
    let arrived = Instant::now();
    let file = state.catalog.find(model_id)?;
    let model = state.pool.acquire(file, settings.keep_alive).await?;
    let prepared = prepare(&*model)?;
    let generation = model.generate(GenerateRequest {
        prompt: prepared.prompt,
        sampling: settings.sampling.resolve(&model.sampling_defaults()),
        max_tokens: settings.max_tokens,
        stop: settings.stop,
        constraint: prepared.constraint,
        logprobs: settings.logprobs,
        cache_prompt: settings
            .cache_prompt
            .unwrap_or_else(|| state.live.store().live().cache_prompt),
    })?;
    Ok(Generating {
        model_id: model_id.to_string(),
        dialect,
        generation,
        lease: model,
        timing: Timing {
            arrived,
            first_token: None,
            pieces: 0,
            prompt_tokens: 0,
            cached_tokens: 0,
            recorded: false,
        },
        metrics: state.metrics.clone(),
        bus: state.bus.clone(),
        reasoning: prepared.reasoning,
        reader: prepared.reader,
    })
}

impl Generating {
    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    /// How many calls were read so far: a turn with calls ends for them.
    pub fn calls(&self) -> usize {
        self.reader.calls()
    }

    /// Waits for the whole answer: what it said, why it ended, its token counts. If the client
    /// hangs up, the future is dropped and with it the generation, which the engine cancels.
    pub async fn collect(&mut self) -> Result<(Whole, FinishReason, Usage), String> {
        let mut whole = Whole::default();
        loop {
            match self.step().await {
                Step::Read { thought, outputs } => whole.take(thought, outputs),
                Step::Logprob(token) => whole.logprobs.push(token),
                Step::Done {
                    thought,
                    outputs,
                    finish_reason,
                    usage,
                    stop_sequence,
                } => {
                    whole.take(thought, outputs);
                    whole.stop_sequence = stop_sequence;
                    return Ok((whole, finish_reason, usage));
                }
                Step::Failed(message) => return Err(message),
            }
        }
    }

    /// Waits for the generation's next event and reads it.
    pub async fn step(&mut self) -> Step {
        match self.next().await {
            Some(GenerationEvent::Text(piece)) => {
                let (thought, outputs) = self.read(Some(&piece));
                Step::Read { thought, outputs }
            }
            Some(GenerationEvent::Logprob(token)) => Step::Logprob(token),
            Some(GenerationEvent::Done {
                finish_reason,
                usage,
                stop_sequence,
            }) => {
                let (thought, outputs) = self.read(None);
                Step::Done {
                    thought,
                    outputs,
                    finish_reason,
                    usage,
                    stop_sequence,
                }
            }
            Some(GenerationEvent::Failed(message)) => Step::Failed(message),
            None => Step::Failed("the generation ended without a result".into()),
        }
    }

    /// The generation's next event, noting the timing and recording the generation once it
    /// ends.
    async fn next(&mut self) -> Option<GenerationEvent> {
        let event = self.generation.next().await;
        match &event {
            Some(GenerationEvent::Text(_)) => {
                self.timing.first_token.get_or_insert_with(Instant::now);
                self.timing.pieces = self.timing.pieces.saturating_add(1);
            }
            Some(GenerationEvent::Logprob(_)) => {}
            Some(GenerationEvent::Done {
                finish_reason,
                usage,
                ..
            }) => {
                self.timing.prompt_tokens = usage.prompt_tokens;
                self.timing.cached_tokens = usage.cached_tokens;
                self.timing.pieces = usage.completion_tokens;
                let outcome = match finish_reason {
                    FinishReason::Stop => "stop",
                    FinishReason::Length => "length",
                };
                self.record(outcome);
            }
            Some(GenerationEvent::Failed(_)) | None => self.record("error"),
        }
        event
    }

    /// Splits a piece of text into reasoning and what the reader passes on of the answer;
    /// `None` is the end of the generation.
    fn read(&mut self, piece: Option<&str>) -> (String, Vec<Output>) {
        let parts = match piece {
            Some(text) => self.reasoning.push(text),
            None => self.reasoning.finish(),
        };
        let mut thought = String::new();
        let mut outputs = Vec::new();
        for part in parts {
            match part {
                Part::Reasoning(text) => thought.push_str(&text),
                Part::Answer(text) => outputs.extend(self.reader.push(&text)),
            }
        }
        if piece.is_none() {
            outputs.extend(self.reader.finish());
        }
        (thought, outputs)
    }

    /// Adds this generation to the metrics and announces it, once.
    fn record(&mut self, outcome: &str) {
        if std::mem::replace(&mut self.timing.recorded, true) {
            return;
        }
        let t = &self.timing;
        let now = Instant::now();
        let tokens_per_second = t.first_token.and_then(|first| {
            let secs = now.duration_since(first).as_secs_f64();
            (t.pieces > 1 && secs > 0.0).then(|| f64::from(t.pieces - 1) / secs)
        });
        let record = GenerationRecord {
            model: self.model_id.clone(),
            dialect: self.dialect,
            finished_at: crate::vocab::now_unix_ms(),
            ttft_ms: t
                .first_token
                .map(|first| first.duration_since(t.arrived).as_secs_f64() * 1000.0),
            tokens_per_second,
            prompt_tokens: t.prompt_tokens,
            cached_tokens: t.cached_tokens,
            generated_tokens: t.pieces,
            outcome: outcome.to_string(),
            process_memory: process_rss(),
            model_memory: Some(self.lease.footprint().total),
        };
        self.metrics.generation_finished(record.clone());
        self.bus.publish(GenerationFinished { record });
    }
}

impl Drop for Generating {
    /// A client that went away before the end: recorded as cancelled.
    fn drop(&mut self) {
        self.record("cancelled");
    }
}

/// Seconds since the epoch, for the `created` fields.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}
