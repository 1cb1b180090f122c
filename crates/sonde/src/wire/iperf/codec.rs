//! Framing on the control connection: JSON behind a big-endian u32
//! length, and the `SERVER_ERROR` frame.

use serde_json::Value;

use super::ProtocolError;
use super::state::TestState;

/// Encodes `value` as compact JSON behind its 4-byte big-endian length.
pub fn encode_json(value: &Value) -> Vec<u8> {
    let body = value.to_string();
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(body.as_bytes());
    out
}

/// Checks a JSON length prefix against `max`.
///
/// # Errors
/// [`ProtocolError::JsonLength`] for 0 or over `max`.
pub fn decode_len(prefix: [u8; 4], max: u32) -> Result<usize, ProtocolError> {
    let len = u32::from_be_bytes(prefix);
    if len == 0 || len > max {
        return Err(ProtocolError::JsonLength { len, max });
    }
    usize::try_from(len).map_err(|_| ProtocolError::JsonLength { len, max })
}

/// Parses a JSON body.
///
/// # Errors
/// [`ProtocolError::Json`] when it is not JSON.
pub fn decode_json(body: &[u8]) -> Result<Value, ProtocolError> {
    serde_json::from_slice(body).map_err(|e| ProtocolError::Json(e.to_string()))
}

/// The `SERVER_ERROR` frame: the state byte, then the iperf3 error code
/// and errno as big-endian i32.
pub fn encode_server_error(code: i32, errno: i32) -> [u8; 9] {
    let mut out = [0u8; 9];
    out[0] = TestState::ServerError.to_wire();
    out[1..5].copy_from_slice(&code.to_be_bytes());
    out[5..9].copy_from_slice(&errno.to_be_bytes());
    out
}

/// iperf3's error codes that sonde sends or explains.
pub mod errors {
    /// Test duration too long.
    pub const IEDURATION: i32 = 5;
    /// Too many streams.
    pub const IENUMSTREAMS: i32 = 6;
    /// Block size too large.
    pub const IEBLOCKSIZE: i32 = 7;
    /// Bad omit.
    pub const IEOMIT: i32 = 12;
    /// Bad UDP block size.
    pub const IEUDPBLOCKSIZE: i32 = 20;
    /// Total rate exceeds the server's limit.
    pub const IETOTALRATE: i32 = 27;
    /// Duration exceeds the server's maximum.
    pub const IEMAXSERVERTESTDURATIONEXCEEDED: i32 = 37;
    /// Cannot receive parameters.
    pub const IERECVPARAMS: i32 = 114;
    /// Test authorization failed.
    pub const IEAUTHTEST: i32 = 142;
    /// Idle timeout receiving data.
    pub const IENOMSG: i32 = 144;
    /// The server's safety timer expired.
    pub const IESERVERTESTDURATIONEXPIRED: i32 = 160;

    /// iperf3's sentence for an error code, as its client prints it.
    pub fn describe(code: i32) -> &'static str {
        match code {
            IEDURATION => "test duration too long",
            IENUMSTREAMS => "number of parallel streams too large",
            IEBLOCKSIZE => "block size too large",
            IEOMIT => "bogus value for --omit",
            IEUDPBLOCKSIZE => "block size invalid",
            IETOTALRATE => "total required bandwidth is larger than server limit",
            IEMAXSERVERTESTDURATIONEXCEEDED => {
                "client's requested duration exceeds the server's maximum permitted limit"
            }
            IERECVPARAMS => "unable to receive parameters from client",
            IENOMSG => "idle timeout for receiving data",
            IESERVERTESTDURATIONEXPIRED => "server test duration expired",
            142 => "test authorization failed",
            _ => "server error",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_length_prefixed_big_endian() {
        let frame = encode_json(&serde_json::json!({"tcp": true}));
        assert_eq!(&frame[..4], &[0, 0, 0, 12]);
        assert_eq!(&frame[4..], br#"{"tcp":true}"#);
    }

    #[test]
    fn lengths_out_of_range_are_refused() {
        assert_eq!(decode_len([0, 0, 0, 12], 8192), Ok(12));
        assert!(decode_len([0, 0, 0, 0], 8192).is_err());
        assert_eq!(
            decode_len([0xFF, 0xFF, 0xFF, 0xFF], 8192),
            Err(ProtocolError::JsonLength {
                len: u32::MAX,
                max: 8192
            })
        );
        assert!(decode_json(b"{nope").is_err());
    }

    #[test]
    fn server_error_frame() {
        assert_eq!(encode_server_error(27, 0), [0xFE, 0, 0, 0, 27, 0, 0, 0, 0]);
    }
}
