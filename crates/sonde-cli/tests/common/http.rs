//! A plain HTTP/1.1 client for the tests of sonde's HTTP servers (the
//! mail sink's web side, the exporter): one request a connection, the
//! answer read to its close.

use std::io::{Read, Write};
use std::net::TcpStream;

use super::DEADLINE;

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
    request_with(port, method, path, &[], body)
}

/// As [`request`], with these headers too.
pub fn request_with(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Answer {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the web side");
    s.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{extra}Content-Length: {}\r\n\r\n",
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
