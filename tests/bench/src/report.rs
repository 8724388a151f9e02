//! The rows the benchmark prints and saves: metric, Headroom, reference, ratio, goal.

use serde::{Deserialize, Serialize};

use crate::stats::Figure;

/// What a row has to reach. Ratios are Headroom ÷ reference.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Goal {
    RatioAtLeast(f64),
    RatioAtMost(f64),
    AtMost(f64),
    AtLeast(f64),
    /// |Headroom's median| at most this (an error that may be either sign).
    Within(f64),
}

impl Goal {
    /// Whether the medians reach the goal; `None` when the figure it needs is missing.
    pub fn met(self, headroom: Option<f64>, ratio: Option<f64>) -> Option<bool> {
        match self {
            Self::RatioAtLeast(g) => ratio.map(|r| r >= g),
            Self::RatioAtMost(g) => ratio.map(|r| r <= g),
            Self::AtMost(g) => headroom.map(|h| h <= g),
            Self::AtLeast(g) => headroom.map(|h| h >= g),
            Self::Within(g) => headroom.map(|h| h.abs() <= g),
        }
    }

    fn describe(self, unit: &str) -> String {
        match self {
            Self::RatioAtLeast(g) => format!("≥ {g}×"),
            Self::RatioAtMost(g) => format!("≤ {g}×"),
            Self::AtMost(g) => format!("≤ {} {unit}", number(g)),
            Self::AtLeast(g) => format!("≥ {} {unit}", number(g)),
            Self::Within(g) => format!("± {} {unit}", number(g)),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    pub metric: String,
    pub model: Option<String>,
    pub unit: String,
    pub headroom: Option<Figure>,
    pub reference: Option<Figure>,
    /// Headroom's median ÷ the reference's.
    pub ratio: Option<f64>,
    /// Headroom ÷ the reference run by run, where the two took turns: its range says how far
    /// this machine resolves the ratio at all.
    pub ratios: Option<Figure>,
    pub goal: Option<Goal>,
    pub met: Option<bool>,
    pub note: Option<String>,
}

impl Row {
    pub fn new(metric: impl Into<String>, unit: impl Into<String>) -> Self {
        Self {
            metric: metric.into(),
            model: None,
            unit: unit.into(),
            headroom: None,
            reference: None,
            ratio: None,
            ratios: None,
            goal: None,
            met: None,
            note: None,
        }
    }

    pub fn model(mut self, model: &str) -> Self {
        self.model = Some(model.to_string());
        self
    }

    pub fn headroom(mut self, figure: Option<Figure>) -> Self {
        self.headroom = figure;
        self.settle()
    }

    pub fn reference(mut self, figure: Option<Figure>) -> Self {
        self.reference = figure;
        self.settle()
    }

    /// Adds the run-by-run ratios of samples taken in turns (same index, same run; a run
    /// without a figure is NaN and drops out).
    pub fn in_turns(mut self, headroom: &[f64], reference: &[f64]) -> Self {
        if headroom.len() == reference.len() {
            let ratios: Vec<f64> = headroom.iter().zip(reference).map(|(h, r)| h / r).collect();
            self.ratios = Figure::of(&ratios);
        }
        self
    }

    pub fn goal(mut self, goal: Goal) -> Self {
        self.goal = Some(goal);
        self.settle()
    }

    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }

    fn settle(mut self) -> Self {
        self.ratio = match (self.headroom, self.reference) {
            (Some(h), Some(r)) if r.median != 0.0 => Some(h.median / r.median),
            _ => None,
        };
        self.met = self
            .goal
            .and_then(|g| g.met(self.headroom.map(|h| h.median), self.ratio));
        self
    }
}

/// A number with as many decimals as its size deserves.
fn number(x: f64) -> String {
    let a = x.abs();
    if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

/// "74.1 (73.0–75.2)": the median, then the range over the runs.
fn figure(f: Option<Figure>) -> String {
    match f {
        None => "—".into(),
        Some(f) if f.min == f.max => number(f.median),
        Some(f) => format!("{} ({}–{})", number(f.median), number(f.min), number(f.max)),
    }
}

/// "0.97× (0.88–1.10)": the ratio of the medians, then the range of the run-by-run ratios.
fn ratio(ratio: Option<f64>, ratios: Option<Figure>) -> String {
    match (ratio, ratios) {
        (None, _) => String::new(),
        (Some(r), Some(f)) if f.runs > 1 => format!("{r:.2}× ({:.2}–{:.2})", f.min, f.max),
        (Some(r), _) => format!("{r:.2}×"),
    }
}

/// The table as Markdown, as docs/benchmarks.md carries it.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| Metric | Model | Headroom | Reference | Ratio | Goal | Met |\n| --- | --- | ---: | ---: | ---: | --- | --- |\n",
    );
    for row in rows {
        let metric = match &row.note {
            Some(note) => format!("{} ({}) — {note}", row.metric, row.unit),
            None => format!("{} ({})", row.metric, row.unit),
        };
        let met = match row.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "",
        };
        out.push_str(&format!(
            "| {metric} | {} | {} | {} | {} | {} | {met} |\n",
            row.model.as_deref().unwrap_or(""),
            figure(row.headroom),
            figure(row.reference),
            ratio(row.ratio, row.ratios),
            row.goal.map(|g| g.describe(&row.unit)).unwrap_or_default(),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fig(x: f64) -> Option<Figure> {
        Figure::of(&[x])
    }

    #[test]
    fn the_ratio_is_headroom_over_the_reference_and_the_goal_reads_it() {
        let row = Row::new("generation", "tok/s")
            .headroom(fig(97.0))
            .reference(fig(100.0))
            .goal(Goal::RatioAtLeast(0.98));
        assert_eq!(row.ratio, Some(0.97));
        assert_eq!(row.met, Some(false));
        let row = row.headroom(fig(99.0));
        assert_eq!(row.met, Some(true));
    }

    #[test]
    fn ratios_in_turns_pair_runs_and_drop_the_runs_without_a_figure() {
        let (h, r) = ([90.0, 110.0, f64::NAN, 100.0], [100.0, 100.0, 100.0, 80.0]);
        let row = Row::new("generation", "tok/s")
            .headroom(Figure::of(&h))
            .reference(Figure::of(&r))
            .in_turns(&h, &r);
        let ratios = row.ratios.expect("ratios");
        assert_eq!((ratios.min, ratios.max, ratios.runs), (0.9, 1.25, 3));
        assert!(table(&[row]).contains("| 1.00× (0.90–1.25) |"));
        let unpaired = Row::new("x", "ms").in_turns(&[1.0], &[1.0, 2.0]);
        assert_eq!(unpaired.ratios, None);
    }

    #[test]
    fn a_goal_without_its_figure_is_unknown_not_met() {
        let row = Row::new("TTFT", "ms")
            .headroom(fig(10.0))
            .goal(Goal::RatioAtMost(1.05));
        assert_eq!((row.ratio, row.met), (None, None));
        let row = Row::new("idle", "MB")
            .headroom(fig(-31.0))
            .goal(Goal::Within(30.0));
        assert_eq!(row.met, Some(false));
    }

    #[test]
    fn the_table_shows_median_range_ratio_and_an_unmet_goal() {
        let row = Row::new("unload", "ms")
            .model("m")
            .headroom(Figure::of(&[120.0, 150.0, 130.0]))
            .goal(Goal::AtMost(100.0));
        let table = table(&[row]);
        assert!(
            table.contains("| unload (ms) | m | 130 (120–150) | — |  | ≤ 100 ms | **no** |"),
            "{table}"
        );
    }
}
