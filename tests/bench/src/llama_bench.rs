//! llama.cpp's own `llama-bench`, built by scripts/bench/reference.sh twice from the same tool
//! sources: on the reference's llama.cpp and on the one Headroom links. It decodes with no
//! server around it, so its two rates say how much of a gap between the servers is the two
//! llama.cpp builds under them, and each server's rate over its own build's says what serving
//! costs.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::Value;
use tokio::process::Command;

/// The two `llama-bench` binaries.
pub struct Builds {
    /// On the llama.cpp Headroom links (llama-cpp-sys-2's copy).
    pub headroom: PathBuf,
    /// On the reference llama-server's llama.cpp.
    pub reference: PathBuf,
}

/// Tokens per second over `tokens` single-token decodes from an empty context, with no
/// sampling, after llama-bench's own warm-up decode; one repetition.
pub async fn generation_rate(
    binary: &Path,
    model: &Path,
    threads: u32,
    tokens: u32,
) -> anyhow::Result<f64> {
    let (tokens_arg, threads_arg) = (tokens.to_string(), threads.to_string());
    let args = ["-p", "0", "-n", &tokens_arg, "-r", "1", "-t", &threads_arg];
    let (stdout, _) = run(binary, model, &args).await?;
    parse(&stdout, tokens)
}

/// Wall time of a whole llama-bench process that loads the model, makes its context, decodes
/// one token and exits: an upper bound on what loading takes in that llama.cpp build alone.
pub async fn load_time(binary: &Path, model: &Path, threads: u32) -> anyhow::Result<Duration> {
    let threads_arg = threads.to_string();
    let args = [
        "-p",
        "0",
        "-n",
        "1",
        "-r",
        "1",
        "--no-warmup",
        "-t",
        &threads_arg,
    ];
    let (_, took) = run(binary, model, &args).await?;
    Ok(took)
}

/// Runs llama-bench on `model` with `args`: its JSON lines, and how long the whole process took.
async fn run(binary: &Path, model: &Path, args: &[&str]) -> anyhow::Result<(String, Duration)> {
    let started = Instant::now();
    let output = Command::new(binary)
        .arg("-m")
        .arg(model)
        .args(args)
        .args(["-o", "jsonl"])
        .output()
        .await
        .with_context(|| format!("run {}", binary.display()))?;
    let took = started.elapsed();
    if !output.status.success() {
        bail!(
            "{} failed ({}): {}",
            binary.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok((String::from_utf8_lossy(&output.stdout).into_owned(), took))
}

/// The generation test's rate from llama-bench's JSON lines (one object per test).
fn parse(jsonl: &str, tokens: u32) -> anyhow::Result<f64> {
    for line in jsonl.lines().filter(|l| !l.trim().is_empty()) {
        let test: Value = serde_json::from_str(line)
            .with_context(|| format!("llama-bench printed a line that is not JSON: {line}"))?;
        if test["n_gen"].as_u64() == Some(u64::from(tokens)) && test["n_prompt"].as_u64() == Some(0)
        {
            return test["avg_ts"]
                .as_f64()
                .filter(|r| r.is_finite() && *r > 0.0)
                .with_context(|| format!("llama-bench's generation test has no rate: {line}"));
        }
    }
    bail!("llama-bench printed no {tokens}-token generation test: {jsonl}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Trimmed from a real `llama-bench -p 0 -n 128 -o jsonl` line (b11312).
    const LINE: &str = r#"{"build_commit": "0c1e570", "build_number": 11312, "model_type": "llama ?B Q4_1", "n_threads": 2, "n_prompt": 0, "n_gen": 128, "n_depth": 0, "avg_ns": 1283612345, "stddev_ns": 0, "avg_ts": 99.718, "stddev_ts": 0.0, "samples_ns": [1283612345], "samples_ts": [99.718]}"#;

    #[test]
    fn reads_the_generation_rate() {
        let rate = parse(&format!("{LINE}\n"), 128).expect("rate");
        assert!((rate - 99.718).abs() < 1e-9);
    }

    #[test]
    fn a_missing_test_or_rate_is_an_error() {
        assert!(parse(LINE, 64).is_err());
        assert!(parse("", 128).is_err());
        assert!(parse("not json", 128).is_err());
        let no_rate = LINE.replace("\"avg_ts\": 99.718,", "");
        assert!(parse(&no_rate, 128).is_err());
    }
}
