//! Headroom beside llama.cpp's own `llama-server`, on the same machine, model, threads and
//! context, in one run: speed, load and unload, memory returned, concurrency, pressure
//! reaction and idle footprint. Prints a table (metric, Headroom, reference, ratio, goal) and
//! writes the figures as JSON; after a full run, `--docs` writes the table into
//! docs/benchmarks.md. `scripts/bench.sh` builds everything it needs and runs it.
//!
//! `headroom-bench --render RUN.json --docs docs/benchmarks.md` writes an earlier run's table.

mod client;
mod docs_table;
mod llama_bench;
mod oha;
mod phases;
mod process;
mod report;
mod servers;
mod stats;

use std::path::PathBuf;
use std::process::Command;

use anyhow::Context as _;
use clap::Parser;

use phases::{Context, MODELS};
use report::Row;

#[derive(Parser)]
#[command(about = "Headroom beside llama-server: one run, one table.")]
struct Args {
    /// The `headroom` binary (a release build).
    #[arg(long)]
    headroom: PathBuf,
    /// `headroom` built without the `gui` feature (idle figure of the backend alone).
    #[arg(long)]
    headless_build: Option<PathBuf>,
    /// An earlier `headroom` build for the bursts phase to compare with (its rows say so).
    #[arg(long)]
    baseline_headroom: Option<PathBuf>,
    /// The reference `llama-server` (scripts/bench/reference.sh builds it).
    #[arg(long)]
    reference: PathBuf,
    /// What the reference is, for the output ("llama.cpp b11312 …").
    #[arg(long, default_value = "llama-server")]
    reference_version: String,
    /// What Headroom's llama.cpp is, for the output.
    #[arg(long, default_value = "")]
    headroom_llama: String,
    /// `llama-bench` on the llama.cpp Headroom links (scripts/bench/reference.sh builds it):
    /// with the next, the speed phase also measures the two llama.cpp builds without a server.
    #[arg(long, requires = "reference_llama_bench")]
    headroom_llama_bench: Option<PathBuf>,
    /// `llama-bench` on the reference's llama.cpp.
    #[arg(long, requires = "headroom_llama_bench")]
    reference_llama_bench: Option<PathBuf>,
    /// The `oha` load generator.
    #[arg(long)]
    oha: PathBuf,
    /// The folder with SmolLM2-135M and Gemma 3 270M.
    #[arg(long)]
    models_dir: PathBuf,
    /// Large scratch files (on disk, not tmpfs).
    #[arg(long)]
    scratch: PathBuf,
    /// Criterion's output folder, for the micro-benchmark rows.
    #[arg(long)]
    criterion: Option<PathBuf>,
    /// MLX for Python with mlx-lm, for the MLX phase's reference (scripts/bench.sh installs it).
    #[arg(long)]
    mlx_python: Option<PathBuf>,
    #[arg(long, default_value_t = 2)]
    threads: u32,
    /// Tokens of context per slot, on both servers.
    #[arg(long, default_value_t = 1024)]
    context: u32,
    /// Runs per figure. Eleven: at five, the medians of two servers taking turns still moved by
    /// up to 8 % between whole runs of the benchmark on this machine.
    #[arg(long, default_value_t = 11)]
    runs: usize,
    /// Seconds of idle sampling.
    #[arg(long, default_value_t = 60)]
    idle_seconds: u64,
    /// Only these phases (speed, mlx, multiturn, kvtype, concurrency, lifecycle, weights, pressure, bursts, idle, micro).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Where the JSON goes.
    #[arg(long)]
    json: PathBuf,
    /// After a full run (no `--only`), write the table into this Markdown file, between its
    /// bench-table markers.
    #[arg(long)]
    docs: Option<PathBuf>,
}

/// Writes an earlier run's table, measuring nothing.
#[derive(Parser)]
struct Render {
    /// The run's JSON.
    #[arg(long)]
    render: PathBuf,
    /// The Markdown file with the bench-table markers.
    #[arg(long)]
    docs: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if let Ok(render) = Render::try_parse() {
        docs_table::write(&render.render, &render.docs)?;
        println!(
            "{}: table of {}",
            render.docs.display(),
            render.render.display()
        );
        return Ok(());
    }
    let args = Args::parse();
    let cx = Context {
        headroom: args.headroom.clone(),
        headless_build: args.headless_build.clone(),
        baseline_headroom: args.baseline_headroom.clone(),
        reference: args.reference.clone(),
        oha: args.oha.clone(),
        models_dir: args.models_dir.clone(),
        scratch: args.scratch.clone(),
        threads: args.threads,
        context_per_slot: args.context,
        runs: args.runs,
        idle_seconds: args.idle_seconds,
        criterion: args.criterion.clone(),
        mlx_python: args.mlx_python.clone(),
        llama_bench: args
            .headroom_llama_bench
            .clone()
            .zip(args.reference_llama_bench.clone())
            .map(|(headroom, reference)| llama_bench::Builds {
                headroom,
                reference,
            }),
    };
    let wanted = |phase: &str| args.only.is_empty() || args.only.iter().any(|p| p == phase);
    let mut rows: Vec<Row> = Vec::new();
    let mut failures = Vec::new();
    // Each phase adds its rows or its failure; the rest still run.
    let mut outcome = |phase: String, result: anyhow::Result<()>| {
        if let Err(e) = result {
            eprintln!("{phase}: failed: {e:#}");
            failures.push(format!("{phase}: {e:#}"));
        }
    };
    for model in MODELS {
        if wanted("speed") {
            eprintln!("==> speed: {}", model.name);
            outcome(
                format!("speed, {}", model.name),
                phases::speed::run(&cx, model, &mut rows).await,
            );
        }
        if wanted("multiturn") {
            eprintln!("==> multi-turn chat: {}", model.name);
            outcome(
                format!("multi-turn chat, {}", model.name),
                phases::multiturn::run(&cx, model, &mut rows).await,
            );
        }
        if wanted("kvtype") {
            eprintln!("==> KV cache types: {}", model.name);
            outcome(
                format!("KV cache types, {}", model.name),
                phases::kvtype::run(&cx, model, &mut rows).await,
            );
        }
        if wanted("concurrency") {
            for clients in [4, 8] {
                eprintln!("==> {clients} at once: {}", model.name);
                outcome(
                    format!("{clients} at once, {}", model.name),
                    phases::concurrency::run(&cx, model, clients, &mut rows).await,
                );
            }
        }
        if wanted("lifecycle") {
            eprintln!("==> load and unload: {}", model.name);
            outcome(
                format!("load and unload, {}", model.name),
                phases::lifecycle::run(&cx, model, &mut rows).await,
            );
        }
        if wanted("weights") {
            eprintln!("==> weights mapped and in memory: {}", model.name);
            outcome(
                format!("weights mapped and in memory, {}", model.name),
                phases::weights::run(&cx, model, &mut rows).await,
            );
        }
    }
    if wanted("mlx") {
        eprintln!("==> MLX: {}", phases::mlx::MLX_MODEL.name);
        outcome(
            format!("MLX, {}", phases::mlx::MLX_MODEL.name),
            phases::mlx::run(&cx, &mut rows).await,
        );
    }
    if wanted("kvtype") {
        let model = phases::mlx::MLX_MODEL;
        eprintln!("==> KV cache types: {}", model.name);
        outcome(
            format!("KV cache types, {}", model.name),
            phases::kvtype::run(&cx, model, &mut rows).await,
        );
    }
    if wanted("pressure") {
        eprintln!("==> pressure: {}", MODELS[0].name);
        outcome(
            "pressure".into(),
            phases::pressure::run(&cx, MODELS[0], &mut rows).await,
        );
    }
    // Only with an earlier build to compare with: a full run without one skips it.
    if wanted("bursts") && (cx.baseline_headroom.is_some() || !args.only.is_empty()) {
        eprintln!("==> bursts beside a generation: {}", MODELS[1].name);
        outcome(
            "bursts".into(),
            phases::bursts::run(&cx, MODELS[1], &mut rows).await,
        );
    }
    if wanted("idle") {
        eprintln!("==> idle ({} s each)", cx.idle_seconds);
        outcome("idle".into(), phases::idle::run(&cx, &mut rows).await);
    }
    if wanted("micro") {
        if let Some(dir) = &cx.criterion {
            outcome("micro".into(), phases::micro::rows(dir, &mut rows));
        }
    }

    let run = docs_table::Run {
        date: command_line("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
        machine: machine(),
        reference: args.reference_version.clone(),
        headroom_llama: args.headroom_llama.clone(),
        threads: cx.threads,
        context_per_slot: cx.context_per_slot,
        runs: cx.runs,
        rows,
        failures,
    };
    println!("\n{}\n", run.heading());
    println!("{}", report::table(&run.rows));
    std::fs::write(&args.json, serde_json::to_string_pretty(&run)?)
        .with_context(|| format!("write {}", args.json.display()))?;
    println!("figures: {}", args.json.display());
    match &args.docs {
        Some(docs) if args.only.is_empty() => {
            // The figures go beside the document, so its table can be written again from them.
            let kept = docs.with_extension("json");
            std::fs::copy(&args.json, &kept)
                .with_context(|| format!("copy the figures to {}", kept.display()))?;
            docs_table::write(&kept, docs)?;
            println!(
                "table written into {}, from {}",
                docs.display(),
                kept.display()
            );
        }
        Some(docs) => println!(
            "a partial run (--only): {} keeps the table it has",
            docs.display()
        ),
        None => {}
    }
    let failures = run.failures;
    if !failures.is_empty() {
        anyhow::bail!(
            "{} phase(s) failed:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
    Ok(())
}

/// "Intel Xeon … · 2 cores · 24 GiB · Linux 6.1": what the figures were measured on.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let ram = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    format!(
        "{cpu} · {cores} cores · {ram:.0} GiB · Linux {}",
        command_line("uname", &["-r"])
    )
}

fn command_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
