//! `sonde receive [DIR]`: one transfer, or many with `--keep-open`, each
//! reported as it ends.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use clap::Args;
use sonde::net::{self, Family};
use sonde::transfer::serve::{ReceiveEvent, ServeOptions, serve};
use sonde::transfer::{self, ReceiveOptions, ReceiveSecurity, code};

use super::progress::Display;
use super::{CommonArgs, finish};
use crate::metrics::Outcomes;
use crate::usage::UsageError;

#[derive(Debug, Args)]
pub(crate) struct ReceiveArgs {
    /// Directory to write into (default: the current one).
    #[arg(value_name = "DIR")]
    pub(crate) dir: Option<PathBuf>,
    /// Address to bind (default: every interface, IPv4 and IPv6).
    #[arg(long, value_name = "ADDR")]
    pub(crate) bind: Option<String>,
    /// Port.
    #[arg(long, short = 'p', default_value_t = transfer::DEFAULT_PORT)]
    pub(crate) port: u16,
    /// Take one transfer after another (several at once) instead of exiting after the first.
    #[arg(long, short = 'k')]
    pub(crate) keep_open: bool,
    /// With --keep-open: transfers at once; a sender past this is turned away.
    #[arg(long, value_name = "N", default_value_t = 8, requires = "keep_open")]
    pub(crate) max_transfers: usize,
    /// Replace files that exist and differ.
    #[arg(long)]
    pub(crate) overwrite: bool,
    /// Refuse a transfer of more than SIZE bytes (K, M, G, T: 1024-based).
    #[arg(long, value_name = "SIZE", value_parser = crate::usage::parse_size)]
    pub(crate) max_size: Option<u64>,
    /// Drop a sender that brings fewer than RATE bytes a second over a whole --timeout (K, M: 1024-based; 0: never), so a sender dripping a byte now and then cannot hold a place.
    #[arg(long, value_name = "RATE", value_parser = crate::usage::parse_size, default_value = "1K")]
    pub(crate) min_rate: u64,
    #[command(flatten)]
    pub(crate) common: CommonArgs,
    #[command(flatten)]
    pub(crate) access: crate::access::AccessArgs,
    #[command(flatten)]
    pub(crate) metrics: crate::metrics::MetricsArgs,
    /// Take only senders that know a code phrase (printed here: a number and three words), or the CODE given; the transfer is then encrypted, no certificates needed.
    #[arg(long, value_name = "CODE", num_args = 0..=1, default_missing_value = "")]
    pub(crate) code: Option<String>,
    /// With --code: senders with a wrong code, at most, before the receiver gives up.
    #[arg(long, value_name = "N", default_value_t = 3, requires = "code")]
    pub(crate) code_attempts: usize,
    /// TLS for every transfer (`--cert/--key`, else a certificate made once for this user, its fingerprint printed for `send --pin`).
    #[command(flatten)]
    pub(crate) tls: crate::tls::TlsArgs,
}

/// `sonde receive [DIR]`.
pub(crate) fn receive(args: ReceiveArgs) -> anyhow::Result<ExitCode> {
    let json = args.common.json;
    super::json_errors(json, move || receive_into(args))
}

fn receive_into(args: ReceiveArgs) -> anyhow::Result<ExitCode> {
    if args.keep_open && args.common.report.is_some() {
        return Err(UsageError(
            "--report draws one transfer; with --keep-open, save each sender's --json and run sonde report".into(),
        )
        .into());
    }
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from("."));
    // A directory that is not there yet is made, as `mkdir -p` would.
    let created = std::fs::symlink_metadata(&dir).is_err();
    if created {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating the directory {}", dir.display()))?;
    }
    let meta = std::fs::metadata(&dir)
        .with_context(|| format!("opening the directory {}", dir.display()))?;
    if !meta.is_dir() {
        return Err(UsageError(format!("{} is not a directory", dir.display())).into());
    }
    let security = security(&args)?;
    let addr: SocketAddr = net::local_addrs(args.bind.as_deref(), args.port, Family::Any)?[0];
    let listener = net::listen_tcp(addr, false)?;
    sonde::door::raise_fd_limit();
    let local = listener.local_addr().context("reading the bound address")?;
    // Before the banner: once it is out, the process's threads are all up.
    let outcomes = Outcomes::new(&["done", "failed", "busy", "wrong_code"]);
    let counters = Arc::<sonde::door::Counters>::default();
    let quiet = args.common.quiet || args.common.json;
    args.metrics.start(registry(&outcomes, &counters), quiet)?;
    let watch = Arc::new(Watch::default());
    let seen = Arc::clone(&watch);
    let keep_open = args.keep_open;
    super::on_interrupt(move || seen.describe(keep_open, local));
    if !args.common.quiet {
        let made = if created { " (created)" } else { "" };
        eprintln!(
            "sonde receive: writing into {}{made}; listening on {local}",
            dir.display()
        );
    }
    let receive = ReceiveOptions {
        dir,
        overwrite: args.overwrite,
        max_size: args.max_size,
        timeout: args.common.timeout,
        min_rate: args.min_rate,
    };
    let mut options = ServeOptions::new(receive, args.keep_open);
    options.max_transfers = args.max_transfers.max(1);
    options.max_connections = args.access.max_connections(options.max_connections);
    options.rules = args.access.rules();
    options.security = security;
    options.code_attempts = args.code_attempts.max(1);
    options.counters = counters;
    let common = args.common;
    if args.keep_open {
        serve_many(listener, options, common, &watch, outcomes)?;
        return Ok(ExitCode::SUCCESS);
    }
    let outcome = Arc::new(Mutex::new(None));
    let display: Mutex<Option<Display>> = Mutex::new(None);
    let sampler: Arc<Mutex<Option<super::progress::Sampler>>> = Arc::default();
    let sampling = Arc::clone(&sampler);
    let wanted = common.samples();
    let slot = Arc::clone(&outcome);
    let current = Arc::clone(&watch);
    serve(
        listener,
        options,
        counting((outcomes, quiet), move |event| match event {
            ReceiveEvent::Started { progress, .. } => {
                if let Ok(mut slot) = current.current.lock() {
                    *slot = Some(Arc::clone(&progress));
                }
                if let Ok(mut shown) = display.lock() {
                    *shown = Some(Display::start(&progress, "receiving", quiet));
                }
                if let Ok(mut s) = sampling.lock() {
                    *s = Some(super::progress::Sampler::start(&progress, wanted));
                }
            }
            ReceiveEvent::Finished { result, .. } => {
                if let Some(shown) = display.lock().ok().and_then(|mut d| d.take()) {
                    shown.finish();
                }
                if let Ok(mut slot) = slot.lock() {
                    *slot = Some(result);
                }
            }
            ReceiveEvent::Busy(_) | ReceiveEvent::WrongCode { .. } => {}
        }),
    )?;
    let result = outcome
        .lock()
        .ok()
        .and_then(|mut r| r.take())
        .context("the receiver ended without a transfer")?;
    let taken = sampler.lock().ok().and_then(|mut s| s.take());
    let samples = taken
        .map(super::progress::Sampler::finish)
        .unwrap_or_default();
    finish(result, &common, "received", "from", samples)
}

/// How transfers are protected: a code (printed, for the sender, before
/// the banner), TLS, or neither.
fn security(args: &ReceiveArgs) -> anyhow::Result<ReceiveSecurity> {
    let Some(given) = &args.code else {
        return Ok(match args.tls.server(args.common.quiet)? {
            Some(tls) => ReceiveSecurity::Tls(tls),
            None => ReceiveSecurity::Plain,
        });
    };
    if args.tls.on() {
        return Err(UsageError("--code and --tls are alternatives: use one".into()).into());
    }
    let code = if given.is_empty() {
        let mut random = [0u8; 32];
        rustix::rand::getrandom(&mut random, rustix::rand::GetRandomFlags::empty())
            .context("drawing a code")?;
        code::generate(&random).context("drawing a code: too few random bytes")?
    } else {
        code::normalise(given).map_err(|e| UsageError(format!("--code: {e}")))?
    };
    // Shown even with --quiet: without it nobody can send.
    eprintln!("sonde: code {code} (on the sending side: sonde send PATH... HOST --code {code})");
    Ok(ReceiveSecurity::Code(code))
}

/// `receive --keep-open`: several transfers at once, each reported as it
/// ends (no live bars: they would be several at once).
fn serve_many(
    listener: TcpListener,
    options: ServeOptions,
    common: CommonArgs,
    watch: &Arc<Watch>,
    outcomes: Outcomes,
) -> anyhow::Result<()> {
    let quiet = common.quiet || common.json;
    let watch = Arc::clone(watch);
    serve(
        listener,
        options,
        counting((outcomes, quiet), move |event| match event {
            ReceiveEvent::Started { peer, .. } => {
                watch
                    .active
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if !quiet {
                    eprintln!("sonde receive: a transfer from {peer} begins");
                }
            }
            // One bad sender does not end a receiver that keeps open.
            ReceiveEvent::Finished { result, .. } => {
                use std::sync::atomic::Ordering::Relaxed;
                let _ = watch
                    .active
                    .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1));
                if let Err(err) = finish(result, &common, "received", "from", Vec::new()) {
                    eprintln!("sonde: {err:#}");
                }
            }
            ReceiveEvent::Busy(_) | ReceiveEvent::WrongCode { .. } => {}
        }),
    )?;
    Ok(())
}

/// What `--metrics` shows of a receiver: its door's counters and its
/// transfers.
fn registry(
    outcomes: &Outcomes,
    counters: &Arc<sonde::door::Counters>,
) -> prometheus_client::registry::Registry {
    let mut registry = crate::metrics::with_door(Arc::clone(counters));
    let what = (
        "transfers",
        "Transfers ended, by result (done, failed, busy, wrong_code)",
    );
    outcomes.register(&mut registry, "sonde_receive", what);
    outcomes.register_bytes(&mut registry, "sonde_receive");
    registry
}

/// `notify`, after each ending is counted in `outcomes` and a sender
/// turned away is told of on stderr (unless `quiet`).
fn counting(
    (outcomes, quiet): (Outcomes, bool),
    notify: impl Fn(ReceiveEvent) + Send + Sync + 'static,
) -> impl Fn(ReceiveEvent) + Send + Sync + 'static {
    move |event| {
        match &event {
            ReceiveEvent::Finished {
                result: Ok(report), ..
            } => {
                outcomes.ended("done");
                outcomes.moved(report.moved, 0);
            }
            ReceiveEvent::Finished { result: Err(_), .. } => outcomes.ended("failed"),
            ReceiveEvent::Busy(peer) => {
                outcomes.ended("busy");
                turned_away(*peer, quiet);
            }
            ReceiveEvent::WrongCode {
                peer,
                attempt,
                limit,
            } => {
                outcomes.ended("wrong_code");
                wrong_code(*peer, *attempt, *limit);
            }
            ReceiveEvent::Started { .. } => {}
        }
        notify(event);
    }
}

/// Said even with --quiet: someone may be guessing.
fn wrong_code(peer: SocketAddr, attempt: usize, limit: usize) {
    eprintln!(
        "sonde receive: the code did not match: {peer} gave another (nothing was written; wrong code {attempt} of {limit} before the receiver gives up)"
    );
}

fn turned_away(peer: SocketAddr, quiet: bool) {
    if !quiet {
        eprintln!("sonde receive: turned {peer} away: busy with other transfers");
    }
}

/// What a Ctrl-C would cut short: the one transfer's progress, or how
/// many transfers run.
#[derive(Default)]
struct Watch {
    current: Mutex<Option<Arc<sonde::transfer::Progress>>>,
    active: std::sync::atomic::AtomicUsize,
}

impl Watch {
    /// What a signal cuts short; `None` for a `-k` receiver between
    /// transfers, which stops as any server does.
    fn describe(&self, keep_open: bool, local: SocketAddr) -> Option<String> {
        if keep_open {
            let n = self.active.load(std::sync::atomic::Ordering::Relaxed);
            return (n > 0).then(|| {
                format!("with {n} transfer(s) in progress; each resumes when its sender runs again")
            });
        }
        Some(match self.current.lock().ok().and_then(|p| p.clone()) {
            Some(progress) => super::interrupted_at(&progress, "receiving"),
            None => format!("while waiting for a sender on {local}"),
        })
    }
}
