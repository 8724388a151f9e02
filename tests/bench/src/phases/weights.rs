//! What keeping model files safe from writers costs: Headroom's default (weights mapped from the
//! file, which a read lease keeps from changing under them) beside `map_weights = false`
//! (weights read into the process's memory, which nothing done to the file can reach). Load
//! time cold and warm, and what the loaded model holds as anonymous memory and as file pages.
//! Both servers run at once and take turns, run by run.
//!
//! The rows use the table's reference column for the `map_weights = false` server: both
//! columns are Headroom, and each row says so.

use anyhow::Context as _;

use super::{counting, mb, Context, Model};
use crate::process::{drop_page_cache, rss, rss_anon};
use crate::servers::Headroom;

#[derive(Default)]
struct Samples {
    cold_ms: Vec<f64>,
    warm_ms: Vec<f64>,
    anon_mb: Vec<f64>,
    file_mb: Vec<f64>,
}

const COLUMNS: &str = "Headroom column: the default, weights mapped (read lease); reference column: Headroom with map_weights = false, weights read into memory";

pub async fn run(
    cx: &Context,
    model: Model,
    rows: &mut Vec<crate::report::Row>,
) -> anyhow::Result<()> {
    let file = cx.model_path(model);
    let mapped = cx.start_headroom(1).await?;
    let in_memory = cx
        .start_headroom_with(1, &[("HEADROOM_MAP_WEIGHTS", "false")])
        .await?;
    let mut samples: [Samples; 2] = Default::default();
    for _ in 0..cx.runs {
        for cold in [true, false] {
            for (server, samples) in [&mapped, &in_memory].into_iter().zip(&mut samples) {
                if cold {
                    drop_page_cache(&file)?;
                }
                measure(server, model, cold, samples).await?;
            }
        }
    }
    let [ours, theirs] = &samples;
    let row = |metric: &str, unit: &str, a: &[f64], b: &[f64]| {
        model.compared_in_turns(metric, unit, a, b).note(COLUMNS)
    };
    rows.push(row(
        "weights mapped ÷ in memory: load, cold",
        "ms",
        &ours.cold_ms,
        &theirs.cold_ms,
    ));
    rows.push(row(
        "weights mapped ÷ in memory: load, warm",
        "ms",
        &ours.warm_ms,
        &theirs.warm_ms,
    ));
    rows.push(row(
        "weights mapped ÷ in memory: anonymous memory, model loaded",
        "MB",
        &ours.anon_mb,
        &theirs.anon_mb,
    ));
    rows.push(row(
        "weights mapped ÷ in memory: file pages, model loaded",
        "MB",
        &ours.file_mb,
        &theirs.file_mb,
    ));
    Ok(())
}

/// One load, one short request (the KV cache and compute buffers are touched by the first),
/// the process's memory read, one unload.
async fn measure(
    server: &Headroom,
    model: Model,
    cold: bool,
    samples: &mut Samples,
) -> anyhow::Result<()> {
    let pid = server.pid();
    let (anon_before, all_before) = (rss_anon(pid)? as f64, rss(pid)? as f64);
    let (took, _) = server.load(model.id).await?;
    server
        .endpoint
        .post("/v1/completions", &counting(model, 0, 8))
        .await
        .context("a first request")?;
    let (anon, all) = (rss_anon(pid)? as f64, rss(pid)? as f64);
    server.unload(model.id).await?;
    let ms = took.as_secs_f64() * 1e3;
    if cold {
        samples.cold_ms.push(ms);
    } else {
        samples.warm_ms.push(ms);
        let anon_grew = anon - anon_before;
        samples.anon_mb.push(mb(anon_grew));
        // Resident file pages (the rest of RSS, bar shared memory, which Headroom has none of).
        samples.file_mb.push(mb((all - all_before) - anon_grew));
    }
    Ok(())
}
