//! How a transfer's connection is protected: plain TCP, TLS run by a
//! bridge thread (`crate::tls`), or the code phrase (a PAKE, then a sealed
//! channel: `pake`, `sealed`), each of the last two between the network
//! and a local socket pair the transfer reads and writes as it would the
//! network.

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::TransferError;
use super::carrier::Carrier;
use super::pake;
use super::sealed::Sealed;
use crate::tls::{self, Bridge, ClientTls, ServerTls};

/// How long a peer has, once our side of a protected session ended, to
/// end its side, before the connection is cut.
const CLOSING: Duration = Duration::from_secs(5);

/// How a sender protects its connection.
#[derive(Clone, Debug, Default)]
pub enum SendSecurity {
    /// Plain TCP.
    #[default]
    Plain,
    /// TLS, verifying the receiver as `ClientTls` says.
    Tls(ClientTls),
    /// The receiver's code phrase (as [`super::code::normalise`] spells it).
    Code(String),
}

/// How a receiver protects its connections.
#[derive(Clone, Debug, Default)]
pub enum ReceiveSecurity {
    /// Plain TCP.
    #[default]
    Plain,
    /// TLS with this certificate (and client checks, if asked).
    Tls(ServerTls),
    /// This code phrase, which a sender must know.
    Code(String),
}

/// The protecting layer under a connection, ended with the transfer.
#[derive(Default)]
pub(crate) struct Layer {
    bridge: Option<Bridge>,
    sealed: Option<Sealed>,
}

impl Layer {
    /// Ends the layer once the transfer has ended its side: waits a little
    /// for the peer to end its side (so that what was written last, a
    /// refusal or the final report, is delivered), then cuts.
    pub(crate) fn close(self) -> Result<(), TransferError> {
        if let Some(sealed) = self.sealed {
            return sealed.finish_within(CLOSING);
        }
        match self.bridge {
            Some(bridge) => Ok(bridge.finish_within(CLOSING)?),
            None => Ok(()),
        }
    }
}

/// A transfer's result once its layer is closed: a layer that failed (a
/// bad record, a cut) is why a transfer failed, and says it better; after
/// a whole transfer how the layer ended is moot.
pub(crate) fn settle<T>(
    result: Result<T, TransferError>,
    layer: Layer,
) -> Result<T, TransferError> {
    let closed = layer.close();
    match (result, closed) {
        (Ok(done), _) => Ok(done),
        (Err(_), Err(layer)) => Err(layer),
        (Err(err), Ok(())) => Err(err),
    }
}

/// A sender's connection, protected as `security` says.
pub(crate) fn client(
    stream: TcpStream,
    peer: SocketAddr,
    security: &SendSecurity,
) -> Result<(Carrier, Layer), TransferError> {
    match security {
        SendSecurity::Plain => Ok((Carrier::Tcp(stream), Layer::default())),
        SendSecurity::Tls(config) => {
            let (local, bridge) = tls::connect(stream, config, &peer.to_string())?;
            Ok(bridge_layer(local, bridge))
        }
        SendSecurity::Code(code) => {
            let keys = within(&stream, tls::HANDSHAKE_TIMEOUT, |s| pake::sender(s, code))
                .map_err(|failure| code_failed(failure, peer, true))?;
            sealed_layer(stream, &keys, peer)
        }
    }
}

/// The receiver's side of the code handshake, the sender's opening read:
/// `Err` with whether the codes differed (a guess spent) and why.
pub(crate) fn code_server(
    stream: TcpStream,
    peer: SocketAddr,
    code: &str,
    opening: &[u8],
    limit: Duration,
) -> Result<(Carrier, Layer), (bool, TransferError)> {
    let keys = within(&stream, limit, |s| pake::receiver(s, code, opening)).map_err(|failure| {
        let guessed = matches!(failure, pake::Failure::Mismatch);
        (guessed, code_failed(failure, peer, false))
    })?;
    sealed_layer(stream, &keys, peer).map_err(|e| (false, e))
}

/// Runs `work` with read and write deadlines of `limit` on `stream`,
/// then none (a transfer's own timeouts are on its local side).
fn within<T>(
    stream: &TcpStream,
    limit: Duration,
    work: impl FnOnce(&mut &TcpStream) -> Result<T, pake::Failure>,
) -> Result<T, pake::Failure> {
    let _ = stream.set_read_timeout(Some(limit));
    let _ = stream.set_write_timeout(Some(limit));
    let result = work(&mut &*stream);
    let _ = stream.set_read_timeout(None);
    let _ = stream.set_write_timeout(None);
    result
}

fn code_failed(failure: pake::Failure, peer: SocketAddr, sending: bool) -> TransferError {
    match failure {
        pake::Failure::Mismatch if sending => TransferError::Code(format!(
            "the code did not match the receiver's at {peer}: nothing was sent (check the code; each wrong one costs the receiver an attempt)"
        )),
        pake::Failure::Mismatch => TransferError::Code(format!(
            "the code did not match: {peer} gave another (nothing was written)"
        )),
        pake::Failure::PlainReceiver => TransferError::Code(format!(
            "the receiver at {peer} takes no code (it was started without --code): send without --code"
        )),
        pake::Failure::Malformed(why) => {
            TransferError::Code(format!("the code handshake with {peer} failed: {why}"))
        }
        pake::Failure::Io(cause) => {
            TransferError::io(format!("the code handshake with {peer}"), cause)
        }
    }
}

fn sealed_layer(
    stream: TcpStream,
    keys: &pake::Keys,
    peer: SocketAddr,
) -> Result<(Carrier, Layer), TransferError> {
    let _ = stream.set_nodelay(true);
    let (local, sealed) = Sealed::start(stream, keys, peer.to_string())
        .map_err(|e| TransferError::io("starting the sealed channel", e))?;
    Ok((
        Carrier::Local(local),
        Layer {
            bridge: None,
            sealed: Some(sealed),
        },
    ))
}

/// A receiver's side of an accepted connection: the TLS handshake, when
/// asked, on this (blocking) thread.
pub(crate) fn server(
    stream: TcpStream,
    peer: SocketAddr,
    config: &ServerTls,
) -> Result<(Carrier, Layer), TransferError> {
    let (local, bridge) = tls::accept(stream, config, &peer.to_string())?;
    Ok(bridge_layer(local, bridge))
}

fn bridge_layer(local: std::os::unix::net::UnixStream, bridge: Bridge) -> (Carrier, Layer) {
    (
        Carrier::Local(local),
        Layer {
            bridge: Some(bridge),
            sealed: None,
        },
    )
}
