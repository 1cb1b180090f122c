//! `--exec` and `--sh-exec` (ncat's, and nc's `-e`): a connection joined
//! to a process instead of to stdin and stdout.
//!
//! The process reads what the peer sends and writes what the peer gets,
//! through pipes and the same relay as a terminal's (so half-close passes
//! through both ways: the end of the process's output half-closes the
//! socket, the peer's half-close closes the process's stdin). Its stderr
//! stays ours unless asked for. When the relay is over the process is
//! given a moment to exit, then asked to (SIGTERM), then killed, so a
//! process that ignores both ends never holds a server's place.

use std::fmt;
use std::io::PipeReader;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use super::relay::{Duplex, Input, RelayOptions, RelayStats, relay};
use crate::door::{Accepted, Door, DoorConfig};
use crate::error::{Error, Result};

/// How long a process may run on once its connection is done, before it
/// is asked to stop; and again before it is killed.
pub const LINGER: Duration = Duration::from_secs(5);

/// The process to run for each connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Program {
    /// The program and its arguments.
    argv: Vec<String>,
    /// Given as one line for the shell (`--sh-exec`).
    shell: bool,
}

impl Program {
    /// A program and its arguments, run without a shell. One word with
    /// spaces is split on them, as ncat's `--exec "cat -n"` is.
    ///
    /// # Errors
    /// [`Error::Invalid`] when there is no program.
    pub fn exec(words: &[String]) -> Result<Self> {
        let argv: Vec<String> = match words {
            [one] => one.split_whitespace().map(str::to_string).collect(),
            many => many.to_vec(),
        };
        if argv.first().is_none_or(String::is_empty) {
            return Err(Error::Invalid("--exec needs a program to run".into()));
        }
        Ok(Self { argv, shell: false })
    }

    /// A command line run by `/bin/sh -c`.
    pub fn shell(line: &str) -> Self {
        Self {
            argv: vec!["/bin/sh".into(), "-c".into(), line.into()],
            shell: true,
        }
    }

    fn command(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(&self.argv[0]);
        cmd.args(&self.argv[1..]);
        cmd
    }
}

impl fmt::Display for Program {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.shell {
            write!(f, "sh -c {:?}", self.argv[2])
        } else {
            write!(f, "{}", self.argv.join(" "))
        }
    }
}

/// How a connection's process is run.
#[derive(Clone, Default)]
pub struct ExecOptions {
    /// The relay's rules (timeouts, CRLF, hex dump, greeting).
    pub relay: RelayOptions,
    /// Send the process's stderr to the peer too (merged with its stdout).
    pub stderr_to_peer: bool,
}

/// How the process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ending {
    /// Its status.
    pub status: ExitStatus,
    /// It was still running after the connection ended and was stopped.
    pub stopped: bool,
}

impl Ending {
    /// Whether it exited by itself with status 0.
    pub fn success(&self) -> bool {
        self.status.success() && !self.stopped
    }
}

impl fmt::Display for Ending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use std::os::unix::process::ExitStatusExt;
        if self.stopped {
            write!(f, "still running after the connection ended: stopped")?;
            return match self.status.signal() {
                Some(sig) => write!(f, " (signal {sig})"),
                None => Ok(()),
            };
        }
        match (self.status.code(), self.status.signal()) {
            (Some(code), _) => write!(f, "exited with status {code}"),
            (None, Some(sig)) => write!(f, "killed by signal {sig}"),
            (None, None) => write!(f, "ended ({})", self.status),
        }
    }
}

/// What a connection with a process came to.
#[derive(Debug)]
pub struct Finished {
    /// What the relay moved, or why it failed.
    pub relayed: Result<RelayStats>,
    /// How the process ended.
    pub ending: Ending,
}

/// Starts `program` with pipes for stdin and stdout (stderr merged into
/// stdout when asked) and relays `stream` through it until both
/// directions are done; then reaps the process.
///
/// # Errors
/// [`Error::Io`] when the process cannot be started; how the relay went
/// is in the [`Finished`].
pub fn run<S: Duplex>(
    stream: S,
    peer: impl fmt::Display,
    program: &Program,
    opts: ExecOptions,
) -> Result<Finished> {
    let (mut child, output) = spawn(program, opts.stderr_to_peer)?;
    let stdin = child
        .stdin
        .take()
        .map(OwnedFd::from)
        .ok_or_else(|| Error::Invalid("the process has no stdin".into()))?;
    let pid = child.id();
    let tap = stream
        .duplicate()
        .map_err(|e| Error::io("duplicating the socket", e))?;
    let (tx, exited) = mpsc::channel();
    std::thread::Builder::new()
        .name("sonde-exec-wait".into())
        .spawn(move || {
            let status = child.wait();
            // Nobody is left to read what the peer sends: the relay's
            // reading side ends, and its sending side drains the output.
            let _ = tap.shut(Shutdown::Read);
            let _ = tx.send(status);
        })
        .map_err(|e| Error::io("starting a thread", e))?;
    let mut relay_opts = opts.relay;
    // A process that stops reading its stdin may still have much to say.
    relay_opts.output_may_close = true;
    let relayed = relay(stream, peer, Input::Fd(output.into()), stdin, relay_opts);
    let linger = if relayed.is_ok() {
        LINGER
    } else {
        Duration::ZERO
    };
    let ending = reap(pid, &exited, linger);
    Ok(Finished { relayed, ending })
}

/// The process and the read end of its output.
fn spawn(program: &Program, stderr_too: bool) -> Result<(Child, PipeReader)> {
    let what = || format!("starting {program}");
    let (reader, writer) = std::io::pipe().map_err(|e| Error::io(what(), e))?;
    let stderr = if stderr_too {
        let copy = writer.try_clone().map_err(|e| Error::io(what(), e))?;
        Stdio::from(copy)
    } else {
        Stdio::inherit()
    };
    // The command holds its ends of the pipes: dropped as it goes out of
    // scope, so the output ends when the process's does.
    let child = program
        .command()
        .stdin(Stdio::piped())
        .stdout(Stdio::from(writer))
        .stderr(stderr)
        .spawn()
        .map_err(|e| Error::io(what(), e))?;
    Ok((child, reader))
}

/// Waits up to `linger` for the process to exit, then asks it to stop
/// (SIGTERM), then kills it, [`LINGER`] later.
fn reap(
    pid: u32,
    exited: &mpsc::Receiver<std::io::Result<ExitStatus>>,
    linger: Duration,
) -> Ending {
    let ended = |got: std::io::Result<ExitStatus>, stopped| Ending {
        status: got.unwrap_or_default(),
        stopped,
    };
    if let Ok(got) = exited.recv_timeout(linger) {
        return ended(got, false);
    }
    // Not yet reaped (its status has not come), so the pid is still its.
    let signal = |sig| {
        if let Some(pid) = rustix::process::Pid::from_raw(pid.try_into().unwrap_or(0)) {
            let _ = rustix::process::kill_process(pid, sig);
        }
    };
    signal(rustix::process::Signal::TERM);
    if let Ok(got) = exited.recv_timeout(LINGER) {
        return ended(got, true);
    }
    signal(rustix::process::Signal::KILL);
    ended(
        exited.recv().unwrap_or_else(|_| Ok(ExitStatus::default())),
        true,
    )
}

/// What happened to one client of [`serve`].
#[derive(Debug)]
pub enum ExecEvent {
    /// A client connected (its address, or the Unix socket's path); its
    /// process is starting.
    Connected(String),
    /// Its connection and process are done.
    Finished(String, Finished),
    /// Its process could not be started, or its TLS handshake failed.
    Failed(String, Error),
}

/// Serves clients of `listener` through a door configured by `door`,
/// each with its own process (a thread and a process per client, at most
/// the door's cap at once), until the process ends.
///
/// # Errors
/// When the listener cannot be served.
pub fn serve(
    listener: TcpListener,
    program: Program,
    opts: ExecOptions,
    door: DoorConfig,
    tls: Option<crate::tls::ServerTls>,
    notify: impl Fn(ExecEvent) + Send + Sync + 'static,
) -> Result<()> {
    let door = Door::new(door);
    let shared = Arc::new((program, opts, tls, notify));
    let served = door.serve_blocking(listener, |conn| {
        let Accepted {
            stream,
            peer,
            permit,
        } = conn;
        let shared = Arc::clone(&shared);
        let work = move || {
            let (program, opts, tls, notify) = &*shared;
            notify(ExecEvent::Connected(peer.to_string()));
            let done = crate::door::to_blocking(stream)
                .map_err(|e| Error::io("taking over a connection", e))
                .and_then(|s| run_over(s, peer, program, opts.clone(), tls.as_ref()));
            notify(finished(peer.to_string(), done));
        };
        let _ = permit.spawn_thread("sonde-exec", work);
    });
    served.map_err(|e| Error::io("serving clients", e))
}

/// How one client's process went, told.
fn finished(client: String, done: Result<Finished>) -> ExecEvent {
    match done {
        Ok(finished) => ExecEvent::Finished(client, finished),
        Err(e) => ExecEvent::Failed(client, e),
    }
}

/// [`serve`] on a Unix stream socket: each client of `listener` (named
/// by `name`, its socket's path, as Unix clients have no address) with
/// its own process, at most the door's cap at once.
///
/// # Errors
/// When the listener cannot be served.
pub fn serve_unix(
    listener: std::os::unix::net::UnixListener,
    name: String,
    program: Program,
    opts: ExecOptions,
    door: DoorConfig,
    notify: impl Fn(ExecEvent) + Send + Sync + 'static,
) -> Result<()> {
    let door = Door::new(door);
    let shared = Arc::new((program, opts, notify, name));
    let served = door.serve_unix_blocking(listener, |conn| {
        let crate::door::UnixAccepted { stream, permit } = conn;
        let shared = Arc::clone(&shared);
        let work = move || {
            let (program, opts, notify, name) = &*shared;
            notify(ExecEvent::Connected(name.clone()));
            let done = stream
                .into_std()
                .and_then(|s| s.set_nonblocking(false).map(|()| s))
                .map_err(|e| Error::io("taking over a connection", e))
                .and_then(|s| run(s, name, program, opts.clone()));
            notify(finished(name.clone(), done));
        };
        let _ = permit.spawn_thread("sonde-exec", work);
    });
    served.map_err(|e| Error::io("serving clients", e))
}

/// [`run`] on a plain connection, or on the plaintext end of a TLS
/// session accepted on it; a session that broke is the relay's failure.
///
/// # Errors
/// As [`run`], and the TLS handshake's failure.
pub fn run_over(
    stream: TcpStream,
    peer: SocketAddr,
    program: &Program,
    opts: ExecOptions,
    tls: Option<&crate::tls::ServerTls>,
) -> Result<Finished> {
    let Some(tls) = tls else {
        return run(stream, peer, program, opts);
    };
    let (plain, bridge) = crate::tls::accept(stream, tls, &peer.to_string())?;
    let mut finished = run(plain, peer, program, opts)?;
    if let Err(e) = bridge.finish_within(LINGER) {
        finished.relayed = Err(e.into());
    }
    Ok(finished)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_word_with_spaces_is_split_as_ncat_does() {
        let p = Program::exec(&["cat -n".into()]).expect("a program");
        assert_eq!(p.argv, ["cat", "-n"]);
        let p = Program::exec(&["printf".into(), "a b".into()]).expect("a program");
        assert_eq!(p.argv, ["printf", "a b"]);
        assert_eq!(p.to_string(), "printf a b");
        assert!(Program::exec(&[]).is_err());
        assert!(Program::exec(&["  ".into()]).is_err());
        assert_eq!(Program::shell("echo hi").to_string(), "sh -c \"echo hi\"");
    }
}
