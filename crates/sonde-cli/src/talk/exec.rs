//! `--exec`, `--sh-exec` and `--stderr-to-peer` on `connect` and
//! `listen`: the flags, their checks, and how a process's end is told.

use std::process::ExitCode;

use clap::Args;
use sonde::talk::exec::{self, Ending, ExecEvent, ExecOptions, Program};
use sonde::talk::relay::{Duplex, RelayOptions};

use super::TalkArgs;
use crate::metrics::Outcomes;
use crate::usage::UsageError;

/// The flags that join a connection to a process.
#[derive(Debug, Args)]
pub(crate) struct ExecArgs {
    /// Run CMD for the connection (with -k, one per client), the socket its stdin and stdout; every word after it is CMD's, so put it last (ncat's --exec, nc's -e).
    #[arg(
        short = 'e',
        long,
        value_name = "CMD",
        num_args = 1..,
        allow_hyphen_values = true,
        conflicts_with = "sh_exec"
    )]
    pub(crate) exec: Option<Vec<String>>,
    /// Run LINE with /bin/sh for the connection, as --exec does (ncat's -c).
    #[arg(short = 'c', long, value_name = "LINE")]
    pub(crate) sh_exec: Option<String>,
    /// With --exec or --sh-exec: the process's stderr goes to the peer too.
    #[arg(long)]
    pub(crate) stderr_to_peer: bool,
}

/// The process of `--exec` or `--sh-exec`, when one is asked for, and
/// whether its stderr goes to the peer.
pub(super) fn program(talk: &TalkArgs) -> anyhow::Result<Option<(Program, bool)>> {
    let args = &talk.exec;
    let program = match (&args.exec, &args.sh_exec) {
        (Some(words), _) => Program::exec(words).map_err(|e| UsageError(e.to_string()))?,
        (None, Some(line)) => Program::shell(line),
        (None, None) if args.stderr_to_peer => {
            return Err(UsageError("--stderr-to-peer goes with --exec or --sh-exec".into()).into());
        }
        (None, None) => return Ok(None),
    };
    if talk.udp {
        return Err(UsageError("--exec is for TCP (or TLS) connections, not -u".into()).into());
    }
    if talk.send_only || talk.recv_only {
        return Err(UsageError(
            "--exec joins both directions to the process: no --send-only or --recv-only".into(),
        )
        .into());
    }
    Ok(Some((program, args.stderr_to_peer)))
}

/// One connection joined to `program`; exit 1 when the relay failed or
/// the process did not exit 0 by itself.
pub(super) fn run<S: Duplex>(
    stream: S,
    peer: impl std::fmt::Display,
    program: &Program,
    relay: RelayOptions,
    stderr_to_peer: bool,
) -> anyhow::Result<ExitCode> {
    let opts = ExecOptions {
        relay,
        stderr_to_peer,
    };
    let finished = exec::run(stream, peer, program, opts)?;
    eprintln!("sonde: {program}: {}", finished.ending);
    finished.relayed?;
    Ok(exit_code(finished.ending))
}

fn exit_code(ending: Ending) -> ExitCode {
    if ending.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// `listen -k --exec`: a process per client, through the front door.
pub(super) fn serve_many(
    listener: std::net::TcpListener,
    (program, stderr_to_peer): (Program, bool),
    relay: RelayOptions,
    door: sonde::door::DoorConfig,
    tls: Option<sonde::tls::ServerTls>,
    (quiet, outcomes): (bool, Outcomes),
) -> anyhow::Result<()> {
    let opts = ExecOptions {
        relay,
        stderr_to_peer,
    };
    let notify = reporter(program.to_string(), quiet, outcomes);
    exec::serve(listener, program, opts, door, tls, notify)?;
    Ok(())
}

/// `listen -k -U --exec`: a process per client on a Unix socket.
pub(super) fn serve_many_unix(
    listener: std::os::unix::net::UnixListener,
    name: String,
    (program, stderr_to_peer): (Program, bool),
    relay: RelayOptions,
    door: sonde::door::DoorConfig,
    (quiet, outcomes): (bool, Outcomes),
) -> anyhow::Result<()> {
    let opts = ExecOptions {
        relay,
        stderr_to_peer,
    };
    let notify = reporter(program.to_string(), quiet, outcomes);
    exec::serve_unix(listener, name, program, opts, door, notify)?;
    Ok(())
}

/// What a server of processes says about each client on stderr: its
/// coming (unless quiet), a broken relay, and how its process ended
/// (quiet: only a failure); each ending counted in `outcomes`.
fn reporter(
    name: String,
    quiet: bool,
    outcomes: Outcomes,
) -> impl Fn(ExecEvent) + Send + Sync + 'static {
    move |event| match event {
        ExecEvent::Connected(peer) if !quiet => eprintln!("connection from {peer}"),
        ExecEvent::Finished(peer, finished) => {
            if let Err(e) = &finished.relayed {
                outcomes.ended("failed");
                eprintln!("sonde: client {peer}: {e}");
            } else {
                outcomes.ended("closed");
            }
            if !quiet || !finished.ending.success() {
                eprintln!("{peer}: {name}: {}", finished.ending);
            }
        }
        ExecEvent::Failed(peer, e) => {
            outcomes.ended("failed");
            eprintln!("sonde: client {peer}: {e}");
        }
        ExecEvent::Connected(_) => {}
    }
}
