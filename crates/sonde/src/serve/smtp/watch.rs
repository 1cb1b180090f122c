//! `sonde mail wait`: waits on a sink's event stream for the next message
//! matching a search and fetches it whole, so a shell test waits for its
//! mail instead of polling (polling misses it past the list's window).
//! The stream is subscribed to before the store is searched, so a message
//! arriving between the two is not missed.

use std::net::SocketAddr;

use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// Why no message came back.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The sink could not be reached.
    #[error("connecting to {addr}: {source}")]
    Connect {
        /// Where.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// HTTP failed under way.
    #[error("asking {addr} for {path}: {source}")]
    Http {
        /// Where.
        addr: SocketAddr,
        /// What was asked.
        path: String,
        /// Why.
        source: hyper::Error,
    },
    /// The sink answered, but not with what was asked for.
    #[error("asking {addr} for {path}: {status} (is it a sonde serve smtp --http?)")]
    Status {
        /// Where.
        addr: SocketAddr,
        /// What was asked.
        path: String,
        /// What it said.
        status: StatusCode,
    },
    /// An answer that is not the JSON it should be.
    #[error("reading {path} from {addr}: {why}")]
    Json {
        /// Where.
        addr: SocketAddr,
        /// What was asked.
        path: String,
        /// Why.
        why: String,
    },
    /// The event stream ended (the sink stopped).
    #[error("{addr} closed its event stream before a message came")]
    Ended {
        /// Where.
        addr: SocketAddr,
    },
}

/// The next message at the sink on `addr` matching `query` (Mailpit's
/// search syntax), as `GET /api/v1/message/{ID}` gives it; with
/// `stored`, the newest already there matching counts too. `subscribed`
/// is called once the stream is open (a message sent after it is seen).
/// Waits for ever: the caller bounds it.
///
/// # Errors
/// When the sink cannot be reached or answers wrongly, or stops.
pub async fn next(
    addr: SocketAddr,
    query: &str,
    stored: bool,
    subscribed: impl FnOnce(),
) -> Result<Value, WatchError> {
    let query = form_urlencoded::byte_serialize(query.as_bytes()).collect::<String>();
    let events = format!("/sonde/v1/events?query={query}");
    let mut stream = get(addr, &events).await?.into_body();
    subscribed();
    if stored {
        let path = format!("/api/v1/search?limit=1&query={query}");
        let found = json(addr, &path).await?;
        if let Some(id) = found["messages"][0]["ID"].as_str() {
            return message(addr, id).await;
        }
    }
    let mut reader = SseReader::default();
    while let Some(frame) = stream.frame().await {
        let frame = frame.map_err(|source| WatchError::Http {
            addr,
            path: events.clone(),
            source,
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        for (event, data) in reader.push(&data) {
            if event != "new" {
                continue;
            }
            let summary: Value = serde_json::from_str(&data).map_err(|e| WatchError::Json {
                addr,
                path: events.clone(),
                why: e.to_string(),
            })?;
            if let Some(id) = summary["ID"].as_str() {
                return message(addr, id).await;
            }
        }
    }
    Err(WatchError::Ended { addr })
}

async fn message(addr: SocketAddr, id: &str) -> Result<Value, WatchError> {
    let id = form_urlencoded::byte_serialize(id.as_bytes()).collect::<String>();
    json(addr, &format!("/api/v1/message/{id}")).await
}

/// `GET path` on a connection of its own; the answer's head, which must
/// be 200.
async fn get(addr: SocketAddr, path: &str) -> Result<Response<Incoming>, WatchError> {
    let http = |source| WatchError::Http {
        addr,
        path: path.to_string(),
        source,
    };
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|source| WatchError::Connect { addr, source })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(http)?;
    tokio::spawn(conn);
    let request = Request::get(path)
        .header(hyper::header::HOST, addr.to_string())
        .body(Empty::<Bytes>::new())
        .map_err(|e| WatchError::Json {
            addr,
            path: path.to_string(),
            why: e.to_string(),
        })?;
    let response = sender.send_request(request).await.map_err(http)?;
    if response.status() != StatusCode::OK {
        return Err(WatchError::Status {
            addr,
            path: path.to_string(),
            status: response.status(),
        });
    }
    Ok(response)
}

/// `GET path`, read whole as JSON.
async fn json(addr: SocketAddr, path: &str) -> Result<Value, WatchError> {
    let body = get(addr, path).await?.into_body();
    let bytes = body
        .collect()
        .await
        .map_err(|source| WatchError::Http {
            addr,
            path: path.to_string(),
            source,
        })?
        .to_bytes();
    serde_json::from_slice(&bytes).map_err(|e| WatchError::Json {
        addr,
        path: path.to_string(),
        why: e.to_string(),
    })
}

/// Server-sent events out of the bytes as they come: each event's name
/// (`message` when it has none) and its data lines joined.
#[derive(Debug, Default)]
pub struct SseReader {
    pending: Vec<u8>,
    event: String,
    data: Vec<String>,
}

impl SseReader {
    /// Takes more of the stream; returns the events it completed.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<(String, String)> {
        self.pending.extend_from_slice(bytes);
        let mut done = Vec::new();
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if !self.data.is_empty() {
                    let event = std::mem::take(&mut self.event);
                    let name = if event.is_empty() {
                        "message".into()
                    } else {
                        event
                    };
                    done.push((name, std::mem::take(&mut self.data).join("\n")));
                }
                self.event.clear();
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => self.event = value.to_string(),
                "data" => self.data.push(value.to_string()),
                // Comments (keep-alives), ids and retry times.
                _ => {}
            }
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_however_the_bytes_come() {
        let stream = b":keep\n\nevent: new\ndata: {\"ID\":\"a\"}\r\n\r\ndata: x\ndata: y\n\n";
        for cut in 0..stream.len() {
            let mut reader = SseReader::default();
            let mut got = reader.push(&stream[..cut]);
            got.extend(reader.push(&stream[cut..]));
            assert_eq!(
                got,
                [
                    ("new".to_string(), "{\"ID\":\"a\"}".to_string()),
                    ("message".to_string(), "x\ny".to_string())
                ],
                "cut at {cut}"
            );
        }
    }
}
