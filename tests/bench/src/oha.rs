//! The HTTP load generator for the non-streamed and concurrent figures: `oha` (crates.io),
//! run as a process and read through its JSON summary.

use std::path::Path;

use tokio::process::Command;

use anyhow::{bail, Context};
use serde_json::Value;

use crate::stats::Figure;

/// What one `oha` run measured.
#[derive(Debug, Clone)]
pub struct Run {
    /// Per-request latency, seconds: the median (p50) between the fastest and the slowest.
    pub latency: Figure,
    /// Wall time of the whole run, seconds.
    pub total: f64,
}

/// Sends `requests` POSTs of `body` to `url`, `concurrency` at a time, and checks every one
/// was answered 200.
pub async fn post(
    oha: &Path,
    url: &str,
    body: &str,
    requests: usize,
    concurrency: usize,
) -> anyhow::Result<Run> {
    let output = Command::new(oha)
        .args(["--no-tui", "--output-format", "json"])
        .args(["-n", &requests.to_string(), "-c", &concurrency.to_string()])
        .args(["-m", "POST", "-T", "application/json", "-t", "600s"])
        .args(["-d", body, url])
        .output()
        .await
        .with_context(|| format!("run {}", oha.display()))?;
    if !output.status.success() {
        bail!(
            "oha failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let summary: Value = serde_json::from_slice(&output.stdout).context("oha's JSON")?;
    parse(&summary, requests)
}

fn parse(summary: &Value, requests: usize) -> anyhow::Result<Run> {
    let answered_ok = summary["statusCodeDistribution"]["200"]
        .as_u64()
        .unwrap_or(0);
    if answered_ok != requests as u64 {
        bail!(
            "{answered_ok} of {requests} requests were answered 200: {} {}",
            summary["statusCodeDistribution"],
            summary["errorDistribution"]
        );
    }
    let seconds = |v: &Value, what: &str| {
        v.as_f64()
            .with_context(|| format!("oha's JSON has no {what}: {summary}"))
    };
    let s = &summary["summary"];
    Ok(Run {
        latency: Figure {
            median: seconds(&summary["latencyPercentiles"]["p50"], "p50")?,
            min: seconds(&s["fastest"], "fastest")?,
            max: seconds(&s["slowest"], "slowest")?,
            runs: requests,
        },
        total: seconds(&s["total"], "total")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_the_summary_and_refuses_a_run_with_failures() {
        let summary = json!({
            "summary": {"total": 3.0, "fastest": 0.9, "slowest": 1.2},
            "latencyPercentiles": {"p50": 1.0},
            "statusCodeDistribution": {"200": 3},
            "errorDistribution": {}
        });
        let run = parse(&summary, 3).expect("a run");
        assert_eq!(
            (
                run.latency.median,
                run.latency.min,
                run.latency.max,
                run.total
            ),
            (1.0, 0.9, 1.2, 3.0)
        );
        let failed = parse(&summary, 4).expect_err("one missing");
        assert!(failed.to_string().contains("3 of 4"), "{failed}");
    }
}
