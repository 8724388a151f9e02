//! Four and eight requests at once on one model: the memory they add over the loaded model, and
//! the tokens per second they make together, beside llama-server with as many slots. Neither
//! keeps a prompt cache here, as in the speed rows.

use anyhow::Context as _;

use super::{counting, mb, Context, Model};
use crate::client::Endpoint;
use crate::oha;
use crate::process::{rss, PeakRss};
use crate::report::{Goal, Row};
use crate::servers::Reference;
use crate::stats::Figure;

const GENERATED: u32 = 64;

#[derive(Default)]
struct Measured {
    extra_mb: Vec<f64>,
    tokens_per_second: Vec<f64>,
}

pub async fn run(
    cx: &Context,
    model: Model,
    clients: u32,
    rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    // Both servers loaded, taking turns run by run, so the machine's drift hits both alike (a
    // block of runs per server measured it instead). Each figure is still one process's memory,
    // and the idle server's threads sleep while the other runs.
    let headroom = cx.start_headroom_uncached(clients).await?;
    let (_, loaded) = headroom.load(model.id).await?;
    // The KV cache of one slot, as Headroom computes it from the model's header.
    let kv_per_slot = loaded["estimate"]["kv"]
        .as_f64()
        .context("the loaded event's estimate.kv")?
        / f64::from(clients);
    let (reference, _) =
        Reference::start(&cx.reference, &cx.model_path(model), cx.shape(clients)).await?;
    let targets = [
        (&headroom.endpoint, headroom.pid()),
        (&reference.endpoint, reference.pid()),
    ];
    let [ours, theirs] = measure(cx, model, clients, targets).await?;
    drop((headroom, reference));

    let budget = f64::from(clients) * mb(kv_per_slot) * 1.1;
    rows.push(
        Row::new(format!("{clients} at once: extra RSS"), "MB")
            .model(model.name)
            .headroom(Figure::of(&ours.extra_mb))
            .reference(Figure::of(&theirs.extra_mb))
            .goal(Goal::AtMost(budget))
            .note(format!(
                "over the loaded model; goal {clients} × KV {:.1} MB + 10%",
                mb(kv_per_slot)
            )),
    );
    rows.push(
        model
            .compared_in_turns(
                &format!("{clients} at once: aggregate generation"),
                "tok/s",
                &ours.tokens_per_second,
                &theirs.tokens_per_second,
            )
            .goal(Goal::RatioAtLeast(0.98)),
    );
    Ok(())
}

async fn measure(
    cx: &Context,
    model: Model,
    clients: u32,
    targets: [(&Endpoint, u32); 2],
) -> anyhow::Result<[Measured; 2]> {
    let body = counting(model, 0, GENERATED);
    let mut generated = [0.0; 2];
    let mut baseline = [0.0; 2];
    for (i, (target, pid)) in targets.iter().enumerate() {
        // Warm: the weights are faulted in and one request has run, so the baseline is the
        // model ready to serve, and what the concurrent requests add is theirs.
        generated[i] = target.post("/v1/completions", &body).await?["usage"]["completion_tokens"]
            .as_f64()
            .context("usage.completion_tokens")?;
        baseline[i] = rss(*pid)? as f64;
    }
    let body = body.to_string();
    let mut measured = [Measured::default(), Measured::default()];
    let n = clients as usize;
    for _ in 0..cx.runs {
        for (i, (target, pid)) in targets.iter().enumerate() {
            let peak = PeakRss::start(*pid);
            let run = oha::post(&cx.oha, &target.url("/v1/completions"), &body, n, n).await?;
            let peak = peak.stop() as f64;
            measured[i].extra_mb.push(mb((peak - baseline[i]).max(0.0)));
            measured[i]
                .tokens_per_second
                .push(f64::from(clients) * generated[i] / run.total);
        }
    }
    Ok(measured)
}
