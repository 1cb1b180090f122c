//! `sonde connect` and `sonde listen`: turn the flags into library options,
//! open the socket, report addresses on stderr and run the relay.

use std::io::IsTerminal;
use std::net::TcpListener;
use std::os::fd::{AsFd, OwnedFd};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use sonde::net::{self, ConnectOptions, Family};
use sonde::talk::many::{self as multi, ClientEvent};
use sonde::talk::pump::HexSink;
use sonde::talk::relay::{self, Input, RelayOptions};
use sonde::talk::udp::{self, UdpOptions};

use crate::args::{ConnectArgs, ListenArgs, TalkArgs};

/// A mistake in the command line that clap could not see (exit 2).
#[derive(Debug)]
pub(crate) struct UsageError(pub(crate) String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

fn family(talk: &TalkArgs) -> Family {
    match (talk.ipv4, talk.ipv6) {
        (true, _) => Family::V4,
        (_, true) => Family::V6,
        _ => Family::Any,
    }
}

fn hex_sink(talk: &TalkArgs) -> Option<HexSink> {
    talk.hex
        .then(|| Arc::new(Mutex::new(std::io::stderr())) as HexSink)
}

fn stdin_fd() -> anyhow::Result<OwnedFd> {
    std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .context("duplicating stdin")
}

fn stdout_fd() -> anyhow::Result<OwnedFd> {
    std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .context("duplicating stdout")
}

/// What to send: the message, stdin, or nothing.
fn input(talk: &TalkArgs, message: Option<&str>) -> anyhow::Result<Input> {
    Ok(match message {
        Some(text) => Input::Bytes(text.as_bytes().to_vec()),
        None if talk.recv_only => Input::Nothing,
        None => Input::Fd(stdin_fd()?),
    })
}

fn relay_options(talk: &TalkArgs, interactive: bool) -> RelayOptions {
    RelayOptions {
        no_shutdown: talk.no_shutdown,
        send_only: talk.send_only,
        quit_after: talk.quit_after,
        idle_timeout: talk.idle_timeout,
        crlf: talk.crlf,
        hex: hex_sink(talk),
        greeting: None,
        interactive,
    }
}

fn udp_options(talk: &TalkArgs) -> UdpOptions {
    UdpOptions {
        quit_after: talk.quit_after,
        crlf: talk.crlf,
        hex: hex_sink(talk),
    }
}

/// `sonde connect HOST PORT`.
pub(crate) fn connect(args: ConnectArgs) -> anyhow::Result<ExitCode> {
    let (host, port) = match args.port {
        Some(port) => (args.host.clone(), port),
        None => net::split_host_port(&args.host)
            .map_err(|e| UsageError(format!("{e} (or give the port as a second argument)")))?,
    };
    let opts = ConnectOptions {
        family: family(&args.talk),
        source: args.source,
        timeout: args.connect_timeout,
    };
    let interactive = args.message.is_none() && std::io::stdin().is_terminal();
    let input = input(&args.talk, args.message.as_deref())?;
    if args.talk.udp {
        let sock = net::connect_udp(&host, port, &opts)?;
        udp::talk(sock, input, stdout_fd()?, udp_options(&args.talk))?;
        return Ok(ExitCode::SUCCESS);
    }
    let (stream, peer) = net::connect_tcp(&host, port, &opts)?;
    relay::relay(
        stream,
        peer,
        input,
        stdout_fd()?,
        relay_options(&args.talk, interactive),
    )?;
    Ok(ExitCode::SUCCESS)
}

/// `sonde listen [ADDR:]PORT`.
pub(crate) fn listen(args: ListenArgs) -> anyhow::Result<ExitCode> {
    let fam = family(&args.talk);
    let addrs = net::local_addrs(args.on.host.as_deref(), args.on.port, fam)?;
    let addr = addrs[0];
    let v6_only = fam == Family::V6;
    let report = |text: String| {
        if !args.quiet {
            eprintln!("{text}");
        }
    };
    let input = input(&args.talk, None)?;
    if args.talk.udp {
        let sock = net::bind_udp(addr, v6_only)?;
        report(format!("listening on udp {}", local(sock.local_addr())));
        let quiet = args.quiet;
        udp::listen(
            sock,
            input,
            stdout_fd()?,
            udp_options(&args.talk),
            move |peer| {
                if !quiet {
                    eprintln!("datagram from {peer}");
                }
            },
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let listener = net::listen_tcp(addr, v6_only)?;
    report(format!("listening on {}", local(listener.local_addr())));
    let interactive = std::io::stdin().is_terminal();
    let mut opts = relay_options(&args.talk, interactive);
    opts.greeting = args.greet.map(String::into_bytes);
    if args.keep_open {
        sonde::door::raise_fd_limit();
        serve_many(listener, input, opts, args.max_conns, args.quiet)?;
        return Ok(ExitCode::SUCCESS);
    }
    let (stream, peer) = listener
        .accept()
        .with_context(|| format!("accepting a client on {}", local(listener.local_addr())))?;
    drop(listener);
    report(format!("connection from {peer}"));
    relay::relay(stream, peer, input, stdout_fd()?, opts)?;
    Ok(ExitCode::SUCCESS)
}

fn serve_many(
    listener: TcpListener,
    input: Input,
    opts: RelayOptions,
    max_clients: usize,
    quiet: bool,
) -> anyhow::Result<()> {
    multi::serve_many(
        listener,
        input,
        stdout_fd()?,
        opts,
        max_clients,
        move |event| match event {
            ClientEvent::Connected(peer) if !quiet => eprintln!("connection from {peer}"),
            ClientEvent::Closed(peer) if !quiet => eprintln!("{peer} closed"),
            ClientEvent::Dropped(peer) => {
                eprintln!("sonde: dropped {peer}: it stopped reading and its queue filled");
            }
            ClientEvent::Failed(peer, err) => eprintln!("sonde: client {peer}: {err}"),
            _ => {}
        },
    )?;
    Ok(())
}

fn local(addr: std::io::Result<std::net::SocketAddr>) -> String {
    addr.map_or_else(|_| "an unknown address".to_string(), |a| a.to_string())
}
