//! The mail sink's test helpers: `serve smtp` on loopback with its web
//! side on a port of its own, and Python (smtplib) scripts.

use std::path::Path;
use std::process::{Command, Stdio};

use super::{Listener, run, sonde};

/// A running sink: its SMTP port (`server.port`) and its web port.
pub struct Sink {
    pub server: Listener,
    pub web: u16,
}

/// `sonde serve smtp` on 127.0.0.1, SMTP and web on ports of their own,
/// its Maildir in `dir` (or `:memory:`).
pub fn sink(dir: &Path, extra: &[&str]) -> Sink {
    let mut cmd = sonde();
    cmd.args(["serve", "smtp", "--bind", "127.0.0.1", "--port", "0"])
        .args(["--http", "0", "--store"])
        .arg(dir)
        .args(extra)
        .stdout(Stdio::null());
    let server = super::start_command(cmd);
    let line = server.next_line();
    assert!(line.contains("web UI and API on http://"), "{line}");
    let web = line
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"));
    Sink { server, web }
}

/// Runs a Python script with `args`; it must succeed. Its stdout.
pub fn python(script: &str, args: &[&str]) -> String {
    let mut cmd = Command::new("python3");
    cmd.arg("-c").arg(script).args(args);
    let done = run(cmd, b"");
    assert_eq!(done.code(), Some(0), "python: {}", done.stderr);
    done.stdout_text()
}

/// Sends a file's bytes as one message: `PORT FILE FROM [TO...]`
/// (SMTPUTF8 asked for when recipients are given).
pub const SEND_RAW: &str = "
import smtplib, sys
raw = open(sys.argv[2], 'rb').read()
with smtplib.SMTP('127.0.0.1', int(sys.argv[1])) as s:
    opts = ['SMTPUTF8'] if len(sys.argv) > 4 else []
    print(s.sendmail(sys.argv[3], sys.argv[4:] or ['user@example.com'], raw, mail_options=opts))
";
