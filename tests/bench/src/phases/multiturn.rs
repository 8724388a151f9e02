//! A chat as people have one: twelve turns, each appending the server's own answer, growing
//! to about 2,000 tokens. Time to first token per turn, Headroom (prompt cache on, its default)
//! against llama-server with its default prompt cache, both with one slot, taking turns.
//!
//! Then the thirteenth turn after an unload: Headroom's model is stopped and loaded again (it
//! restores the conversation it saved), llama-server is restarted (its cache is gone; no peer
//! keeps one across a restart). The load itself is not timed, only the turn after it.

use super::{Context, Model};
use crate::client::Endpoint;
use crate::report::{Goal, Row};
use crate::servers::{Headroom, HeadroomLaunch, Reference};
use serde_json::{json, Value};

const TURNS: usize = 12;
/// Context per slot: the conversation outgrows the benchmark's usual 1024 tokens.
const CONTEXT: u32 = 4096;
/// Tokens each answer may take: twelve turns of question and answer make ~2,000 tokens.
const ANSWER_TOKENS: u32 = 150;

const TOPICS: [&str; TURNS] = [
    "the history of Paris",
    "how bread is made",
    "the planets of the solar system",
    "how bees make honey",
    "the rules of chess",
    "how a bicycle works",
    "the water cycle",
    "the life of Mozart",
    "how volcanoes form",
    "the Roman Empire",
    "how trains run on electricity",
    "the oceans of the world",
];

/// One conversation: the TTFT of each turn, in milliseconds, and the conversation with the
/// next question asked.
async fn conversation(
    target: &Endpoint,
    model: Model,
    run: usize,
) -> anyhow::Result<(Vec<f64>, Vec<Value>)> {
    // A different opening per run, so no run starts from another's cache.
    let mut messages: Vec<Value> = vec![json!({
        "role": "system",
        "content": format!("You are a patient teacher (conversation {}).", run + 1),
    })];
    let mut ttft = Vec::with_capacity(TURNS);
    for topic in TOPICS {
        messages.push(json!({"role": "user", "content": format!("Tell me about {topic}.")}));
        let body = json!({
            "model": model.id,
            "messages": messages,
            "max_tokens": ANSWER_TOKENS,
            "temperature": 0,
            "seed": 1,
        });
        let (timing, answer) = target.stream_chat(&body).await?;
        ttft.push(timing.first_piece.as_secs_f64() * 1e3);
        messages.push(json!({"role": "assistant", "content": answer}));
    }
    messages.push(json!({"role": "user", "content": "Now sum up what we talked about."}));
    Ok((ttft, messages))
}

/// The TTFT of one more turn, in milliseconds.
async fn next_turn(target: &Endpoint, model: Model, messages: &[Value]) -> anyhow::Result<f64> {
    let body = json!({
        "model": model.id,
        "messages": messages,
        "max_tokens": 8,
        "temperature": 0,
        "seed": 1,
    });
    Ok(target.stream_chat(&body).await?.0.first_piece.as_secs_f64() * 1e3)
}

pub async fn run(cx: &Context, model: Model, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let shape = crate::servers::Shape {
        context_per_slot: CONTEXT,
        ..cx.shape(1)
    };
    let headroom = Headroom::start(HeadroomLaunch {
        binary: &cx.headroom,
        models_dir: &cx.models_dir,
        shape,
        cgroups: &[],
        desktop: None,
        env: &[],
    })
    .await?;
    headroom.load(model.id).await?;
    let (mut reference, _) =
        Reference::start_as_shipped(&cx.reference, &cx.model_path(model), shape).await?;
    // Per server, per turn, the runs' figures.
    let mut turns: [Vec<Vec<f64>>; 2] = [vec![Vec::new(); TURNS], vec![Vec::new(); TURNS]];
    // Per server, per run, the median over turns 2–12.
    let mut later: [Vec<f64>; 2] = Default::default();
    // Per server, per run, the next turn's TTFT after the unload (Headroom) or restart.
    let mut resumed: [Vec<f64>; 2] = Default::default();
    for run in 0..cx.runs {
        for i in 0..2 {
            let target = if i == 0 {
                &headroom.endpoint
            } else {
                &reference.endpoint
            };
            let (ttft, messages) = conversation(target, model, run).await?;
            for (turn, ms) in ttft.iter().enumerate() {
                turns[i][turn].push(*ms);
            }
            later[i].push(median(&ttft[1..]));
            if i == 0 {
                headroom.unload(model.id).await?;
                headroom.load(model.id).await?;
            } else {
                drop(reference);
                reference =
                    Reference::start_as_shipped(&cx.reference, &cx.model_path(model), shape)
                        .await?
                        .0;
            }
            let target = if i == 0 {
                &headroom.endpoint
            } else {
                &reference.endpoint
            };
            resumed[i].push(next_turn(target, model, &messages).await?);
        }
    }
    let [h, r] = &turns;
    for turn in [2, 6, 12] {
        rows.push(
            model
                .compared_in_turns(
                    &format!("multi-turn chat, TTFT at turn {turn}"),
                    "ms",
                    &h[turn - 1],
                    &r[turn - 1],
                )
                .goal(Goal::RatioAtMost(1.0))
                .note(format!(
                    "{TURNS} turns of up to {ANSWER_TOKENS} tokens, each answer appended, \
                     {CONTEXT}-token context; both with their prompt cache (the default)"
                )),
        );
    }
    rows.push(
        model
            .compared_in_turns(
                "multi-turn chat, median TTFT of turns 2–12",
                "ms",
                &later[0],
                &later[1],
            )
            .goal(Goal::RatioAtMost(1.0)),
    );
    rows.push(
        model
            .compared_in_turns(
                "resume after unload, TTFT of turn 13",
                "ms",
                &resumed[0],
                &resumed[1],
            )
            .goal(Goal::RatioAtMost(0.5))
            .note(
                "Headroom stopped and loaded again, restoring the saved conversation; \
                 llama-server restarted (its cache lost); loads not timed",
            ),
    );
    Ok(())
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}
