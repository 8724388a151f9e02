//! The KV cache's type: at 4 slots × 4096 tokens, what the cache holds (measured) and what the
//! estimate said, and the generation rate, for q8_0 and q4_0 beside f16. All three servers are
//! Headroom, running at once and taking turns; the reference column is f16. The MLX engine
//! serves one sequence and grows its cache as tokens come: its rows compare what the same
//! requests left in the cache, and its estimate (the whole context's) is not held to it.

use super::{counting, long_prompt, mb, Context, Model};
use crate::report::Row;
use crate::servers::{Headroom, HeadroomLaunch, Shape};

const SLOTS: u32 = 4;
const CONTEXT: u32 = 4096;
const GENERATED: u32 = 128;
const KINDS: [&str; 3] = ["f16", "q8_0", "q4_0"];

#[derive(Default)]
struct Samples {
    kv_mb: Vec<f64>,
    estimate_error: Vec<f64>,
    rate: Vec<f64>,
}

pub async fn run(cx: &Context, model: Model, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let shape = Shape {
        slots: SLOTS,
        context_per_slot: CONTEXT,
        ..cx.shape(SLOTS)
    };
    let mut servers = Vec::new();
    for kind in KINDS {
        let server = Headroom::start(HeadroomLaunch {
            binary: &cx.headroom,
            models_dir: &cx.models_dir,
            shape,
            cgroups: &[],
            desktop: None,
            env: &[("HEADROOM_KV_CACHE_TYPE", kind)],
        })
        .await?;
        server.load(model.id).await?;
        // A full batch makes the compute buffers resident, as in the pool's steady state.
        server
            .endpoint
            .post("/v1/completions", &long_prompt(model, 0))
            .await?;
        servers.push(server);
    }
    let mut samples: [Samples; 3] = Default::default();
    for run in 0..cx.runs {
        for (server, samples) in servers.iter().zip(&mut samples) {
            let timing = server
                .endpoint
                .stream_completion(&counting(model, run, GENERATED))
                .await?;
            samples
                .rate
                .push(timing.generation_rate().unwrap_or(f64::NAN));
            let status = server.endpoint.get("/api/memory/status").await?;
            let entry = status["models"]
                .as_array()
                .and_then(|models| models.iter().find(|m| m["id"] == model.id))
                .cloned()
                .unwrap_or_default();
            let measured = entry["memory"]["kv"].as_f64().unwrap_or(f64::NAN);
            let estimated = entry["estimate"]["kv"].as_f64().unwrap_or(f64::NAN);
            samples.kv_mb.push(mb(measured));
            samples
                .estimate_error
                .push((estimated - measured) / measured * 100.0);
        }
    }
    let f16 = &samples[0];
    for (kind, s) in KINDS.iter().zip(&samples).skip(1) {
        let note = if model.kv_allocated_at_load {
            format!(
                "Headroom with kv_cache_type = {kind} ÷ Headroom with f16; {SLOTS} slots × {CONTEXT} tokens"
            )
        } else {
            format!("Headroom with kv_cache_type = {kind} ÷ Headroom with f16; one sequence, the cache the same requests grew")
        };
        rows.push(
            model
                .compared_in_turns(
                    &format!("KV cache {kind} ÷ f16"),
                    "MB",
                    &s.kv_mb,
                    &f16.kv_mb,
                )
                .note(note.clone()),
        );
        rows.push(
            model
                .compared_in_turns(
                    &format!("generation with a {kind} KV cache ÷ f16"),
                    "tok/s",
                    &s.rate,
                    &f16.rate,
                )
                .note(note),
        );
    }
    for (kind, s) in KINDS.iter().zip(&samples) {
        if !model.kv_allocated_at_load {
            break;
        }
        rows.push(
            Row::new(format!("KV cache estimate error, {kind}"), "%")
                .model(model.name)
                .headroom(crate::stats::Figure::of(&s.estimate_error))
                .note("estimate ÷ measured − 1, before the load; the goal is within 10 %"),
        );
    }
    Ok(())
}
