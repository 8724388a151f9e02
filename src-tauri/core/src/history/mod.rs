//! The last ten minutes of memory, for the UI's timeline: the machine's and the pool's use
//! sampled every two seconds, marks where models loaded and unloaded and where the pressure tier
//! changed, and the peak (watermark) of this process's memory during the current generation.
//!
//! Kept on the server, not in the page, so a window opened now shows the ten minutes before
//! it opened. One task owns the recording; readers take a copy under a short lock.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;

use crate::events::{Bus, Event};
use crate::memory::{process_rss, MemoryProbe};
use crate::pool::{Pool, PoolEvent};
use crate::pressure::TierChanged;
use crate::vocab::{memory_size, Tier};

/// How far back the timeline reaches.
pub const SPAN: Duration = Duration::from_secs(600);
/// One timeline sample per this.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(2);
/// How often the watermark is read while a generation runs: the peak between two timeline
/// samples is what a watermark is for.
const WATERMARK_EVERY: Duration = Duration::from_millis(250);
const MAX_SAMPLES: usize = (SPAN.as_secs() / SAMPLE_EVERY.as_secs()) as usize + 1;
/// Marks beyond this many in ten minutes are dropped oldest first (a model loading and
/// unloading in a loop should not grow memory).
const MAX_MARKS: usize = 500;

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sample {
    /// Unix milliseconds.
    pub t: u64,
    pub system_used: u64,
    pub system_total: u64,
    pub pool_used: u64,
    pub limit: u64,
    pub tier: Tier,
}

#[derive(Debug, Clone, Serialize)]
pub struct Mark {
    pub t: u64,
    /// "loaded", "unloaded" or "tier".
    pub kind: &'static str,
    pub model: Option<String>,
    /// For a "tier" mark, the tier it changed to.
    pub tier: Option<Tier>,
    /// In plain words, for the mark's tooltip.
    pub text: String,
}

/// The process's peak resident memory while requests run. `active` is true during a
/// generation; afterwards the figures stay, describing the last one.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Watermark {
    pub active: bool,
    /// When the generation began (unix ms).
    pub since: Option<u64>,
    pub peak: u64,
    pub peak_at: Option<u64>,
    /// Resident memory when it began, to show what the generation added.
    pub baseline: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Timeline {
    pub span_ms: u64,
    pub sample_every_ms: u64,
    pub samples: Vec<Sample>,
    pub marks: Vec<Mark>,
    pub watermark: Watermark,
}

#[derive(Default)]
struct Record {
    samples: VecDeque<Sample>,
    marks: VecDeque<Mark>,
    watermark: Watermark,
    /// Requests running, over all models.
    running: u32,
}

/// A handle to the recording.
#[derive(Clone, Default)]
pub struct History {
    record: Arc<Mutex<Record>>,
}

impl History {
    /// Starts recording; it stops when the pool does.
    pub fn start(pool: Pool, bus: &Bus, probe: Arc<dyn MemoryProbe>) -> Self {
        let history = Self::default();
        tokio::spawn(history.clone().record(pool, bus.subscribe(), probe));
        history
    }

    pub fn timeline(&self) -> Timeline {
        let record = self.lock();
        Timeline {
            span_ms: SPAN.as_millis() as u64,
            sample_every_ms: SAMPLE_EVERY.as_millis() as u64,
            samples: record.samples.iter().copied().collect(),
            marks: record.marks.iter().cloned().collect(),
            watermark: record.watermark,
        }
    }

    async fn record(
        self,
        pool: Pool,
        mut events: tokio::sync::broadcast::Receiver<Event>,
        probe: Arc<dyn MemoryProbe>,
    ) {
        let mut sample = tokio::time::interval(SAMPLE_EVERY);
        sample.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut watermark = tokio::time::interval(WATERMARK_EVERY);
        // The branch sleeps between generations; it must not catch up on the ticks it missed.
        watermark.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = sample.tick() => {
                    let Ok(status) = pool.status().await else { return };
                    // The pool's own count, in case an event was missed (a lagging receiver).
                    {
                        let mut record = self.lock();
                        record.running = status.models.iter().map(|m| m.in_flight).sum();
                        if record.running == 0 {
                            record.watermark.active = false;
                        }
                    }
                    let Some(system) = probe.system() else { continue };
                    self.push_sample(Sample {
                        t: crate::vocab::now_unix_ms(),
                        system_used: system.used,
                        system_total: system.total,
                        pool_used: status.used,
                        limit: status.limit,
                        tier: status.tier,
                    });
                }
                _ = watermark.tick(), if self.lock().running > 0 => {
                    if let Some(rss) = process_rss() {
                        self.raise_watermark(rss);
                    }
                }
                event = events.recv() => match event {
                    Ok(event) => self.on_event(&event),
                    Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return,
                },
            }
        }
    }

    fn on_event(&self, event: &Event) {
        let event = match event {
            Event::Pool(event) => event,
            Event::Pressure(TierChanged {
                tier, used_percent, ..
            }) => {
                let mark = Mark {
                    t: crate::vocab::now_unix_ms(),
                    kind: "tier",
                    model: None,
                    tier: Some(*tier),
                    text: format!("pressure {tier} ({used_percent:.0}% used)"),
                };
                self.lock().add_mark(mark);
                return;
            }
            Event::Settings(_) | Event::Generation(_) | Event::Pull(_) | Event::Models(_) => return,
        };
        let mut record = self.lock();
        let t = crate::vocab::now_unix_ms();
        let mark = |kind, model: Option<&str>, text: String| Mark {
            t,
            kind,
            model: model.map(String::from),
            tier: None,
            text,
        };
        match event {
            PoolEvent::Loaded {
                model,
                memory,
                load_ms,
                ..
            } => record.add_mark(mark(
                "loaded",
                Some(model),
                format!(
                    "{model} loaded in {load_ms} ms ({})",
                    memory_size(memory.total)
                ),
            )),
            PoolEvent::Unloaded(report) => record.add_mark(mark(
                "unloaded",
                Some(&report.model),
                format!(
                    "{} unloaded ({}){}",
                    report.model,
                    report.reason.as_str(),
                    report
                        .reclaimed
                        .map(|b| format!(", {} back", memory_size(b)))
                        .unwrap_or_default()
                ),
            )),
            PoolEvent::RequestStarted { .. } => {
                if record.running == 0 {
                    let rss = process_rss().unwrap_or(0);
                    record.watermark = Watermark {
                        active: true,
                        since: Some(t),
                        peak: rss,
                        peak_at: Some(t),
                        baseline: rss,
                    };
                }
                record.running += 1;
            }
            PoolEvent::RequestFinished { .. } => {
                record.running = record.running.saturating_sub(1);
                if record.running == 0 {
                    record.watermark.active = false;
                }
            }
            _ => {}
        }
    }

    fn push_sample(&self, sample: Sample) {
        let mut record = self.lock();
        record.samples.push_back(sample);
        while record.samples.len() > MAX_SAMPLES {
            record.samples.pop_front();
        }
        // By time as well as count: after a sleep of the machine, the old samples are gone too.
        let oldest = sample.t.saturating_sub(SPAN.as_millis() as u64);
        while record.samples.front().is_some_and(|s| s.t < oldest) {
            record.samples.pop_front();
        }
        while record.marks.front().is_some_and(|m| m.t < oldest) {
            record.marks.pop_front();
        }
    }

    fn raise_watermark(&self, rss: u64) {
        let mut record = self.lock();
        if record.watermark.active && rss > record.watermark.peak {
            record.watermark.peak = rss;
            record.watermark.peak_at = Some(crate::vocab::now_unix_ms());
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Record> {
        // Every write leaves the record whole; a panic elsewhere cannot tear it.
        self.record.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Record {
    fn add_mark(&mut self, mark: Mark) {
        self.marks.push_back(mark);
        while self.marks.len() > MAX_MARKS {
            self.marks.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Footprint;
    use crate::pool::{UnloadReason, UnloadReport};

    #[test]
    fn events_become_marks_and_a_generation_has_a_watermark() {
        let history = History::default();
        let model = "m".to_string();
        history.on_event(&Event::Pool(PoolEvent::Loaded {
            model: model.clone(),
            memory: Footprint::new(100 << 20, 0, 0),
            estimate: Footprint::new(100 << 20, 0, 0),
            load_ms: 42,
        }));
        history.on_event(&Event::Pool(PoolEvent::RequestStarted {
            model: model.clone(),
            in_flight: 1,
        }));
        assert!(history.timeline().watermark.active);
        let baseline = history.timeline().watermark.baseline;
        history.raise_watermark(baseline + 1000);
        history.on_event(&Event::Pool(PoolEvent::RequestFinished {
            model: model.clone(),
            in_flight: 0,
        }));
        history.raise_watermark(baseline + 5000); // after the generation: not counted
        history.on_event(&Event::Pool(PoolEvent::Unloaded(UnloadReport {
            model: model.clone(),
            reason: UnloadReason::Idle,
            footprint: Footprint::new(100 << 20, 0, 0),
            rss_before: None,
            rss_after: None,
            reclaimed: Some(99 << 20),
            reclaimed_percent: None,
            duration_ms: 5,
            since_pressure_ms: None,
            pressure: None,
        })));
        let timeline = history.timeline();
        let w = timeline.watermark;
        assert!(!w.active);
        assert_eq!(w.peak, baseline + 1000);
        let texts: Vec<_> = timeline.marks.iter().map(|m| m.text.as_str()).collect();
        assert_eq!(texts.len(), 2, "{texts:?}");
        assert!(texts[0].starts_with("m loaded in 42 ms"), "{texts:?}");
        assert!(
            texts[1].starts_with("m unloaded (idle), 99.0 MB back"),
            "{texts:?}"
        );
    }

    #[test]
    fn samples_and_marks_older_than_the_span_fall_off() {
        let history = History::default();
        let sample = |t| Sample {
            t,
            system_used: 1,
            system_total: 2,
            pool_used: 0,
            limit: 1,
            tier: Tier::Normal,
        };
        history.lock().add_mark(Mark {
            t: 1_000,
            kind: "tier",
            model: None,
            tier: Some(Tier::Normal),
            text: String::new(),
        });
        for i in 0..(MAX_SAMPLES as u64 + 10) {
            history.push_sample(sample(1_000 + i * 2_000));
        }
        let timeline = history.timeline();
        assert_eq!(timeline.samples.len(), MAX_SAMPLES);
        assert!(timeline.marks.is_empty());
    }
}
