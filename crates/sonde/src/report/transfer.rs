//! Charts of `sonde send --json` and `receive --json` accounts: the rate
//! over time (from the progress the transfer sampled), each file with its
//! verification outcome, and the whole transfer's figures.

use serde_json::Value;

use super::Run;
use super::page::{Axis, Chart, Page, Series, Table};

/// Whether `doc` is a transfer's account.
pub(super) fn is_transfer(doc: &Value) -> bool {
    doc.get("files").is_some_and(Value::is_array) && doc.get("moved").is_some()
}

/// The rate between successive samples `[seconds, bytes done, files]`.
fn rates(intervals: &Value) -> Vec<(f64, f64)> {
    let points: Vec<(f64, f64)> = intervals
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| Some((p[0].as_f64()?, p[1].as_f64()?)))
        .collect();
    points
        .windows(2)
        .filter(|w| w[1].0 > w[0].0)
        .map(|w| (w[1].0, (w[1].1 - w[0].1) * 8.0 / (w[1].0 - w[0].0) / 1e6))
        .collect()
}

/// Charts and tables of every transfer.
pub(super) fn transfers(page: &mut Page, runs: &[Run<'_>]) {
    let mut rate = Chart::new(
        "rate",
        "Transfer rate",
        Axis::linear("time", "s"),
        Axis::linear("rate", "Mbit/s"),
    );
    let mut whole = Table::new(
        "Transfers",
        &[
            "run",
            "peer",
            "files",
            "verified",
            "skipped",
            "mismatched",
            "refused",
            "MB",
            "moved MB",
            "seconds",
            "Mbit/s",
        ],
    );
    let mut files = Table::new(
        "Files",
        &[
            "run",
            "path",
            "size",
            "resumed from",
            "moved",
            "outcome",
            "BLAKE3",
            "reason",
        ],
    );
    for run in runs {
        let doc = run.doc;
        rate.series
            .push(Series::line(run.label, rates(&doc["intervals"])));
        let list = doc["files"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        let count = |o: &str| {
            list.iter()
                .filter(|f| f["outcome"] == o)
                .count()
                .to_string()
        };
        let num = |k: &str| doc[k].as_f64().unwrap_or(0.0);
        let secs = num("seconds");
        let mbit = if secs > 0.0 {
            num("moved") * 8.0 / secs / 1e6
        } else {
            0.0
        };
        whole.rows.push(vec![
            run.label.into(),
            doc["peer"].as_str().unwrap_or("").into(),
            list.len().to_string(),
            count("verified"),
            count("skipped"),
            count("mismatch"),
            count("refused"),
            format!("{:.2}", num("bytes") / 1e6),
            format!("{:.2}", num("moved") / 1e6),
            format!("{secs:.2}"),
            format!("{mbit:.1}"),
        ]);
        for f in list {
            let n = |k: &str| f[k].as_u64().map_or_else(String::new, |v| v.to_string());
            let hash = f["blake3"].as_str().unwrap_or("");
            files.rows.push(vec![
                run.label.into(),
                f["path"].as_str().unwrap_or("").into(),
                n("size"),
                n("resumed_from"),
                n("moved"),
                f["outcome"].as_str().unwrap_or("").into(),
                hash.chars().take(16).collect(),
                f["reason"].as_str().unwrap_or("").into(),
            ]);
        }
    }
    rate.series.retain(|s| !s.x.is_empty());
    page.chart(rate);
    page.table(whole);
    page.table(files);
}
