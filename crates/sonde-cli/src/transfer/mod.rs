//! `sonde send` ([`send`]) and `sonde receive` ([`receive`]): the flags
//! both ends take, and a transfer's summary and exit code (0 verified, 1
//! cut short or failed, 3 a hash mismatch, 4 refused by the receiver).

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use sonde::transfer::{Outcome, Report, TransferError};
use sonde::units::{self, size};

use crate::usage::parse_secs;

pub(crate) mod progress;
pub(crate) mod receive;
pub(crate) mod send;

/// Exit code of a transfer whose hashes did not match.
const EXIT_MISMATCH: u8 = 3;
/// Exit code when the receiver refused a file or a link (the rest went on).
const EXIT_REFUSED: u8 = 4;

/// Flags both ends take.
#[derive(Clone, Debug, Args)]
pub(crate) struct CommonArgs {
    /// Give up when the peer is silent for SECS.
    #[arg(long, value_name = "SECS", value_parser = parse_secs, default_value = "60")]
    pub(crate) timeout: Duration,
    /// No progress and no summary (errors still go to stderr). No short
    /// form: -q is nc's quit-after in connect and listen.
    #[arg(long)]
    pub(crate) quiet: bool,
    /// Print the result as JSON on stdout instead of the summary.
    #[arg(long)]
    pub(crate) json: bool,
    /// Also write the transfer as a self-contained HTML page (its rate
    /// over time, each file and its verification).
    #[arg(long, value_name = "FILE.html")]
    pub(crate) report: Option<std::path::PathBuf>,
}

impl CommonArgs {
    /// Whether the progress is sampled (for the JSON and the report).
    pub(crate) fn samples(&self) -> bool {
        self.json || self.report.is_some()
    }
}

/// On Ctrl-C or SIGTERM: says what was cut short (`doing()`), that the
/// same command resumes, and exits as a shell shows the signal (130 for
/// SIGINT, 143 for SIGTERM). With nothing cut short (`None`: a `receive
/// -k` between transfers), a server stopped as asked: exit 0.
pub(super) fn on_interrupt(doing: impl Fn() -> Option<String> + Send + 'static) {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) else {
        return;
    };
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            // Not eprintln!: with stderr gone (a closed pipe) it would
            // panic this thread, and the process would not exit.
            use std::io::Write;
            match doing() {
                Some(doing) => {
                    let _ = writeln!(std::io::stderr(), "\nsonde: interrupted {doing}");
                    std::process::exit(128 + signal);
                }
                None => {
                    let _ = writeln!(
                        std::io::stderr(),
                        "\nsonde: stopped, no transfer in progress"
                    );
                    std::process::exit(0);
                }
            }
        }
    });
}

/// "while sending NAME after N MBytes; ..." from a transfer's progress.
pub(super) fn interrupted_at(progress: &sonde::transfer::Progress, verb: &str) -> String {
    use std::sync::atomic::Ordering;
    let name = progress
        .file_name
        .lock()
        .map(|n| n.clone())
        .unwrap_or_default();
    let done = progress.done.load(Ordering::Relaxed) + progress.file_done.load(Ordering::Relaxed);
    let what = if name.is_empty() {
        String::new()
    } else {
        format!(" {name}")
    };
    format!(
        "while {verb}{what} after {}; run the same command again to resume",
        size(done)
    )
}

/// Runs a transfer command; with `--json`, a failure anywhere (a refused
/// connection, a missing file, a bad flag value) still prints
/// `{"error": ..., "exit_code": N}` on stdout.
pub(super) fn json_errors(
    json: bool,
    run: impl FnOnce() -> anyhow::Result<ExitCode>,
) -> anyhow::Result<ExitCode> {
    let result = run();
    if let (true, Err(err)) = (json, &result) {
        let code = if err.downcast_ref::<crate::usage::UsageError>().is_some() {
            2
        } else {
            err.downcast_ref::<TransferError>()
                .map_or(1, TransferError::exit_code)
        };
        let doc = serde_json::json!({"error": crate::usage::describe(err), "exit_code": code});
        outln!("{}", serde_json::to_string_pretty(&doc)?);
    }
    result
}

/// Prints the summary or the JSON and picks the exit code.
pub(super) fn finish(
    result: Result<Report, TransferError>,
    common: &CommonArgs,
    verb: &str,
    preposition: &str,
    samples: Vec<[f64; 3]>,
) -> anyhow::Result<ExitCode> {
    let report = match result {
        Ok(report) => report,
        Err(err) => {
            let code = err.exit_code();
            // Code 1 goes up as an error (and under --json, json_errors
            // prints its document); the others are outcomes, printed here.
            if code == 1 {
                return Err(err.into());
            }
            if common.json {
                let doc = serde_json::json!({"error": err.to_string(), "exit_code": code});
                outln!("{}", serde_json::to_string_pretty(&doc)?);
            }
            eprintln!("sonde: {err}");
            return Ok(ExitCode::from(code));
        }
    };
    let mut doc = serde_json::to_value(&report)?;
    if !samples.is_empty() {
        doc["intervals"] = serde_json::json!(samples);
    }
    if let Some(path) = &common.report {
        let title = format!("sonde: {} {preposition} {}", verb, report.peer);
        crate::report::write_one(path, title, verb, doc.clone())?;
    }
    if common.json {
        outln!("{}", serde_json::to_string_pretty(&doc)?);
    } else if !common.quiet {
        outln!("{}", summary(&report, verb, preposition));
    }
    for (path, reason) in &report.notes {
        eprintln!("sonde: {path}: not made: {reason}");
    }
    for file in report
        .files
        .iter()
        .filter(|f| f.outcome == Outcome::Refused)
    {
        let reason = file.reason.as_deref().unwrap_or("refused");
        eprintln!("sonde: {}: refused: {reason}", file.path);
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
    if report.refused() > 0 || !report.notes.is_empty() {
        return Ok(ExitCode::from(EXIT_REFUSED));
    }
    Ok(ExitCode::SUCCESS)
}

/// One line: what moved, how fast, and whether it verified.
fn summary(report: &Report, verb: &str, preposition: &str) -> String {
    let files = report.files.len() - report.refused();
    let rate = report.moved as f64 * 8.0 / report.seconds.max(1e-9);
    let mut line = format!(
        "sonde: {verb} {files} file{} ({}) {preposition} {} in {:.2} s, {}",
        if files == 1 { "" } else { "s" },
        size(report.bytes),
        report.peer,
        report.seconds,
        units::rate(rate),
    );
    if report.dirs > 0 {
        line.push_str(&format!(", {} directories", units::count(report.dirs)));
    }
    if report.links > 0 {
        line.push_str(&format!(", {} symlinks", units::count(report.links)));
    }
    let refused = report.refused() + report.notes.len();
    if refused > 0 {
        line.push_str(&format!(", {} refused", units::count(refused as u64)));
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
            size(from)
        ));
    }
    match report.mismatches() {
        0 => line.push_str(", verified"),
        n => line.push_str(&format!(", {n} MISMATCHED")),
    }
    line
}
