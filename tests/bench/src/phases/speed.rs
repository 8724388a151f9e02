//! Generation and prompt speed, and time to first token, over HTTP: both servers loaded side by
//! side with one slot each, measured in turns, so drift in the machine's speed hits both alike.

use anyhow::Context as _;

use super::{counting, long_prompt, Context, Model};
use crate::client::{Endpoint, StreamTiming};
use crate::oha;
use crate::report::{Goal, Row};
use crate::servers::Reference;
use crate::stats::Figure;

/// Tokens each generation request asks for.
const GENERATED: u32 = 128;

#[derive(Default)]
struct Samples {
    generation: Vec<f64>,
    ttft_ms: Vec<f64>,
    prompt: Vec<f64>,
    ttft_long_ms: Vec<f64>,
}

impl Samples {
    fn add(&mut self, short: &StreamTiming, long: &StreamTiming) {
        self.generation.extend(short.generation_rate());
        self.ttft_ms.push(short.first_piece.as_secs_f64() * 1e3);
        self.prompt.extend(long.prompt_rate());
        self.ttft_long_ms.push(long.first_piece.as_secs_f64() * 1e3);
    }
}

/// The non-streamed figures: `oha` sends the same request `runs` times.
struct Whole {
    generation: Option<Figure>,
    prompt: Option<Figure>,
}

pub async fn run(cx: &Context, model: Model, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let headroom = cx.start_headroom(1).await?;
    headroom.load(model.id).await?;
    let (reference, _) =
        Reference::start(&cx.reference, &cx.model_path(model), cx.shape(1)).await?;
    let targets = [&headroom.endpoint, &reference.endpoint];

    // The first request on a fresh load faults the weights in; neither side is timed on it.
    for target in targets {
        target.stream_completion(&counting(model, 999, 8)).await?;
    }
    let mut samples = [Samples::default(), Samples::default()];
    for run in 0..cx.runs {
        for (target, samples) in targets.iter().zip(samples.iter_mut()) {
            let short = target
                .stream_completion(&counting(model, run, GENERATED))
                .await?;
            let long = target.stream_completion(&long_prompt(model, run)).await?;
            samples.add(&short, &long);
        }
    }
    let whole = non_streamed(cx, model, targets).await?;

    let [h, r] = &samples;
    rows.push(
        model
            .compared(
                "generation, streamed",
                "tok/s",
                &h.generation,
                &r.generation,
            )
            .goal(Goal::RatioAtLeast(0.98)),
    );
    rows.push(
        Row::new("generation, not streamed", "tok/s")
            .model(model.name)
            .headroom(whole[0].generation)
            .reference(whole[1].generation)
            .goal(Goal::RatioAtLeast(0.98))
            .note(format!("{GENERATED} tokens, whole request")),
    );
    rows.push(
        model
            .compared("prompt, streamed", "tok/s", &h.prompt, &r.prompt)
            .note("to the first token"),
    );
    rows.push(
        Row::new("prompt, not streamed", "tok/s")
            .model(model.name)
            .headroom(whole[0].prompt)
            .reference(whole[1].prompt),
    );
    rows.push(
        model
            .compared("TTFT, short prompt", "ms", &h.ttft_ms, &r.ttft_ms)
            .goal(Goal::RatioAtMost(1.05)),
    );
    rows.push(
        model
            .compared(
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
) -> anyhow::Result<[Whole; 2]> {
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
    Ok([0, 1].map(|i| Whole {
        generation: Figure::of(&generation[i]),
        prompt: Figure::of(&prompt[i]),
    }))
}
