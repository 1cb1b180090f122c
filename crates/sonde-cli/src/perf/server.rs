//! `sonde perf -s`: the server's banner and one line (or, with `-J`, one
//! JSON document) per event.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::Context;
use serde_json::json;
use sonde::net::{self, Family};
use sonde::perf::report;
use sonde::perf::server::{self, ServerConfig, ServerEvent};
use sonde::units::{self, Format};

use super::args::PerfArgs;
use super::{Out, emit, pretty};
use crate::usage::{parse_rate, usage};

/// `sonde perf -s`.
pub(super) fn serve(
    args: &PerfArgs,
    out: &Out,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<ExitCode> {
    let fam = crate::usage::family(args.v4, args.v6);
    let host = args.bind.as_deref().map(|b| super::split_device(b).0);
    let addr = net::local_addrs(host.as_deref(), args.port, fam)?[0];
    let listener = net::listen_tcp(addr, fam == Family::V6)?;
    // -M on the listener: accepted streams inherit it, as with iperf3.
    sonde::perf::sockopt::listener_options(&listener, super::device(args).as_deref(), args.mss)
        .context("setting the listener's interface (--bind-dev) and MSS (-M)")?;
    let port = listener.local_addr().map_or(args.port, |a| a.port());
    sonde::door::raise_fd_limit();
    let bitrate_limit = match &args.server_bitrate_limit {
        Some(text) => Some(parse_rate(text.split('/').next().unwrap_or(text)).map_err(usage)?),
        None => None,
    };
    let config = ServerConfig {
        max_tests: args.max_tests.max(1),
        rcv_timeout: Duration::from_millis(args.rcv_timeout.max(100)),
        max_duration: args.server_max_duration.map(Duration::from_secs),
        bitrate_limit,
        one_off: args.one_off,
        idle_timeout: args.idle_timeout.map(Duration::from_secs),
        json: args.json,
        auth: args.auth.verifier()?,
        ..ServerConfig::default()
    };
    let json = args.json;
    // With -J, as iperf3 -s -J: one JSON document per test and nothing else.
    let prefix = super::Prefix::new(args);
    if !json {
        emit(
            out,
            &prefix.apply(&format!(
                "-----------------------------------------------------------\nServer listening on {port} (up to {} tests at once)\n-----------------------------------------------------------\n",
                config.max_tests
            )),
        );
    }
    let out = Arc::clone(out);
    let verbose = args.verbose;
    server::serve(
        listener,
        config,
        move |event| {
            let text = if json {
                describe_json(event)
            } else {
                prefix.apply(&describe(event, verbose))
            };
            emit(&out, &text);
        },
        stop,
    )?;
    Ok(ExitCode::SUCCESS)
}

/// A server event under -J: each test's document, or its error.
fn describe_json(event: ServerEvent) -> String {
    match event {
        ServerEvent::Done {
            json: Some(doc), ..
        } => format!("{}\n", pretty(&doc, true)),
        ServerEvent::Failed { error, .. } => {
            format!("{}\n", pretty(&json!({"error": error.to_string()}), true))
        }
        _ => String::new(),
    }
}

fn describe(event: ServerEvent, verbose: bool) -> String {
    match event {
        ServerEvent::Accepted { peer, concurrent } => {
            format!(
                "Accepted connection from {}, port {} ({concurrent} test(s) running)\n",
                peer.ip(),
                peer.port()
            )
        }
        ServerEvent::Busy(peer) => {
            format!("Refused {peer}: the server is busy (the --max-tests limit)\n")
        }
        ServerEvent::Done {
            peer,
            params,
            ends,
            concurrent,
            ..
        } => {
            let mut text = String::new();
            if verbose {
                text.push_str(&report::summary_lines(
                    &ends,
                    params.protocol,
                    Format::Adaptive,
                ));
            }
            let received: u64 = ends.iter().map(|e| e.received.0).sum();
            let secs = ends.iter().map(|e| e.received.1).fold(0.0, f64::max);
            text.push_str(&format!(
                "Test from {peer} done: {} streams, {} received in {secs:.2} s ({}), {concurrent} test(s) ran at once\n",
                ends.len(),
                units::bytes(received, Format::Adaptive),
                units::bitrate(sonde::perf::measure::rate(received, secs), Format::Adaptive),
            ));
            text
        }
        ServerEvent::Failed { peer, error } => format!("Test from {peer} ended: {error}\n"),
    }
}
