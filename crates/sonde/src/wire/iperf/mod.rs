//! iperf3's wire protocol, pure: constants, the state byte, the cookie,
//! the parameter and results JSON, framing, the UDP datagram header and
//! UDP receive statistics as iperf3 defines them. No sockets and no clock
//! here; `perf` does the I/O.
//!
//! Written from `shared/docs/iperf3-protocol.md` as checked against
//! iperf3 3.12 in `iperf3-verified.md`.

pub mod auth;
pub mod codec;
pub mod cookie;
pub mod datagram;
pub mod params;
pub mod results;
pub mod state;

/// iperf3's default port, for the control connection and every stream.
pub const DEFAULT_PORT: u16 = 5201;
/// The cookie on the wire: 36 characters and a NUL.
pub const COOKIE_LEN: usize = 37;
/// The largest parameters JSON accepted (iperf3 3.18+'s limit).
pub const MAX_PARAMS_LEN: u32 = 8192;
/// The largest results JSON accepted: iperf3 has no limit (server output
/// can be large), but a peer must not make us allocate gigabytes.
pub const MAX_RESULTS_LEN: u32 = 16 << 20;
/// The UDP hello a client sends on each new stream ("9876").
pub const UDP_CONNECT_MSG: [u8; 4] = *b"9876";
/// The server's reply to the UDP hello ("6789").
pub const UDP_CONNECT_REPLY: [u8; 4] = *b"6789";
/// The reply of servers older than 3.12 (987654321, little-endian).
pub const UDP_CONNECT_REPLY_LEGACY: [u8; 4] = [0xB1, 0x68, 0xDE, 0x3A];
/// The TCP block size when none is given.
pub const DEFAULT_TCP_LEN: usize = 128 * 1024;
/// The smallest and largest UDP datagram iperf3 allows.
pub const UDP_LEN_RANGE: std::ops::RangeInclusive<usize> = 16..=65_507;
/// The UDP rate when none is given: 1 Mbit/s (1024²) per stream.
pub const DEFAULT_UDP_RATE: u64 = 1024 * 1024;

/// Stream ids in creation order: 1, 3, 4, 5, … (iperf3 skips 2).
pub fn stream_id(index: usize) -> u32 {
    match index {
        0 => 1,
        k => u32::try_from(k + 2).unwrap_or(u32::MAX),
    }
}

/// A malformed or unexpected message from the peer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A state byte iperf3 does not define.
    #[error("unknown state byte {0}")]
    UnknownState(i8),
    /// A JSON length prefix of zero or over the limit.
    #[error("JSON length {len} is out of range (1 to {max})")]
    JsonLength {
        /// The length announced.
        len: u32,
        /// The limit.
        max: u32,
    },
    /// JSON that does not parse or lacks what is required.
    #[error("malformed JSON: {0}")]
    Json(String),
    /// A parameter out of range.
    #[error("bad parameter: {0}")]
    Param(String),
    /// A datagram shorter than the header.
    #[error("datagram of {0} bytes is shorter than the iperf3 header")]
    ShortDatagram(usize),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_skip_two() {
        let ids: Vec<u32> = (0..4).map(stream_id).collect();
        assert_eq!(ids, [1, 3, 4, 5]);
    }
}
