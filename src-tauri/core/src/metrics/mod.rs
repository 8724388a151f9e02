//! Counters and histograms for `/metrics`, and the record of recent generations for
//! `/api/metrics/generations`.
//!
//! Counters and histograms live here for the life of the process; figures that describe the
//! present (memory per model, pool use) are read from the pool at scrape time instead, so they
//! can never drift from what the status API says.

mod generations;

use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

pub use generations::{GenerationFinished, GenerationLog, GenerationRecord};

use crate::engine::Footprint;
use crate::memory::SystemMemory;

type Labels = Vec<(String, String)>;

fn label(key: &str, value: &str) -> Labels {
    vec![(key.to_string(), value.to_string())]
}

/// Everything counted since start. Cheap to clone (the metrics are shared handles).
#[derive(Clone)]
pub struct Metrics {
    loads: Family<Labels, Counter>,
    load_failures: Family<Labels, Counter>,
    unloads: Family<Labels, Counter>,
    evictions: Counter,
    refusals: Family<Labels, Counter>,
    pressure_wakes: Family<Labels, Counter>,
    tokens_generated: Family<Labels, Counter>,
    prompt_tokens: Family<Labels, Counter>,
    cached_prompt_tokens: Family<Labels, Counter>,
    ttft: Family<Labels, Histogram>,
    rate: Family<Labels, Histogram>,
    pub generations: Arc<GenerationLog>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            loads: Family::default(),
            load_failures: Family::default(),
            unloads: Family::default(),
            evictions: Counter::default(),
            refusals: Family::default(),
            pressure_wakes: Family::default(),
            tokens_generated: Family::default(),
            prompt_tokens: Family::default(),
            cached_prompt_tokens: Family::default(),
            // 5 ms .. ~80 s
            ttft: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.005, 2.0, 15))
            }),
            // 0.5 .. ~8000 tokens/s
            rate: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.5, 2.0, 15))
            }),
            generations: Arc::new(GenerationLog::default()),
        }
    }
}

impl Metrics {
    pub fn model_loaded(&self, model: &str) {
        self.loads.get_or_create(&label("model", model)).inc();
    }

    pub fn load_failed(&self, model: &str) {
        self.load_failures
            .get_or_create(&label("model", model))
            .inc();
    }

    pub fn model_unloaded(&self, reason: &str) {
        self.unloads.get_or_create(&label("reason", reason)).inc();
    }

    pub fn model_evicted(&self) {
        self.evictions.inc();
    }

    pub fn refused(&self, code: &str) {
        self.refusals.get_or_create(&label("code", code)).inc();
    }

    /// The pressure monitor looked; `source` is what woke it (poll, threshold, stall, ...).
    pub fn pressure_wake(&self, source: &str) {
        self.pressure_wakes
            .get_or_create(&label("source", source))
            .inc();
    }

    /// One finished generation: into the counters, the histograms and the recent record.
    pub fn generation_finished(&self, record: GenerationRecord) {
        let model = label("model", &record.model);
        self.tokens_generated
            .get_or_create(&model)
            .inc_by(u64::from(record.generated_tokens));
        self.prompt_tokens
            .get_or_create(&model)
            .inc_by(u64::from(record.prompt_tokens));
        self.cached_prompt_tokens
            .get_or_create(&model)
            .inc_by(u64::from(record.cached_tokens));
        if let Some(ttft_ms) = record.ttft_ms {
            self.ttft.get_or_create(&model).observe(ttft_ms / 1000.0);
        }
        if let Some(rate) = record.tokens_per_second {
            self.rate.get_or_create(&model).observe(rate);
        }
        self.generations.push(record);
    }

    /// The Prometheus text exposition: the counters above, plus the pool, the server and the
    /// machine as they are now.
    pub fn render(
        &self,
        pool: &PoolGauges<'_>,
        system: Option<SystemMemory>,
        load: ServerLoad,
    ) -> String {
        let mut registry = Registry::with_prefix("headroom");
        registry.register("model_loads", "Models loaded, by model", self.loads.clone());
        registry.register(
            "model_load_failures",
            "Loads that failed, by model",
            self.load_failures.clone(),
        );
        registry.register(
            "model_unloads",
            "Models unloaded, by reason",
            self.unloads.clone(),
        );
        registry.register(
            "evictions",
            "Idle models unloaded to make room for another",
            self.evictions.clone(),
        );
        registry.register(
            "refusals",
            "Requests or loads refused, by error code",
            self.refusals.clone(),
        );
        registry.register(
            "pressure_wakes",
            "Looks of the pressure monitor, by what woke it",
            self.pressure_wakes.clone(),
        );
        registry.register(
            "generated_tokens",
            "Tokens generated, by model",
            self.tokens_generated.clone(),
        );
        registry.register(
            "prompt_tokens",
            "Prompt tokens, computed or reused from the KV cache, by model",
            self.prompt_tokens.clone(),
        );
        registry.register(
            "prompt_tokens_cached",
            "Prompt tokens reused from the KV cache instead of computed, by model",
            self.cached_prompt_tokens.clone(),
        );
        registry.register(
            "time_to_first_token_seconds",
            "From request to first generated token, by model",
            self.ttft.clone(),
        );
        registry.register(
            "generation_tokens_per_second",
            "Generation speed after the first token, by model",
            self.rate.clone(),
        );

        let loaded = Gauge::<i64>::default();
        let memory = Family::<Labels, Gauge>::default();
        let in_flight = Family::<Labels, Gauge>::default();
        for model in &pool.models {
            if let Some(footprint) = model.memory {
                loaded.inc();
                for (part, bytes) in [
                    ("weights", footprint.weights),
                    ("kv", footprint.kv),
                    ("compute", footprint.compute),
                    ("total", footprint.total),
                ] {
                    memory
                        .get_or_create(&vec![
                            ("model".to_string(), model.id.to_string()),
                            ("part".to_string(), part.to_string()),
                        ])
                        .set(clamp(bytes));
                }
            }
            in_flight
                .get_or_create(&label("model", model.id))
                .set(i64::from(model.in_flight));
        }
        registry.register("models_loaded", "Models in memory", loaded);
        registry.register(
            "model_memory_bytes",
            "Measured memory of each loaded model, by part",
            memory,
        );
        registry.register(
            "model_requests_in_flight",
            "Requests each model is serving",
            in_flight,
        );
        let gauge = |v: u64| {
            let g = Gauge::<i64>::default();
            g.set(clamp(v));
            g
        };
        registry.register(
            "pool_used_bytes",
            "Memory held by loaded models",
            gauge(pool.used),
        );
        registry.register(
            "pool_limit_bytes",
            "The pool memory limit",
            gauge(pool.limit),
        );
        registry.register(
            "connections_open",
            "HTTP connections open now",
            gauge(load.connections as u64),
        );
        registry.register(
            "runtime_tasks_alive",
            "Tokio tasks alive: a task left behind by a finished request shows here",
            gauge(load.tasks as u64),
        );
        if let Some(system) = system {
            registry.register("system_memory_total_bytes", "RAM", gauge(system.total));
            registry.register(
                "system_memory_available_bytes",
                "Memory available without swapping",
                gauge(system.available),
            );
        }
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &registry);
        text
    }
}

fn clamp(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}
/// The pool at the moment of a scrape, as the gauges show it. The caller reads it from the
/// pool's status, so these counters need not know the pool.
#[derive(Debug, Clone, Default)]
pub struct PoolGauges<'a> {
    /// What the models hold.
    pub used: u64,
    pub limit: u64,
    pub models: Vec<ModelGauges<'a>>,
}

/// One model in the pool.
#[derive(Debug, Clone)]
pub struct ModelGauges<'a> {
    pub id: &'a str,
    /// Measured, once loaded.
    pub memory: Option<Footprint>,
    pub in_flight: u32,
}

/// What the server is carrying at the moment of a scrape.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerLoad {
    pub connections: usize,
    pub tasks: usize,
}
