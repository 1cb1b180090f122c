//! `sonde report RESULT.json... -o FILE.html`, and the `--report FILE`
//! every measuring subcommand takes: results drawn as one self-contained
//! HTML page (see `sonde::report`).

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use serde_json::Value;
use sonde::report::{self, Facts, Run};

/// `sonde report`'s flags.
#[derive(Args, Debug)]
pub(crate) struct ReportArgs {
    /// Saved results: sonde's --json (perf -J, rtt, send, receive) or
    /// iperf3's -J / --json-stream output; several are overlaid.
    #[arg(required = true, value_name = "RESULT.json")]
    files: Vec<PathBuf>,
    /// The HTML file to write.
    #[arg(short = 'o', long, value_name = "FILE.html")]
    output: PathBuf,
    /// A result's label in the legends, in the order of the files
    /// (default: each file's name).
    #[arg(long, value_name = "LABEL")]
    label: Vec<String>,
    /// The page's title.
    #[arg(long)]
    title: Option<String>,
}

/// The command line as typed, for the page.
pub(crate) fn command_line() -> String {
    std::env::args()
        .map(|a| {
            let plain = a
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@[]".contains(c));
            if plain && !a.is_empty() {
                a
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The facts of a page made now by this command.
pub(crate) fn facts_now(title: String) -> Facts {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Facts {
        title,
        command: command_line(),
        date: sonde::perf::json::http_date(secs),
        version: format!("sonde {}", env!("CARGO_PKG_VERSION")),
        // This machine, where the result does not name its address.
        local: rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned(),
        ..Facts::default()
    }
}

/// Draws `docs` (label, document) into `path`.
pub(crate) fn write(path: &Path, facts: Facts, docs: &[(String, Value)]) -> anyhow::Result<()> {
    let runs: Vec<Run<'_>> = docs.iter().map(|(label, doc)| Run { label, doc }).collect();
    let page = report::build(&runs, facts)?;
    let sources: Vec<Value> = docs.iter().map(|(_, d)| d.clone()).collect();
    let html = report::html::render(&page, &sources);
    // Written beside it and renamed, so a reader never sees half a page.
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let partial = path.with_file_name(format!(".{name}.part"));
    std::fs::write(&partial, html)
        .and_then(|()| std::fs::rename(&partial, path))
        .with_context(|| format!("writing the report {}", path.display()))
}

/// Writes the report of one run's document, and says where.
pub(crate) fn write_one(path: &Path, title: String, label: &str, doc: Value) -> anyhow::Result<()> {
    write(path, facts_now(title), &[(label.to_string(), doc)])?;
    eprintln!("sonde: report written to {}", path.display());
    Ok(())
}

/// `sonde report`.
pub(crate) fn run(args: ReportArgs) -> anyhow::Result<()> {
    let mut docs = Vec::new();
    for (i, file) in args.files.iter().enumerate() {
        let shown = file.display().to_string();
        let text = std::fs::read_to_string(file).with_context(|| format!("reading {shown}"))?;
        let doc = report::parse(&shown, &text)?;
        let label = args.label.get(i).cloned().unwrap_or_else(|| {
            file.file_stem()
                .map_or_else(|| shown.clone(), |s| s.to_string_lossy().into_owned())
        });
        docs.push((label, doc));
    }
    let title = args.title.unwrap_or_else(|| match docs.len() {
        1 => format!("sonde report: {}", docs[0].0),
        n => format!("sonde report: {n} results"),
    });
    // An iperf3 result's own date, hosts and versions replace these.
    write(&args.output, facts_now(title), &docs)?;
    eprintln!("sonde: report written to {}", args.output.display());
    Ok(())
}
