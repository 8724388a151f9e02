//! The MLX engine beside mlx-lm itself (Python, the same model folder, the same libmlx): the
//! generation and prompt rates, timed the same way (the first and last token of a stream, from
//! the request), in turns. Headroom runs without its prompt cache and mlx-lm with a fresh cache
//! per prompt, so both compute every prompt token.

use std::path::PathBuf;
use std::process::Command;

use anyhow::Context as _;
use serde_json::Value;

use super::{counting, long_prompt, Context, Model};
use crate::report::Row;

/// SmolLM2-135M converted to an MLX folder (scripts/convert-mlx-model.py).
pub const MLX_MODEL: Model = Model {
    id: "SmolLM2-135M-Instruct-mlx",
    name: "SmolLM2-135M (MLX)",
    warm_load_goal_ms: None,
    kv_allocated_at_load: false,
};

const GENERATED: u32 = 64;

/// One timed generation: (prompt tokens per second to the first token, tokens per second after).
fn rates(prompt_tokens: f64, first: f64, last: f64, completion: f64) -> (f64, f64) {
    let prompt = prompt_tokens / first;
    let generation = if completion > 1.0 && last > first {
        (completion - 1.0) / (last - first)
    } else {
        f64::NAN
    };
    (prompt, generation)
}

/// mlx-lm's timings of `prompts`, one model load for all (scripts/bench/mlx_lm_speed.py).
fn mlx_lm(
    cx: &Context,
    python: &PathBuf,
    prompts: &[String],
    max_tokens: u32,
) -> anyhow::Result<Vec<Value>> {
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/bench/mlx_lm_speed.py");
    let output = Command::new("python3")
        .arg(script)
        .arg(cx.models_dir.join(MLX_MODEL.id))
        .arg(max_tokens.to_string())
        .args(prompts)
        .env("PYTHONPATH", python)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .context("running mlx_lm_speed.py")?;
    anyhow::ensure!(
        output.status.success(),
        "mlx-lm failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).context("mlx_lm_speed.py's output"))
        .collect()
}

pub async fn run(cx: &Context, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let python = cx
        .mlx_python
        .clone()
        .context("--mlx-python (the folder scripts/bench.sh installs mlx-lm into) is needed")?;
    let model = MLX_MODEL;
    let server = cx.start_headroom_uncached(1).await?;
    server.load(model.id).await?;
    let (mut ours_gen, mut theirs_gen, mut ours_prompt, mut theirs_prompt) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for run in 0..cx.runs {
        // Turns: Headroom's request, then mlx-lm's on the same two prompts.
        let counting = counting(model, run, GENERATED);
        let long = long_prompt(model, run);
        let gen = server.endpoint.stream_completion(&counting).await?;
        let read = server.endpoint.stream_completion(&long).await?;
        ours_gen.push(gen.generation_rate().unwrap_or(f64::NAN));
        ours_prompt.push(read.prompt_rate().unwrap_or(f64::NAN));
        let prompts =
            [&counting, &long].map(|b| b["prompt"].as_str().unwrap_or_default().to_string());
        let timed = mlx_lm(cx, &python, &prompts, GENERATED)?;
        let number = |v: &Value, key: &str| v[key].as_f64().unwrap_or(f64::NAN);
        let (_, generation) = rates(
            number(&timed[0], "prompt_tokens"),
            number(&timed[0], "first"),
            number(&timed[0], "last"),
            number(&timed[0], "completion_tokens"),
        );
        let (prompt, _) = rates(
            number(&timed[1], "prompt_tokens"),
            number(&timed[1], "first"),
            number(&timed[1], "last"),
            number(&timed[1], "completion_tokens"),
        );
        theirs_gen.push(generation);
        theirs_prompt.push(prompt);
        eprintln!(
            "run {run}: generation {:.1} vs {:.1} tok/s, prompt {:.0} vs {:.0} tok/s",
            ours_gen[run], generation, ours_prompt[run], prompt
        );
    }
    let note = "Headroom's MLX engine ÷ mlx_lm.stream_generate (Python), same folder and libmlx \
                (the mlx-cpu wheel's CPU backend), greedy, no prompt cache on either; the reference \
                column is mlx-lm";
    rows.push(
        model
            .compared_in_turns("MLX generation", "tok/s", &ours_gen, &theirs_gen)
            .note(note),
    );
    rows.push(
        model
            .compared_in_turns(
                "MLX prompt processing",
                "tok/s",
                &ours_prompt,
                &theirs_prompt,
            )
            .note(note),
    );
    Ok(())
}
