//! Another app allocating fast beside a busy model, Headroom beside an earlier build of itself
//! (`--baseline-headroom`: the monitor that looked once a second and knew no growth rate) in one
//! run. The scenario of `tests/e2e/bursts.rs`: a v1 memory cgroup of 1200 MiB, no swap, the
//! server inside with Gemma 3 270M streaming a story, and a process in the same cgroup taking
//! 1100 MiB in steps every 50 ms and holding it.
//!
//! Two figures per server: from the allocator's start to the model's memory freed (the
//! `unloaded` event reaching the benchmark), at 400 MiB/s; and the largest rate survived,
//! doubling from 100 MiB/s until the kernel kills something in the cgroup.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::json;

use super::pressure::MemoryCgroup;
use super::{Context, Model};
use crate::process::join_cgroups;
use crate::report::Row;
use crate::servers::{Headroom, HeadroomLaunch};
use crate::stats::Figure;

const LIMIT: u64 = 1200 << 20;
const TAKEN_MIB: u64 = 1100;
/// The rate of the timed runs.
const TIMED_RATE: u64 = 400;
/// Doubling from here until a kill.
const RATES: [u64; 6] = [100, 200, 400, 800, 1600, 3200];

/// The allocator (see the script).
const ALLOCATOR: &str = include_str!("../../../e2e/allocate.py");

/// What one burst came to.
struct Outcome {
    /// Something in the cgroup was OOM-killed (the allocator, as a rule).
    killed: bool,
    /// From the allocator's start to the model's `unloaded` event.
    freed_after: Option<Duration>,
}

pub async fn run(cx: &Context, model: Model, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let baseline = cx
        .baseline_headroom
        .as_deref()
        .context("the bursts phase needs --baseline-headroom (an earlier build to compare with)")?;
    let servers = [cx.headroom.as_path(), baseline];
    let mut freed: [Vec<f64>; 2] = Default::default();
    let runs = cx.runs.min(5);
    for _ in 0..runs {
        for (binary, freed) in servers.iter().zip(&mut freed) {
            let outcome = burst(cx, binary, model, TIMED_RATE).await?;
            // A run that ended in a kill has no time to memory freed that means anything.
            if let Some(after) = outcome.freed_after.filter(|_| !outcome.killed) {
                freed.push(after.as_secs_f64() * 1e3);
            } else {
                freed.push(f64::NAN);
            }
        }
    }
    let mut survived = [0u64; 2];
    for (binary, best) in servers.iter().zip(&mut survived) {
        for rate in RATES {
            // Twice each: a rate survived once by luck is not survived.
            let mut kept = true;
            for _ in 0..2 {
                kept &= !burst(cx, binary, model, rate).await?.killed;
            }
            if !kept {
                break;
            }
            *best = rate;
        }
    }
    let label = "reference column: the earlier build given as --baseline-headroom (one look a second, no growth rate)";
    rows.push(
        model
            .compared_in_turns(
                &format!("burst of {TIMED_RATE} MiB/s beside a generation: allocator start to memory freed"),
                "ms",
                &freed[0],
                &freed[1],
            )
            .note(format!(
                "1200 MiB cgroup, 1100 MiB taken; a run that ended in an OOM kill counts as no figure; {label}"
            )),
    );
    rows.push(
        Row::new(
            "burst beside a generation: largest rate survived twice",
            "MiB/s",
        )
        .model(model.name)
        .headroom(Figure::of(&[survived[0] as f64]))
        .reference(Figure::of(&[survived[1] as f64]))
        .note(format!(
            "doubling from 100 MiB/s up to 3200 until an OOM kill in the cgroup; {label}"
        )),
    );
    Ok(())
}

/// One burst on a fresh cgroup and server.
async fn burst(cx: &Context, binary: &Path, model: Model, rate: u64) -> anyhow::Result<Outcome> {
    let cgroup = MemoryCgroup::create(LIMIT)?;
    let headroom = Headroom::start(HeadroomLaunch {
        binary,
        models_dir: &cx.models_dir,
        shape: cx.shape(2),
        cgroups: &cgroup.folders(),
        desktop: None,
        env: &[],
    })
    .await?;
    headroom.load(model.id).await?;
    let story = tokio::spawn({
        let endpoint = headroom.endpoint.clone();
        let body = json!({
            "model": model.id, "temperature": 0, "max_tokens": 2000, "stream": true,
            "messages": [{"role": "user", "content": "Tell me a very long story about a lighthouse keeper."}],
        });
        async move { endpoint.post("/v1/chat/completions", &body).await }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mark = headroom.events.mark();
    let started = Instant::now();
    let allocator = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{}exec python3 -c \"$0\" {rate} {TAKEN_MIB} 2",
            join_cgroups(&cgroup.folders())
        ))
        .arg(ALLOCATOR)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("start the allocator")?;
    let status = tokio::task::spawn_blocking(move || {
        let mut allocator = allocator;
        allocator.wait()
    })
    .await??;
    let unloaded = headroom
        .events
        .wait_for(mark, Duration::from_millis(100), "unloaded", |e| {
            e["type"] == "unloaded" && e["model"] == model.id
        })
        .await
        .ok();
    story.abort();
    let killed = !status.success() || cgroup.oom_kills() > 0;
    let freed_after = unloaded.map(|(at, _)| at.saturating_duration_since(started));
    eprintln!(
        "    {} at {rate} MiB/s: allocator {status}, OOM kills {}, model unloaded after {freed_after:?}",
        binary.display(),
        cgroup.oom_kills()
    );
    drop(headroom);
    Ok(Outcome {
        killed,
        freed_after,
    })
}
