//! The benchmark table in docs/benchmarks.md, written from a run's JSON: between the lines
//! `<!-- bench-table:begin -->` and `<!-- bench-table:end -->` goes what the run printed (the
//! heading line, the machine, the table), so the document never carries figures by hand.

use std::path::Path;

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};

use crate::report::{self, Row};

const BEGIN: &str = "<!-- bench-table:begin -->";
const END: &str = "<!-- bench-table:end -->";

/// A run as its JSON keeps it.
#[derive(Debug, Serialize, Deserialize)]
pub struct Run {
    pub date: String,
    pub machine: String,
    pub reference: String,
    pub headroom_llama: String,
    pub threads: u32,
    pub context_per_slot: u32,
    pub runs: usize,
    pub rows: Vec<Row>,
    pub failures: Vec<String>,
}

impl Run {
    /// The lines above the table: what was compared, how, and on what.
    pub fn heading(&self) -> String {
        format!(
            "Headroom ({}) ÷ {} · {} threads · {} tokens of context per slot · greedy · {} runs per figure\n{}",
            self.headroom_llama,
            self.reference,
            self.threads,
            self.context_per_slot,
            self.runs,
            self.machine
        )
    }

    /// What goes between the markers.
    fn markdown(&self) -> String {
        let mut text = format!("Run of {}: {}\n\n", self.date, self.heading());
        text.push_str(&report::table(&self.rows));
        if !self.failures.is_empty() {
            text.push_str("\nPhases that failed in this run:\n\n");
            for failure in &self.failures {
                text.push_str(&format!("- {failure}\n"));
            }
        }
        text
    }
}

/// `document` with the text between the markers replaced by `run`'s table.
pub fn replace_table(document: &str, run: &Run) -> anyhow::Result<String> {
    let (Some(begin), Some(end)) = (document.find(BEGIN), document.find(END)) else {
        bail!("the document has no {BEGIN} … {END} pair");
    };
    if end < begin {
        bail!("{END} comes before {BEGIN}");
    }
    let head = &document[..begin + BEGIN.len()];
    let tail = &document[end..];
    Ok(format!("{head}\n{}{tail}", run.markdown()))
}

/// Reads the run's JSON and writes its table into the document, in place.
pub fn write(json: &Path, document: &Path) -> anyhow::Result<()> {
    let run: Run = serde_json::from_str(
        &std::fs::read_to_string(json).with_context(|| format!("read {}", json.display()))?,
    )
    .with_context(|| format!("{} is not a benchmark run's JSON", json.display()))?;
    let text = std::fs::read_to_string(document)
        .with_context(|| format!("read {}", document.display()))?;
    let updated = replace_table(&text, &run)?;
    std::fs::write(document, updated).with_context(|| format!("write {}", document.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Goal;
    use crate::stats::Figure;

    fn run() -> Run {
        Run {
            date: "2026-12-01T00:00:00Z".into(),
            machine: "a CPU · 2 cores · 24 GiB · Linux 6.1".into(),
            reference: "llama-server b1".into(),
            headroom_llama: "llama.cpp b2".into(),
            threads: 2,
            context_per_slot: 1024,
            runs: 11,
            rows: vec![Row::new("generation", "tokens/s")
                .model("SmolLM2")
                .headroom(Figure::of(&[100.0, 110.0]))
                .reference(Figure::of(&[100.0]))
                .goal(Goal::RatioAtLeast(1.0))],
            failures: Vec::new(),
        }
    }

    #[test]
    fn the_table_between_the_markers_is_replaced_and_the_rest_kept() {
        let document = format!("# B\n\nbefore\n{BEGIN}\nold table\n{END}\nafter\n");
        let updated = replace_table(&document, &run()).expect("markers");
        assert!(updated.starts_with("# B\n\nbefore\n<!-- bench-table:begin -->\nRun of 2026-12-01"));
        assert!(
            updated.ends_with("<!-- bench-table:end -->\nafter\n"),
            "{updated}"
        );
        assert!(!updated.contains("old table"));
        assert!(
            updated.contains("| generation (tokens/s) | SmolLM2 |"),
            "{updated}"
        );
        // Writing it again changes nothing more.
        assert_eq!(replace_table(&updated, &run()).expect("markers"), updated);
    }

    #[test]
    fn a_run_reads_back_from_its_json() {
        let json = serde_json::to_string(&run()).expect("json");
        let back: Run = serde_json::from_str(&json).expect("reads back");
        assert_eq!(report::table(&back.rows), report::table(&run().rows));
    }

    #[test]
    fn a_document_without_markers_is_an_error_not_a_rewrite() {
        assert!(replace_table("# no markers\n", &run()).is_err());
        assert!(replace_table(&format!("{END}\n{BEGIN}\n"), &run()).is_err());
    }
}
