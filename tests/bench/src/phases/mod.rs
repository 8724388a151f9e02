//! One module per thing measured. Each phase starts the servers it needs, measures, stops
//! them, and adds its rows; one failing phase is reported and the others still run.

pub mod bursts;
pub mod concurrency;
pub mod idle;
pub mod kvtype;
pub mod lifecycle;
pub mod micro;
pub mod mlx;
pub mod multiturn;
pub mod pressure;
pub mod speed;
pub mod weights;

use std::path::PathBuf;

use serde_json::{json, Value};

use crate::report::Row;
use crate::servers::{Headroom, HeadroomLaunch, Shape};
use crate::stats::Figure;

/// What every phase shares: the binaries, the models, and how hard to measure.
pub struct Context {
    pub headroom: PathBuf,
    /// The same built without the `gui` feature, for the backend's idle figure.
    pub headless_build: Option<PathBuf>,
    /// An earlier build, for the bursts phase.
    pub baseline_headroom: Option<PathBuf>,
    pub reference: PathBuf,
    pub oha: PathBuf,
    pub models_dir: PathBuf,
    /// Where large scratch files go (on disk, not tmpfs: the pressure phase needs pages the
    /// kernel can drop).
    pub scratch: PathBuf,
    pub threads: u32,
    pub context_per_slot: u32,
    pub runs: usize,
    pub idle_seconds: u64,
    pub criterion: Option<PathBuf>,
    /// MLX for Python with mlx-lm (the MLX phase's reference), when installed.
    pub mlx_python: Option<PathBuf>,
    /// llama.cpp's own benchmark on both llama.cpp builds, when built.
    pub llama_bench: Option<crate::llama_bench::Builds>,
}

/// A model the benchmark runs, by its id (its file name without `.gguf`).
#[derive(Debug, Clone, Copy)]
pub struct Model {
    pub id: &'static str,
    /// The short name the table shows.
    pub name: &'static str,
    /// The goal for a warm load, where it sets one.
    pub warm_load_goal_ms: Option<f64>,
    /// Whether its engine allocates the whole context's KV cache at load (llama.cpp), so the
    /// estimate can be held to the measured cache; MLX's grows as tokens come, and the estimate
    /// is its ceiling.
    pub kv_allocated_at_load: bool,
}

pub const MODELS: [Model; 2] = [
    Model {
        id: "SmolLM2-135M-Instruct.Q4_1",
        name: "SmolLM2-135M",
        warm_load_goal_ms: Some(100.0),
        kv_allocated_at_load: true,
    },
    Model {
        id: "gemma-3-270m-q4_k_m",
        name: "Gemma 3 270M",
        warm_load_goal_ms: None,
        kv_allocated_at_load: true,
    },
];

impl Model {
    /// A row of this model's runs on both servers.
    pub fn compared(self, metric: &str, unit: &str, headroom: &[f64], reference: &[f64]) -> Row {
        Row::new(metric, unit)
            .model(self.name)
            .headroom(Figure::of(headroom))
            .reference(Figure::of(reference))
    }

    /// The same, for runs the two servers took in turns: with the ratios run by run.
    pub fn compared_in_turns(
        self,
        metric: &str,
        unit: &str,
        headroom: &[f64],
        reference: &[f64],
    ) -> Row {
        self.compared(metric, unit, headroom, reference)
            .in_turns(headroom, reference)
    }
}

impl Context {
    pub fn model_path(&self, model: Model) -> PathBuf {
        self.models_dir.join(format!("{}.gguf", model.id))
    }

    pub fn shape(&self, slots: u32) -> Shape {
        Shape {
            threads: self.threads,
            slots,
            context_per_slot: self.context_per_slot,
        }
    }

    pub async fn start_headroom(&self, slots: u32) -> anyhow::Result<Headroom> {
        self.start_headroom_with(slots, &[]).await
    }

    /// Headroom without its prompt cache, beside llama-server without its own: the
    /// engine-to-engine rows, where a repeated prompt would measure the cache instead.
    pub async fn start_headroom_uncached(&self, slots: u32) -> anyhow::Result<Headroom> {
        self.start_headroom_with(slots, &[("HEADROOM_CACHE_PROMPT", "false")])
            .await
    }

    /// The same, with more settings (`HEADROOM_*` variables).
    pub async fn start_headroom_with(
        &self,
        slots: u32,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Headroom> {
        Headroom::start(HeadroomLaunch {
            binary: &self.headroom,
            models_dir: &self.models_dir,
            shape: self.shape(slots),
            cgroups: &[],
            desktop: None,
            env,
        })
        .await
    }
}

/// A greedy completion that keeps going: counting, from a number that differs per run so no
/// two requests share a prompt.
pub fn counting(model: Model, run: usize, max_tokens: u32) -> Value {
    let n = 100 * (run + 1);
    completion(
        model,
        &format!("{n}, {}, {}, {},", n + 1, n + 2, n + 3),
        max_tokens,
    )
}

/// A prompt of about 500 tokens for prompt processing speed; it too begins differently per run.
pub fn long_prompt(model: Model, run: usize) -> Value {
    let mut text = format!("Inventory note {}.", run + 1);
    for i in 0..40 {
        text.push_str(&format!(
            " Item {i} is a {} box kept on shelf {} in room {}.",
            ["red", "green", "blue", "grey"][i % 4],
            i * 7 % 13,
            i % 5
        ));
    }
    completion(model, &text, 1)
}

fn completion(model: Model, prompt: &str, max_tokens: u32) -> Value {
    json!({
        "model": model.id,
        "prompt": prompt,
        "max_tokens": max_tokens,
        "temperature": 0,
        "seed": 1,
    })
}

/// Megabytes (10^6 bytes), as the table shows memory.
pub fn mb(bytes: f64) -> f64 {
    bytes / 1e6
}
