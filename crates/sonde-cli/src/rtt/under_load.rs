//! `sonde rtt --under-load`'s output: the idle and loaded round trips side
//! by side, and the ratio.

use serde_json::json;
use sonde::rtt::client::RttConfig;
use sonde::rtt::stats::{Summary, micros};

/// Measures idle, then under load (see [`sonde::rtt::under_load`]), and
/// prints both.
pub(crate) fn run(
    config: &RttConfig,
    load_port: Option<u16>,
    args: &super::RttArgs,
) -> anyhow::Result<()> {
    let congestion = args.load_congestion.as_deref();
    let result = sonde::rtt::under_load::run(config, load_port, congestion)?;
    let (idle, loaded) = (&result.idle.latency, &result.loaded.latency);
    let doc = document(
        &idle.summary(),
        &loaded.summary(),
        result.load_bits_per_second,
    );
    let mut doc = doc;
    doc["idle_histogram_ns"] = super::histogram_json(idle);
    doc["loaded_histogram_ns"] = super::histogram_json(loaded);
    print(
        &idle.summary(),
        &loaded.summary(),
        result.load_bits_per_second,
        args.json,
        &doc,
    );
    if let Some(path) = &args.report {
        let title = format!("sonde rtt --under-load: {}", config.addr);
        crate::report::write_one(path, title, "under load", doc)?;
    }
    Ok(())
}

/// The figures as JSON.
fn document(idle: &Summary, loaded: &Summary, load_bps: f64) -> serde_json::Value {
    let s = |x: &Summary| json!({"count": x.count, "min": x.min, "p50": x.p50, "p90": x.p90, "p99": x.p99, "max": x.max});
    json!({"idle_rtt_ns": s(idle), "loaded_rtt_ns": s(loaded),
        "ratio_p50": ratio(loaded.p50, idle.p50), "ratio_p99": ratio(loaded.p99, idle.p99),
        "load_bits_per_second": load_bps})
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

fn print(idle: &Summary, loaded: &Summary, load_bps: f64, json_out: bool, doc: &serde_json::Value) {
    if json_out {
        outln!("{}", serde_json::to_string_pretty(doc).unwrap_or_default());
        return;
    }
    outln!(
        "sonde rtt --under-load: round trips idle, then beside a bulk TCP stream ({})",
        sonde::units::rate(load_bps)
    );
    outln!("{:>8} {:>12} {:>12} {:>8}", "", "idle", "loaded", "ratio");
    for (name, a, b) in [
        ("min", idle.min, loaded.min),
        ("p50", idle.p50, loaded.p50),
        ("p90", idle.p90, loaded.p90),
        ("p99", idle.p99, loaded.p99),
        ("max", idle.max, loaded.max),
    ] {
        outln!(
            "{name:>8} {:>12} {:>12} {:>7.2}x",
            micros(a),
            micros(b),
            ratio(b, a)
        );
    }
}
