//! The step between a new control connection's cookie and its test: the
//! server asks for the parameters and reads them in the connection's
//! small task, with a deadline of its own and still evictable at the
//! door, so a client that sends a cookie and then stays silent holds
//! neither a test slot nor a thread, and is gone by the deadline. The
//! session's rules judge them there too (`judged`): parameters it refuses
//! (garbage, a test too long) are answered from the task, so they never
//! cost a thread either.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::door::Unidentified;
use crate::error::Error;
use crate::perf::session::server::{Judged, ServerLimits, ServerSession};
use crate::wire::iperf::state::TestState;
use crate::wire::iperf::{MAX_PARAMS_LEN, ProtocolError, codec};

/// How long a client has to send its parameters once asked: one message,
/// sent as soon as the state byte arrives, so a second is plenty even
/// across the world; iperf3 waits 30 s.
pub const PARAMS_TIMEOUT: Duration = Duration::from_secs(3);

/// What a new test's client sent when asked for its parameters.
pub(super) enum Greeted {
    /// The parameters' JSON bytes (not yet parsed), or a length the
    /// session refuses.
    Params(Result<Vec<u8>, ProtocolError>),
    /// The client left, stayed silent past the deadline, or was evicted:
    /// the error says which (`None`: evicted, nothing to report).
    Gone(Option<Error>),
}

/// Sends PARAM_EXCHANGE and reads the parameters' frame by `limit`.
pub(super) async fn greet(
    stream: &mut TcpStream,
    peer: SocketAddr,
    waiting: &Unidentified,
    limit: Duration,
) -> Greeted {
    let exchange = async {
        stream
            .write_all(&[TestState::ParamExchange.to_wire()])
            .await?;
        let mut prefix = [0u8; 4];
        stream.read_exact(&mut prefix).await?;
        let len = match codec::decode_len(prefix, MAX_PARAMS_LEN) {
            Ok(len) => len,
            Err(e) => return Ok(Err(e)),
        };
        let mut body = vec![0u8; len];
        stream.read_exact(&mut body).await?;
        Ok::<_, std::io::Error>(Ok(body))
    };
    let done = tokio::select! {
        () = waiting.evicted() => return Greeted::Gone(None),
        done = tokio::time::timeout(limit, exchange) => done,
    };
    match done {
        Ok(Ok(params)) => Greeted::Params(params),
        Ok(Err(_)) => Greeted::Gone(Some(Error::Ended(format!(
            "reading the parameters: the peer {peer} closed the control connection"
        )))),
        Err(_) => Greeted::Gone(Some(Error::Timeout {
            phase: format!("reading the parameters (control connection with {peer})"),
            after: limit,
        })),
    }
}

/// The parameters when the session would take them, else the frames to
/// answer with (iperf3's error, when it has one) and why. iperf3's
/// credentials are left to the test's thread, which checks them once.
pub(super) fn judged(
    params: Result<Vec<u8>, ProtocolError>,
    limits: &ServerLimits,
) -> Result<Judged, (Vec<u8>, Error)> {
    let json = params.and_then(|body| codec::decode_json(&body));
    ServerSession::judge(json, limits).map_err(|(code, error)| {
        let frames = code.map_or_else(Vec::new, |code| {
            codec::encode_server_error(code, 0).to_vec()
        });
        (frames, error)
    })
}

/// Sends a refusal's frames (bounded by `limit`) and closes.
pub(super) async fn refuse(stream: &mut TcpStream, frames: &[u8], limit: Duration) {
    let _ = tokio::time::timeout(limit, stream.write_all(frames)).await;
}
