//! How a transfer's connection is protected: plain TCP, or TLS run by a
//! bridge thread (`crate::tls`) between the network and a local socket
//! pair the transfer reads and writes as it would the network.

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::TransferError;
use super::carrier::Carrier;
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
}

/// How a receiver protects its connections.
#[derive(Clone, Debug, Default)]
pub enum ReceiveSecurity {
    /// Plain TCP.
    #[default]
    Plain,
    /// TLS with this certificate (and client checks, if asked).
    Tls(ServerTls),
}

/// The protecting layer under a connection, ended with the transfer.
#[derive(Default)]
pub(crate) struct Layer {
    bridge: Option<Bridge>,
}

impl Layer {
    /// Ends the layer once the transfer has ended its side: waits a little
    /// for the peer to end its side (so that what was written last, a
    /// refusal or the final report, is delivered), then cuts.
    pub(crate) fn close(self) -> Result<(), TransferError> {
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
    }
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
        },
    )
}
