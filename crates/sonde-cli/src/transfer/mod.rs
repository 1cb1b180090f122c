//! `sonde send` ([`send`]) and `sonde receive` ([`receive`]): the flags
//! both ends take, and a transfer's summary and exit code (0 verified, 1
//! cut short or failed, 3 a hash mismatch, 4 refused by the receiver).

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use sonde::transfer::{Outcome, Report, TransferError};
use sonde::units::{Format, bitrate, bytes};

use crate::usage::parse_secs;

pub(crate) mod progress;
pub(crate) mod receive;
pub(crate) mod send;

/// Exit code of a transfer whose hashes did not match.
const EXIT_MISMATCH: u8 = 3;

/// Flags both ends take.
#[derive(Clone, Debug, Args)]
pub(crate) struct CommonArgs {
    /// Give up when the peer is silent for SECS.
    #[arg(long, value_name = "SECS", value_parser = parse_secs, default_value = "60")]
    pub(crate) timeout: Duration,
    /// No progress and no summary (errors still go to stderr).
    #[arg(long, short = 'q')]
    pub(crate) quiet: bool,
    /// Print the result as JSON on stdout instead of the summary.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Prints the summary or the JSON and picks the exit code.
pub(super) fn finish(
    result: Result<Report, TransferError>,
    common: &CommonArgs,
    verb: &str,
    preposition: &str,
) -> anyhow::Result<ExitCode> {
    let report = match result {
        Ok(report) => report,
        Err(err) => {
            let code = err.exit_code();
            if common.json {
                // Scripts reading stdout get a document either way.
                let doc = serde_json::json!({"error": err.to_string(), "exit_code": code});
                outln!("{}", serde_json::to_string_pretty(&doc)?);
            }
            if code == 1 {
                return Err(err.into());
            }
            eprintln!("sonde: {err}");
            return Ok(ExitCode::from(code));
        }
    };
    if common.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else if !common.quiet {
        outln!("{}", summary(&report, verb, preposition));
    }
    if report.mismatches() > 0 {
        for file in report
            .files
            .iter()
            .filter(|f| f.outcome == Outcome::Mismatch)
        {
            eprintln!("sonde: {}: BLAKE3 mismatch, not kept", file.path);
        }
        return Ok(ExitCode::from(EXIT_MISMATCH));
    }
    Ok(ExitCode::SUCCESS)
}

/// One line: what moved, how fast, and whether it verified.
fn summary(report: &Report, verb: &str, preposition: &str) -> String {
    let files = report.files.len();
    let rate = report.moved as f64 * 8.0 / report.seconds.max(1e-9);
    let mut line = format!(
        "sonde: {verb} {files} file{} ({}) {preposition} {} in {:.2} s, {}",
        if files == 1 { "" } else { "s" },
        bytes(report.bytes, Format::Adaptive),
        report.peer,
        report.seconds,
        bitrate(rate, Format::Adaptive),
    );
    if report.dirs > 0 {
        line.push_str(&format!(", {} directories", report.dirs));
    }
    let skipped = report.skipped();
    if skipped > 0 {
        line.push_str(&format!(", {skipped} already in place"));
    }
    let resumed: Vec<_> = report.files.iter().filter(|f| f.resumed_from > 0).collect();
    if !resumed.is_empty() {
        let from: u64 = resumed.iter().map(|f| f.resumed_from).sum();
        line.push_str(&format!(
            ", {} resumed ({} already there)",
            resumed.len(),
            bytes(from, Format::Adaptive)
        ));
    }
    match report.mismatches() {
        0 => line.push_str(", verified"),
        n => line.push_str(&format!(", {n} MISMATCHED")),
    }
    line
}
