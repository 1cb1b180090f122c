//! The mail sink's test helpers: `serve smtp` on loopback with its web
//! side on a port of its own, a plain HTTP/1.1 request to that side, and
//! Python (smtplib) scripts.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};

use super::{DEADLINE, Listener, run, sonde};

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

/// An HTTP answer: status, head (lower-cased names) and body.
pub struct Answer {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

/// `METHOD path` on 127.0.0.1:`port` with `body`, the connection closed
/// after (so the answer ends with it).
pub fn request(port: u16, method: &str, path: &str, body: &[u8]) -> Answer {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the web side");
    s.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).expect("send");
    s.write_all(body).expect("send");
    let mut all = Vec::new();
    s.read_to_end(&mut all).expect("read the answer");
    let split = memchr::memmem::find(&all, b"\r\n\r\n").expect("an HTTP head");
    let head = String::from_utf8_lossy(&all[..split]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    let mut body = all[split + 4..].to_vec();
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    if chunked {
        body = unchunk(&body);
    }
    Answer { status, head, body }
}

pub fn get(port: u16, path: &str) -> Answer {
    request(port, "GET", path, b"")
}

/// A chunked body's bytes.
fn unchunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = memchr::memmem::find(data, b"\r\n") {
        let size = std::str::from_utf8(&data[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok())
            .expect("a chunk size");
        if size == 0 {
            break;
        }
        out.extend_from_slice(&data[eol + 2..eol + 2 + size]);
        data = &data[eol + 2 + size + 2..];
    }
    out
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
