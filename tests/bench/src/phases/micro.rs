//! The in-process micro-benchmarks (`cargo bench -p headroom-bench --bench micro`, criterion) carried into
//! the table: criterion's median time per call and its 95% confidence interval.

use std::path::Path;

use anyhow::Context as _;
use serde_json::Value;

use crate::report::Row;
use crate::stats::Figure;

pub fn rows(criterion: &Path, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let mut found = Vec::new();
    collect(criterion, &mut found)?;
    found.sort_by(|a, b| a.0.cmp(&b.0));
    if found.is_empty() {
        anyhow::bail!("no criterion results under {}", criterion.display());
    }
    for (id, figure) in found {
        rows.push(Row::new(id, "µs per call").headroom(Some(figure)));
    }
    Ok(())
}

/// Every `<bench>/new/` folder below `dir`: its `benchmark.json` names it, its
/// `estimates.json` holds the median.
fn collect(dir: &Path, found: &mut Vec<(String, Figure)>) -> anyhow::Result<()> {
    let new = dir.join("new");
    if new.join("estimates.json").is_file() {
        let read = |name: &str| -> anyhow::Result<Value> {
            let text = std::fs::read_to_string(new.join(name))
                .with_context(|| format!("{}", new.join(name).display()))?;
            Ok(serde_json::from_str(&text)?)
        };
        let id = read("benchmark.json")?["full_id"]
            .as_str()
            .context("benchmark.json has no full_id")?
            .to_string();
        found.push((id, median(&read("estimates.json")?)?));
        return Ok(());
    }
    for entry in std::fs::read_dir(dir).with_context(|| format!("{}", dir.display()))? {
        let path = entry?.path();
        // "report" holds criterion's HTML; nothing to read there.
        if path.is_dir() && path.file_name().is_some_and(|n| n != "report") {
            collect(&path, found)?;
        }
    }
    Ok(())
}

/// Criterion's median and its confidence interval, in microseconds.
fn median(estimates: &Value) -> anyhow::Result<Figure> {
    let m = &estimates["median"];
    let us = |v: &Value| {
        v.as_f64()
            .map(|ns| ns / 1e3)
            .context("estimates.json: median")
    };
    Ok(Figure {
        median: us(&m["point_estimate"])?,
        min: us(&m["confidence_interval"]["lower_bound"])?,
        max: us(&m["confidence_interval"]["upper_bound"])?,
        runs: 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_criterion_folders_by_their_full_id() {
        let dir = tempfile::tempdir().expect("tmp");
        let new = dir.path().join("probe").join("read").join("new");
        std::fs::create_dir_all(&new).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("report")).expect("mkdir");
        std::fs::write(new.join("benchmark.json"), r#"{"full_id": "probe/read"}"#).expect("write");
        std::fs::write(
            new.join("estimates.json"),
            r#"{"median": {"point_estimate": 2500.0,
                "confidence_interval": {"lower_bound": 2000.0, "upper_bound": 3000.0}}}"#,
        )
        .expect("write");
        let mut table = Vec::new();
        rows(dir.path(), &mut table).expect("rows");
        assert_eq!(table.len(), 1);
        assert_eq!(table[0].metric, "probe/read");
        let figure = table[0].headroom.expect("figure");
        assert_eq!((figure.median, figure.min, figure.max), (2.5, 2.0, 3.0));
    }
}
