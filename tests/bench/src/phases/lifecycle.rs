//! A model's way in and out of memory: load time cold (its file's pages dropped from the page
//! cache first) and warm, Stop to unloaded, the memory that comes back, and how close the
//! pre-load estimate was to what the load really took.

use anyhow::Context as _;

use super::{counting, mb, Context, Model};
use crate::llama_bench;
use crate::process::{drop_page_cache, rss};
use crate::report::{Goal, Row};
use crate::servers::Reference;
use crate::stats::Figure;

#[derive(Default)]
struct Samples {
    cold_ms: Vec<f64>,
    warm_ms: Vec<f64>,
    unload_ms: Vec<f64>,
    returned_percent: Vec<f64>,
    /// The whole process's RSS with the model loaded.
    process_mb: Vec<f64>,
    estimate_error_percent: Vec<f64>,
}

pub async fn run(cx: &Context, model: Model, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let file = cx.model_path(model);
    let headroom = cx.start_headroom(1).await?;
    let mut ours = Samples::default();
    for _ in 0..cx.runs {
        for cold in [true, false] {
            if cold {
                drop_page_cache(&file)?;
            }
            let before = rss(headroom.pid())? as f64;
            let (took, _) = headroom.load(model.id).await?;
            ours.process_mb.push(mb(rss(headroom.pid())? as f64));
            // The estimate is of a model that has served: KV pages and compute buffers are
            // only touched by the first request, so compare after one.
            headroom
                .endpoint
                .post("/v1/completions", &counting(model, 0, 16))
                .await?;
            let status = headroom.endpoint.get("/api/memory/status").await?;
            let held = &status["models"][0];
            let footprint = held["memory"]["total"]
                .as_f64()
                .with_context(|| format!("no measured memory in {status}"))?;
            let estimate = held["estimate"]["total"]
                .as_f64()
                .with_context(|| format!("no estimate in {status}"))?;
            let (unload_took, _) = headroom.unload(model.id).await?;
            let after = rss(headroom.pid())? as f64;
            let ms = took.as_secs_f64() * 1e3;
            if cold {
                ours.cold_ms.push(ms);
            } else {
                ours.warm_ms.push(ms);
            }
            ours.unload_ms.push(unload_took.as_secs_f64() * 1e3);
            // What stayed behind after the unload, against what the model held.
            let kept = (after - before).max(0.0);
            ours.returned_percent
                .push(100.0 * (footprint - kept).max(0.0) / footprint);
            ours.estimate_error_percent
                .push(100.0 * (estimate - footprint) / footprint);
        }
    }
    drop(headroom);

    let mut theirs = Samples::default();
    for _ in 0..cx.runs {
        for cold in [true, false] {
            if cold {
                drop_page_cache(&file)?;
            }
            let (reference, took) = Reference::start(&cx.reference, &file, cx.shape(1)).await?;
            theirs.process_mb.push(mb(rss(reference.pid())? as f64));
            let ms = took.as_secs_f64() * 1e3;
            if cold {
                theirs.cold_ms.push(ms);
            } else {
                theirs.warm_ms.push(ms);
            }
        }
    }

    // The same file, warm, loaded by each llama.cpp build with no server: what of a warm load
    // is the library's. The two builds take turns.
    let mut alone: [Vec<f64>; 2] = Default::default();
    if let Some(builds) = &cx.llama_bench {
        for _ in 0..cx.runs {
            for (binary, times) in [&builds.headroom, &builds.reference]
                .into_iter()
                .zip(&mut alone)
            {
                let took = llama_bench::load_time(binary, &file, cx.threads).await?;
                times.push(took.as_secs_f64() * 1e3);
            }
        }
    }

    rows.push(
        model
            .compared("load, cold", "ms", &ours.cold_ms, &theirs.cold_ms)
            .note("reference: process start to /health ready"),
    );
    let warm = model.compared("load, warm", "ms", &ours.warm_ms, &theirs.warm_ms);
    rows.push(match model.warm_load_goal_ms {
        Some(goal) => warm.goal(Goal::AtMost(goal)),
        None => warm,
    });
    if cx.llama_bench.is_some() {
        rows.push(
            model
                .compared_in_turns("load, warm: llama.cpp alone", "ms", &alone[0], &alone[1])
                .note(
                    "a whole llama-bench process (start, load, context, one token, exit): \
                     Headroom's llama.cpp build ÷ the reference's",
                ),
        );
    }
    rows.push(
        Row::new("unload: Stop to unloaded event", "ms")
            .model(model.name)
            .headroom(Figure::of(&ours.unload_ms))
            .goal(Goal::AtMost(100.0))
            .note("llama-server cannot unload; its process exits"),
    );
    rows.push(
        Row::new("unload: memory returned", "% of footprint")
            .model(model.name)
            .headroom(Figure::of(&ours.returned_percent))
            .goal(Goal::AtLeast(98.0))
            .note("process RSS before load vs after unload"),
    );
    rows.push(
        model
            .compared(
                "process RSS, model loaded",
                "MB",
                &ours.process_mb,
                &theirs.process_mb,
            )
            .note("right after the load, before any request"),
    );
    rows.push(
        Row::new("pre-load estimate error", "%")
            .model(model.name)
            .headroom(Figure::of(&ours.estimate_error_percent))
            .goal(Goal::Within(10.0))
            .note("(estimate − measured) ÷ measured, after one request"),
    );
    Ok(())
}
