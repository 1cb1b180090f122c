//! Reports people can look at: results (sonde's JSON for perf, rtt and
//! the transfers, and iperf3's `-J` and `--json-stream` output) drawn as
//! one self-contained HTML page. Reading a result and laying out its
//! charts ([`page`], [`build`]) is pure; [`html`] writes the page.

pub mod html;
mod iperf;
pub mod page;
mod rtt;
mod transfer;

use serde_json::Value;

pub use page::{Facts, Page};

/// Why a result could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Not JSON, nor JSON lines.
    #[error("{name}: not a JSON document or JSON lines: {why}")]
    NotJson {
        /// The result's name (its file).
        name: String,
        /// What the parser said.
        why: String,
    },
    /// JSON, but not a result sonde knows.
    #[error(
        "{name}: not a result sonde can draw (expected iperf3's or sonde perf's -J, sonde rtt --json, or sonde send/receive --json)"
    )]
    Unknown {
        /// The result's name.
        name: String,
    },
    /// A test that failed, with nothing to draw.
    #[error("{name}: the test failed: {error}")]
    Failed {
        /// The result's name.
        name: String,
        /// The error it recorded.
        error: String,
    },
    /// Results of different kinds in one report.
    #[error("{name} is {kind}, but {first_name} is {first}: one kind of result per report")]
    Mixed {
        /// The odd one out.
        name: String,
        /// What it is.
        kind: &'static str,
        /// The first result's name.
        first_name: String,
        /// What that is.
        first: &'static str,
    },
    /// No result at all.
    #[error("no results to draw")]
    Empty,
}

/// One result to draw and its label in the legends.
#[derive(Clone, Copy, Debug)]
pub struct Run<'a> {
    /// Its label ("before", a host, a file's name).
    pub label: &'a str,
    /// The document.
    pub doc: &'a Value,
}

/// What a document is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// iperf3's `-J` (or sonde perf's).
    Perf,
    /// `rtt --json`.
    Rtt,
    /// `rtt --sweep --json`.
    Sweep,
    /// `rtt --under-load --json`.
    UnderLoad,
    /// `send`/`receive --json`.
    Transfer,
}

impl Kind {
    /// What it is, in words.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Perf => "a perf result",
            Kind::Rtt => "an rtt result",
            Kind::Sweep => "an rtt sweep",
            Kind::UnderLoad => "an rtt --under-load result",
            Kind::Transfer => "a transfer's account",
        }
    }

    /// What `doc` is, if sonde can draw it.
    pub fn of(doc: &Value) -> Option<Kind> {
        if iperf::is_iperf(doc) {
            Some(Kind::Perf)
        } else if rtt::is_sweep(doc) {
            Some(Kind::Sweep)
        } else if rtt::is_under_load(doc) {
            Some(Kind::UnderLoad)
        } else if rtt::is_plain(doc) {
            Some(Kind::Rtt)
        } else if transfer::is_transfer(doc) {
            Some(Kind::Transfer)
        } else {
            None
        }
    }
}

/// Reads a result's text: one JSON document, or `--json-stream` lines
/// (made into the document they stream).
///
/// # Errors
/// [`ReportError::NotJson`], [`ReportError::Unknown`], or
/// [`ReportError::Failed`] for a test that recorded only its error.
pub fn parse(name: &str, text: &str) -> Result<Value, ReportError> {
    let doc = match serde_json::from_str::<Value>(text) {
        Ok(doc) => doc,
        Err(e) => iperf::from_stream(text).ok_or_else(|| ReportError::NotJson {
            name: name.into(),
            why: e.to_string(),
        })?,
    };
    if Kind::of(&doc).is_none() {
        if let Some(error) = doc.get("error").and_then(Value::as_str) {
            return Err(ReportError::Failed {
                name: name.into(),
                error: error.into(),
            });
        }
        return Err(ReportError::Unknown { name: name.into() });
    }
    Ok(doc)
}

/// The page for `runs` (all of one kind), its facts filled in from the
/// first where `facts` leaves them empty.
///
/// # Errors
/// [`ReportError::Empty`], [`ReportError::Unknown`], [`ReportError::Mixed`].
pub fn build(runs: &[Run<'_>], facts: Facts) -> Result<Page, ReportError> {
    let first = runs.first().ok_or(ReportError::Empty)?;
    let unknown = |run: &Run<'_>| ReportError::Unknown {
        name: run.label.into(),
    };
    let kind = Kind::of(first.doc).ok_or_else(|| unknown(first))?;
    for run in &runs[1..] {
        let other = Kind::of(run.doc).ok_or_else(|| unknown(run))?;
        if other != kind {
            return Err(ReportError::Mixed {
                name: run.label.into(),
                kind: other.name(),
                first_name: first.label.into(),
                first: kind.name(),
            });
        }
    }
    let mut page = Page {
        facts,
        ..Page::default()
    };
    match kind {
        Kind::Perf => {
            iperf::facts(&mut page, first.doc);
            iperf::charts(&mut page, runs);
            iperf::tables(&mut page, runs);
        }
        Kind::Rtt => rtt::plain(&mut page, runs),
        Kind::Sweep => rtt::sweep(&mut page, runs),
        Kind::UnderLoad => rtt::under_load(&mut page, runs),
        Kind::Transfer => transfer::transfers(&mut page, runs),
    }
    if page.facts.remote.is_empty() {
        let peer = ["server", "peer"].iter().find_map(|k| {
            let top = first.doc.get(*k);
            top.or_else(|| first.doc["runs"][0].get(*k))
                .and_then(Value::as_str)
        });
        page.facts.remote = peer.unwrap_or("").into();
    }
    Ok(page)
}
