//! Generation and prompt speed, and time to first token, over HTTP: both servers loaded side by
//! side with one slot each, measured in turns, so drift in the machine's speed hits both alike.
//! Neither keeps a prompt cache here (the engine-to-engine comparison; multiturn.rs measures
//! the caches).
//! With llama-bench built on both llama.cpp builds, each run also decodes without a server on
//! each, so a gap between the servers can be split into the llama.cpp builds' and the servers'.

use anyhow::Context as _;

use super::{counting, long_prompt, Context, Model};
use crate::client::{Endpoint, StreamTiming};
use crate::llama_bench;
use crate::oha;
use crate::report::{Goal, Row};
use crate::servers::Reference;

/// Tokens each generation request asks for.
const GENERATED: u32 = 128;

#[derive(Default)]
struct Samples {
    generation: Vec<f64>,
    ttft_ms: Vec<f64>,
    prompt: Vec<f64>,
    ttft_long_ms: Vec<f64>,
    /// llama-bench's rate on this server's llama.cpp build, no server.
    alone: Vec<f64>,
    /// The streamed generation rate over `alone` in the same run, in percent.
    served: Vec<f64>,
}

impl Samples {
    /// A run without a rate adds NaN, not nothing: the servers' samples stay in step, run by
    /// run, for the ratios in turns (NaN drops out of every figure).
    fn add(&mut self, short: &StreamTiming, long: &StreamTiming) {
        self.generation
            .push(short.generation_rate().unwrap_or(f64::NAN));
        self.ttft_ms.push(short.first_piece.as_secs_f64() * 1e3);
        self.prompt.push(long.prompt_rate().unwrap_or(f64::NAN));
        self.ttft_long_ms.push(long.first_piece.as_secs_f64() * 1e3);
    }

    fn add_alone(&mut self, alone: f64, short: &StreamTiming) {
        self.alone.push(alone);
        self.served.push(
            short
                .generation_rate()
                .map_or(f64::NAN, |rate| 100.0 * rate / alone),
        );
    }
}

/// The non-streamed rates, per server (Headroom, the reference) and run: `oha` sends one
/// request per server per run.
struct Whole {
    generation: [Vec<f64>; 2],
    prompt: [Vec<f64>; 2],
}

pub async fn run(cx: &Context, model: Model, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let headroom = cx.start_headroom_uncached(1).await?;
    headroom.load(model.id).await?;
    let (reference, _) =
        Reference::start(&cx.reference, &cx.model_path(model), cx.shape(1)).await?;
    let targets = [&headroom.endpoint, &reference.endpoint];

    // The first request on a fresh load faults the weights in; neither side is timed on it.
    for target in targets {
        target.stream_completion(&counting(model, 999, 8)).await?;
    }
    let mut samples = [Samples::default(), Samples::default()];
    let alone = cx.llama_bench.as_ref().map(|b| [&b.headroom, &b.reference]);
    for run in 0..cx.runs {
        let mut shorts = Vec::with_capacity(2);
        for (target, samples) in targets.iter().zip(samples.iter_mut()) {
            let short = target
                .stream_completion(&counting(model, run, GENERATED))
                .await?;
            let long = target.stream_completion(&long_prompt(model, run)).await?;
            samples.add(&short, &long);
            shorts.push(short);
        }
        // The servers sit idle (their threads asleep) while llama-bench runs.
        for ((binary, samples), short) in alone.iter().flatten().zip(&mut samples).zip(&shorts) {
            let rate =
                llama_bench::generation_rate(binary, &cx.model_path(model), cx.threads, GENERATED)
                    .await?;
            samples.add_alone(rate, short);
        }
    }
    let whole = non_streamed(cx, model, targets).await?;

    let [h, r] = &samples;
    rows.push(
        model
            .compared_in_turns(
                "generation, streamed",
                "tok/s",
                &h.generation,
                &r.generation,
            )
            .goal(Goal::RatioAtLeast(0.98)),
    );
    rows.push(
        model
            .compared_in_turns(
                "generation, not streamed",
                "tok/s",
                &whole.generation[0],
                &whole.generation[1],
            )
            .goal(Goal::RatioAtLeast(0.98))
            .note(format!("{GENERATED} tokens, whole request")),
    );
    if alone.is_some() {
        rows.push(
            model
                .compared_in_turns("generation, llama.cpp alone", "tok/s", &h.alone, &r.alone)
                .note(format!(
                    "llama-bench, {GENERATED} tokens, no server: \
                 Headroom's llama.cpp build ÷ the reference's"
                )),
        );
        rows.push(
            model
                .compared_in_turns(
                    "generation, streamed ÷ llama.cpp alone",
                    "%",
                    &h.served,
                    &r.served,
                )
                .goal(Goal::RatioAtLeast(0.98))
                .note(
                    "each server's rate over its own llama.cpp build's in the same run: \
                 what serving costs, with the builds taken out",
                ),
        );
    }
    rows.push(
        model
            .compared_in_turns("prompt, streamed", "tok/s", &h.prompt, &r.prompt)
            .note("to the first token"),
    );
    rows.push(model.compared_in_turns(
        "prompt, not streamed",
        "tok/s",
        &whole.prompt[0],
        &whole.prompt[1],
    ));
    rows.push(
        model
            .compared_in_turns("TTFT, short prompt", "ms", &h.ttft_ms, &r.ttft_ms)
            .goal(Goal::RatioAtMost(1.05)),
    );
    rows.push(
        model
            .compared_in_turns(
                "TTFT, ~500-token prompt",
                "ms",
                &h.ttft_long_ms,
                &r.ttft_long_ms,
            )
            .goal(Goal::RatioAtMost(1.05)),
    );
    Ok(())
}

/// Rates from whole (non-streamed) requests: tokens over each request's latency. The servers
/// take turns, one request each per run, as in the streamed figures: a block of runs on one
/// server and then a block on the other measured this machine's drift between the two blocks
/// (llama-server 151 tok/s whole against 134 streamed in the same run).
async fn non_streamed(
    cx: &Context,
    model: Model,
    targets: [&Endpoint; 2],
) -> anyhow::Result<Whole> {
    let generate = counting(model, 0, GENERATED);
    let read = long_prompt(model, 0);
    let mut generated = [0.0; 2];
    let mut prompt_tokens = [0.0; 2];
    // The token counts come from one request each beforehand, which also warms the path.
    for (i, target) in targets.iter().enumerate() {
        generated[i] = target.post("/v1/completions", &generate).await?["usage"]
            ["completion_tokens"]
            .as_f64()
            .context("usage.completion_tokens")?;
        prompt_tokens[i] = target.post("/v1/completions", &read).await?["usage"]["prompt_tokens"]
            .as_f64()
            .context("usage.prompt_tokens")?;
    }
    let (generate, read) = (generate.to_string(), read.to_string());
    let mut generation: [Vec<f64>; 2] = Default::default();
    let mut prompt: [Vec<f64>; 2] = Default::default();
    for _ in 0..cx.runs {
        for (i, target) in targets.iter().enumerate() {
            let url = target.url("/v1/completions");
            let run = oha::post(&cx.oha, &url, &generate, 1, 1).await?;
            generation[i].push(generated[i] / run.latency.median);
            let run = oha::post(&cx.oha, &url, &read, 1, 1).await?;
            prompt[i].push(prompt_tokens[i] / run.latency.median);
        }
    }
    Ok(Whole { generation, prompt })
}
