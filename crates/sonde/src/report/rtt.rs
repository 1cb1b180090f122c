//! Charts of `sonde rtt --json` documents: a latency histogram and its
//! CDF on a log scale with p50/p99/p99.9 marked, latency over time, the
//! percentile table; a sweep's measured points with the fitted line; and
//! `--under-load`'s idle and loaded distributions on one CDF. A document
//! without the histogram or the samples draws its CDF from the
//! percentiles and leaves the rest out.

use serde_json::Value;

use super::Run;
use super::page::{Axis, Chart, Page, Series, Style, Table};

/// Which of rtt's documents this is.
pub(super) fn is_plain(doc: &Value) -> bool {
    doc.get("rtt_ns").is_some_and(Value::is_object)
}

/// A `--sweep` document.
pub(super) fn is_sweep(doc: &Value) -> bool {
    doc.get("runs").is_some_and(Value::is_array) && doc.get("fit").is_some()
}

/// An `--under-load` document.
pub(super) fn is_under_load(doc: &Value) -> bool {
    doc.get("idle_rtt_ns").is_some_and(Value::is_object)
}

fn us(ns: f64) -> f64 {
    ns / 1000.0
}

/// (lower edge, upper edge, count) of each bucket, in ns.
fn buckets(v: &Value) -> Vec<(f64, f64, f64)> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| Some((b[0].as_f64()?, b[1].as_f64()?, b[2].as_f64()?)))
        .collect()
}

/// The CDF: from the buckets when there are some, else from the
/// percentiles of the summary.
fn cdf(histogram: &Value, summary: &Value) -> Vec<(f64, f64)> {
    let b = buckets(histogram);
    let total: f64 = b.iter().map(|x| x.2).sum();
    if total > 0.0 {
        let mut seen = 0.0;
        let mut points = vec![(us(b[0].0), 0.0)];
        for (_, hi, n) in b {
            seen += n;
            points.push((us(hi), seen / total));
        }
        return points;
    }
    [
        ("min", 0.0),
        ("p50", 0.5),
        ("p90", 0.9),
        ("p99", 0.99),
        ("p99_9", 0.999),
        ("max", 1.0),
    ]
    .iter()
    .filter_map(|(k, q)| Some((us(summary.get(*k)?.as_f64()?), *q)))
    .collect()
}

fn marks(summary: &Value) -> Vec<(f64, f64)> {
    [("p50", 0.5), ("p99", 0.99), ("p99_9", 0.999)]
        .iter()
        .filter_map(|(k, q)| Some((us(summary.get(*k)?.as_f64()?), *q)))
        .collect()
}

fn percentiles(table: &mut Table, label: &str, summary: &Value) {
    let cell = |k: &str| {
        summary
            .get(k)
            .and_then(Value::as_f64)
            .map_or_else(String::new, |ns| format!("{:.1}", us(ns)))
    };
    let count = summary.get("count").and_then(Value::as_u64).unwrap_or(0);
    table.rows.push(vec![
        label.to_string(),
        count.to_string(),
        cell("min"),
        cell("p50"),
        cell("p90"),
        cell("p99"),
        cell("p99_9"),
        cell("max"),
    ]);
}

fn percentile_table() -> Table {
    Table::new(
        "Round trips (µs)",
        &["run", "count", "min", "p50", "p90", "p99", "p99.9", "max"],
    )
}

fn latency() -> Axis {
    Axis::log("round trip", "µs")
}

/// Plain runs: histogram, CDF, over time, percentiles.
pub(super) fn plain(page: &mut Page, runs: &[Run<'_>]) {
    let mut hist = Chart::new(
        "histogram",
        "Latency histogram",
        latency(),
        Axis::linear("round trips", "count"),
    );
    let mut dist = Chart::new(
        "cdf",
        "Latency CDF (p50, p99, p99.9 marked)",
        latency(),
        Axis::linear("fraction", "of round trips"),
    );
    let mut time = Chart::new(
        "over-time",
        "Latency over time (each point the slowest of its stretch)",
        Axis::linear("time", "s"),
        latency(),
    );
    let mut table = percentile_table();
    for run in runs {
        let (doc, label) = (run.doc, run.label);
        let b = buckets(&doc["histogram_ns"]);
        hist.series.push(Series::styled(
            label,
            Style::Steps,
            b.iter().map(|(lo, _, n)| (us(*lo), *n)).collect(),
        ));
        dist.series.push(Series::line(
            label,
            cdf(&doc["histogram_ns"], &doc["rtt_ns"]),
        ));
        dist.series.push(Series::styled(
            format!("{label} p50/p99/p99.9"),
            Style::Points,
            marks(&doc["rtt_ns"]),
        ));
        let samples: Vec<(f64, f64)> = doc["samples"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| Some((p[0].as_f64()?, us(p[1].as_f64()?))))
            .collect();
        time.series.push(Series::line(label, samples));
        percentiles(&mut table, label, &doc["rtt_ns"]);
    }
    hist.series.retain(|s| !s.x.is_empty());
    time.series.retain(|s| !s.x.is_empty());
    page.chart(hist);
    page.chart(dist);
    page.chart(time);
    page.table(table);
}

/// Sweeps: each size's fastest round trip and the fitted line.
pub(super) fn sweep(page: &mut Page, runs: &[Run<'_>]) {
    let mut chart = Chart::new(
        "sweep",
        "Round trip by message size, and the fit",
        Axis::log("message size", "bytes"),
        Axis::linear("fastest round trip", "µs"),
    );
    let mut table = Table::new(
        "The fit",
        &[
            "run",
            "model",
            "formula",
            "base µs",
            "bandwidth Mbit/s",
            "r²",
            "knee bytes",
        ],
    );
    let mut sizes = Table::new("Each size (µs)", &["run", "size", "min", "p50", "p99"]);
    for run in runs {
        let fit = &run.doc["fit"];
        let residual = |size: f64| {
            fit["residuals_ns"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|r| r["size"].as_f64() == Some(size))
                .and_then(|r| r["residual"].as_f64())
        };
        let mut measured = Vec::new();
        let mut fitted = Vec::new();
        for r in run.doc["runs"].as_array().into_iter().flatten() {
            let (Some(size), Some(min)) = (r["size"].as_f64(), r["rtt_ns"]["min"].as_f64()) else {
                continue;
            };
            measured.push((size, us(min)));
            if let Some(res) = residual(size) {
                fitted.push((size, us(min - res)));
            }
            let cell = |k: &str| {
                r["rtt_ns"][k]
                    .as_f64()
                    .map_or_else(String::new, |v| format!("{:.1}", us(v)))
            };
            sizes.rows.push(vec![
                run.label.into(),
                size.to_string(),
                cell("min"),
                cell("p50"),
                cell("p99"),
            ]);
        }
        chart.series.push(Series::styled(
            format!("{} measured", run.label),
            Style::Points,
            measured,
        ));
        chart
            .series
            .push(Series::line(format!("{} fit", run.label), fitted));
        let text = |k: &str| fit[k].as_str().unwrap_or("").to_string();
        let num = |k: &str, scale: f64, digits: usize| {
            fit[k]
                .as_f64()
                .map_or_else(String::new, |v| format!("{:.*}", digits, v * scale))
        };
        if let Some(e) = fit["error"].as_str() {
            table
                .rows
                .push(vec![run.label.into(), format!("no fit: {e}")]);
        } else {
            table.rows.push(vec![
                run.label.into(),
                text("model"),
                text("formula"),
                num("base_ns", 1e-3, 1),
                num("bandwidth_bits_per_sec", 1e-6, 1),
                num("r_squared", 1.0, 4),
                num("knee_bytes", 1.0, 0),
            ]);
        }
    }
    chart.series.retain(|s| !s.x.is_empty());
    page.chart(chart);
    page.table(table);
    page.table(sizes);
}

/// Under load: idle and loaded on one CDF, and the ratio.
pub(super) fn under_load(page: &mut Page, runs: &[Run<'_>]) {
    let mut dist = Chart::new(
        "cdf",
        "Latency CDF, idle and under load",
        latency(),
        Axis::linear("fraction", "of round trips"),
    );
    let mut table = percentile_table();
    let mut ratio = Table::new(
        "Under load / idle",
        &["run", "p50 ratio", "p99 ratio", "load Mbit/s"],
    );
    for run in runs {
        let doc = run.doc;
        for (which, hist, summary) in [
            ("idle", "idle_histogram_ns", "idle_rtt_ns"),
            ("loaded", "loaded_histogram_ns", "loaded_rtt_ns"),
        ] {
            let label = format!("{} {which}", run.label);
            dist.series
                .push(Series::line(label.clone(), cdf(&doc[hist], &doc[summary])));
            percentiles(&mut table, &label, &doc[summary]);
        }
        let num = |k: &str, scale: f64| {
            doc[k]
                .as_f64()
                .map_or_else(String::new, |v| format!("{:.2}", v * scale))
        };
        ratio.rows.push(vec![
            run.label.into(),
            num("ratio_p50", 1.0),
            num("ratio_p99", 1.0),
            num("load_bits_per_second", 1e-6),
        ]);
    }
    page.chart(dist);
    page.table(table);
    page.table(ratio);
}
