//! `sonde perf`: turns iperf3's flags into a library test, prints live
//! interval lines or JSON, and runs the embedded server when neither `-s`
//! nor `-c` is given.

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use sonde::perf::client::ClientConfig;
use sonde::units::Format;
use sonde::wire::iperf::params::{Params, Protocol};

pub(crate) mod args;
mod auth;
mod live;
mod server;
mod unix;

use crate::usage::usage;
use args::{PerfArgs, parse_bitrate};

pub(super) type Out = Arc<Mutex<Box<dyn Write + Send>>>;

pub(super) fn emit(out: &Out, text: &str) {
    if let Ok(mut w) = out.lock() {
        let _ = w.write_all(text.as_bytes());
        let _ = w.flush();
    }
}

fn params(args: &PerfArgs, embedded: bool) -> anyhow::Result<Params> {
    let protocol = if args.udp {
        Protocol::Udp
    } else {
        Protocol::Tcp
    };
    let (bandwidth, burst) = match &args.bitrate {
        Some(text) => parse_bitrate(text).map_err(usage)?,
        None if args.udp => (sonde::wire::iperf::DEFAULT_UDP_RATE, 0),
        None => (0, 0),
    };
    let mut counted = args.bytes.is_some() || args.blockcount.is_some();
    if counted && args.time.is_some() {
        return Err(usage("-t, -n and -k are mutually exclusive"));
    }
    // -F with nothing else to end the test: the file's size, as iperf3.
    let file_bytes = match &args.file {
        Some(path) if !counted && args.time.is_none() && (!args.reverse || args.bidir) => {
            let size = std::fs::metadata(path)
                .with_context(|| format!("reading {} (-F)", path.display()))?
                .len();
            counted = size > 0;
            Some(size).filter(|s| *s > 0)
        }
        _ => None,
    };
    let time = if counted {
        0
    } else {
        args.time.unwrap_or(if embedded { 3 } else { 10 })
    };
    let len = match args.length {
        Some(l) => u32::try_from(l).map_err(|_| usage(format!("-l {l} is too large")))?,
        None if args.udp => 0, // the client picks the path MSS
        // -k counts blocks and -n may end on one: iperf3's block size, so
        // that both mean what they mean to iperf3. (A paced stream writes
        // a millisecond of its rate at a time, whatever the block.)
        None if counted => sonde::wire::iperf::DEFAULT_TCP_LEN as u32,
        None => sonde::perf::TCP_LEN as u32,
    };
    let p = Params {
        protocol,
        omit: args.omit,
        time,
        num: args.bytes.or(file_bytes).unwrap_or(0),
        blockcount: args.blockcount.unwrap_or(0),
        mss: args.mss.unwrap_or(0),
        nodelay: args.no_delay,
        parallel: args.parallel,
        reverse: args.reverse,
        bidirectional: args.bidir,
        window: args
            .window
            .map_or(0, |w| u32::try_from(w).unwrap_or(u32::MAX)),
        len,
        bandwidth,
        burst,
        tos: args.tos.or(args.dscp).unwrap_or(0),
        server_affinity: args.affinity.and_then(|a| a.1),
        fqrate: args.fq_rate.unwrap_or(0),
        flowlabel: args.flowlabel.unwrap_or(0),
        pacing_timer: args
            .pacing_timer
            .map_or(1000, |t| u32::try_from(t).unwrap_or(u32::MAX)),
        title: args.title.clone(),
        extra_data: args.extra_data.clone(),
        congestion: args.congestion.clone(),
        // A report of a reverse test draws the sender's TCP_INFO, which
        // only the server has.
        get_server_output: args.get_server_output || (args.report.is_some() && args.reverse),
        udp_counters_64bit: args.udp_counters_64bit,
        repeating_payload: args.repeating_payload,
        zerocopy: args.zerocopy,
        skip_rx_copy: args.skip_rx_copy,
        client_version: Some("3.12".into()),
        dont_fragment: args.dont_fragment,
        authtoken: None,
        tls: false,
    };
    let mut check = p.clone();
    if check.len == 0 {
        check.len = 1460;
    }
    check.validate().map_err(|(_, e)| usage(e.to_string()))?;
    Ok(p)
}

pub(super) fn format(args: &PerfArgs) -> anyhow::Result<Format> {
    match args.format {
        None => Ok(Format::Adaptive),
        Some(c) if "kmgtKMGT".contains(c) => Ok(Format::Fixed(c as u8)),
        Some(c) => Err(usage(format!("-f {c}: use one of k m g t K M G T"))),
    }
}

fn output(args: &PerfArgs) -> anyhow::Result<Out> {
    let sink: Box<dyn Write + Send> = match &args.logfile {
        Some(path) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening the log file {}", path.display()))?,
        ),
        None => Box::new(std::io::stdout()),
    };
    Ok(Arc::new(Mutex::new(sink)))
}

/// `ADDR%DEV` (or `HOST%DEV`): the address and the interface.
pub(super) fn split_device(text: &str) -> (String, Option<String>) {
    match text.rsplit_once('%') {
        // An IPv6 scope (fe80::1%eth0) is part of the address for a
        // literal; iperf3 reads %DEV the same way, as the device.
        Some((host, dev)) if !dev.is_empty() => (host.to_string(), Some(dev.to_string())),
        _ => (text.to_string(), None),
    }
}

/// The interface of `--bind-dev`, `-B ADDR%DEV` or `-c HOST%DEV`.
pub(super) fn device(args: &PerfArgs) -> Option<String> {
    let from = |t: &Option<String>| t.as_deref().and_then(|t| split_device(t).1);
    args.bind_dev
        .clone()
        .or_else(|| from(&args.bind))
        .or_else(|| from(&args.client))
}

/// What iperf3 does with `-D`, `-I`, `-A` and `-v` before a test.
fn prepare(args: &PerfArgs) -> anyhow::Result<()> {
    if args.sctp {
        probe_sctp()?;
    }
    if args.daemon {
        // SAFETY: daemon() forks; nothing else runs yet (no thread has
        // been started), so the child is whole.
        if unsafe { libc::daemon(0, 0) } != 0 {
            return Err(std::io::Error::last_os_error()).context("becoming a daemon (-D)");
        }
    }
    if let Some(path) = &args.pidfile {
        std::fs::write(path, format!("{}\n", std::process::id()))
            .with_context(|| format!("writing the pid file {}", path.display()))?;
    }
    if let Some(core) = args.affinity.and_then(|a| a.0) {
        sonde::perf::sockopt::set_affinity(core)
            .with_context(|| format!("setting the CPU affinity to CPU {core} (-A)"))?;
    }
    Ok(())
}

/// `--sctp`: sonde runs SCTP tests only where the kernel has SCTP.
fn probe_sctp() -> anyhow::Result<()> {
    match sonde::perf::sockopt::probe_sctp() {
        Err(e) => Err(anyhow::Error::from(e).context("--sctp: this kernel has no SCTP")),
        Ok(()) => Err(usage(
            "--sctp: sonde does not run SCTP tests (the kernel has SCTP)",
        )),
    }
}

/// `sonde perf`.
pub(crate) fn perf(mut args: PerfArgs) -> anyhow::Result<ExitCode> {
    args.json_stream |= args.json_stream_full_output;
    if args.version {
        println!(
            "sonde perf {} (iperf3 3.12's protocol)\n{}",
            env!("CARGO_PKG_VERSION"),
            sonde::perf::json::Host::now(env!("CARGO_PKG_VERSION")).system_info
        );
        return Ok(ExitCode::SUCCESS);
    }
    if args.metrics.metrics.is_some() && !args.server {
        return Err(usage("--metrics is for a server (-s)"));
    }
    prepare(&args)?;
    let out = output(&args)?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    // A second Ctrl-C exits at once.
    let _ = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(1);
        }
    });
    if let Some(path) = &args.unix {
        return unix::run(&args, path, &out, &stop);
    }
    if args.server {
        return server::serve(&args, &out, &stop);
    }
    let host = args.client.as_deref().map(|c| split_device(c).0);
    let embedded = host.is_none();
    let params = params(&args, embedded)?;
    let mut config = ClientConfig::new(
        host.clone().unwrap_or_else(|| "127.0.0.1".into()),
        args.port,
    );
    config.params = params;
    config.family = crate::usage::family(args.v4, args.v6);
    config.bind = match &args.bind {
        Some(text) => {
            let ip = split_device(text).0;
            Some(
                ip.parse()
                    .map_err(|_| usage(format!("-B {text}: not an IP address")))?,
            )
        }
        None => None,
    };
    config.local = sonde::perf::sockopt::LocalOptions {
        snd_timeout: args.snd_timeout.map(Duration::from_millis),
        dont_fragment: args.dont_fragment,
        bind_device: device(&args),
        control_keepalive: args.cntl_ka,
        mptcp: args.mptcp,
    };
    config.auth = args.auth.credentials()?;
    config.file.clone_from(&args.file);
    config.cport = args.cport;
    config.connect_timeout = args.connect_timeout.map(Duration::from_millis);
    config.interval =
        (args.interval > 0.0).then(|| Duration::from_secs_f64(args.interval.max(0.1)));
    config.rcv_timeout = Duration::from_millis(args.rcv_timeout.max(100));
    let format = format(&args)?;
    let (client_tls, server_tls) = perf_tls(&args, host.as_deref())?;
    config.tls = client_tls;
    // Ends after its one test, or when dropped if the client never ran one.
    let server = embedded
        .then(|| sonde::perf::embedded::start_with(server_tls))
        .transpose()
        .context("starting the embedded server")?;
    if let Some(server) = &server {
        config.port = server.addr.port();
    }
    live::run_client(&args, &config, format, &out, &stop)
}

/// The client's TLS for `--tls`, and (with no host) the embedded server's,
/// a certificate made for the run that the client pins.
fn perf_tls(
    args: &PerfArgs,
    host: Option<&str>,
) -> anyhow::Result<(Option<sonde::tls::ClientTls>, Option<sonde::tls::ServerTls>)> {
    if !args.tls.on() {
        return Ok((None, None));
    }
    check_tls_flags(args)?;
    let Some(host) = host else {
        let server = sonde::tls::config::ephemeral()?;
        let options = sonde::tls::ClientOptions {
            pin: Some(server.fingerprint.clone()),
            ..Default::default()
        };
        let client = sonde::tls::config::client(&options, "localhost")?;
        return Ok((Some(client), Some(server)));
    };
    Ok((args.tls.client(host)?, None))
}

/// What TLS data streams cannot carry: UDP (no DTLS), and the modes that
/// hand the kernel the bytes to send or drop (it sees only ciphertext).
pub(super) fn check_tls_flags(args: &PerfArgs) -> anyhow::Result<()> {
    if args.udp {
        return Err(usage(crate::tls::NO_DTLS));
    }
    for (set, flag) in [
        (args.zerocopy, "-Z"),
        (args.skip_rx_copy, "--skip-rx-copy"),
        (args.file.is_some(), "-F"),
        (args.mptcp, "-m"),
    ] {
        if set {
            return Err(usage(format!("--tls does not go with {flag}")));
        }
    }
    Ok(())
}

pub(super) fn pretty(doc: &serde_json::Value, pretty: bool) -> String {
    if pretty {
        serde_json::to_string_pretty(doc).unwrap_or_default()
    } else {
        doc.to_string()
    }
}
