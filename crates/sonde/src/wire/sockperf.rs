//! sockperf's ping-pong message format (sockperf 3.7): a 14-byte
//! big-endian header, `u64 seq | u16 flags | u32 total length` (header
//! included), then the payload. A server answers only a message with the
//! CLIENT and PONG_REQUEST bits set and WARMUP clear, by sending it back
//! byte for byte with CLIENT cleared; the client ignores replies that still
//! carry CLIENT, which is why a plain echo does not satisfy it. Pure.

/// Header length.
pub const HEADER_LEN: usize = 14;
/// Set by the client on its messages.
pub const CLIENT: u16 = 0x1;
/// The client wants an answer.
pub const PONG_REQUEST: u16 = 0x2;
/// A warm-up message: not answered.
pub const WARMUP: u16 = 0x4;
/// sockperf's default port.
pub const DEFAULT_PORT: u16 = 11111;

/// A message header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Sequence number.
    pub seq: u64,
    /// Flag bits.
    pub flags: u16,
    /// Length of the whole message, header included.
    pub len: u32,
}

impl Header {
    /// Reads a header; `None` when `buf` is shorter than one.
    pub fn read(buf: &[u8]) -> Option<Self> {
        let b = buf.get(..HEADER_LEN)?;
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&b[..8]);
        Some(Self {
            seq: u64::from_be_bytes(seq),
            flags: u16::from_be_bytes([b[8], b[9]]),
            len: u32::from_be_bytes([b[10], b[11], b[12], b[13]]),
        })
    }

    /// Writes the header at the start of `buf` (at least 14 bytes).
    pub fn write(&self, buf: &mut [u8]) {
        if let Some(b) = buf.get_mut(..HEADER_LEN) {
            b[..8].copy_from_slice(&self.seq.to_be_bytes());
            b[8..10].copy_from_slice(&self.flags.to_be_bytes());
            b[10..14].copy_from_slice(&self.len.to_be_bytes());
        }
    }
}

/// Turns a request into its reply in place; false when sockperf expects
/// no answer (not from a client, no pong request, warm-up, too short).
pub fn reflect(message: &mut [u8]) -> bool {
    let Some(mut h) = Header::read(message) else {
        return false;
    };
    let wanted = h.flags & CLIENT != 0 && h.flags & PONG_REQUEST != 0 && h.flags & WARMUP == 0;
    if wanted {
        h.flags &= !CLIENT;
        h.write(message);
    }
    wanted
}

/// The largest message a stream server takes (sockperf's own limit is
/// 64 KiB unless told otherwise).
pub const MAX_MESSAGE: usize = 16 << 20;

/// Answers every whole message at the front of a TCP byte stream,
/// appending the replies to `out`. Returns the bytes used (the rest is the
/// start of a message still arriving), or `None` when a header announces a
/// length below the header's or over [`MAX_MESSAGE`].
pub fn answer_stream(input: &mut [u8], out: &mut Vec<u8>) -> Option<usize> {
    let mut used = 0;
    while let Some(rest) = input.get_mut(used..) {
        let Some(header) = Header::read(rest) else {
            break;
        };
        let len = header.len as usize;
        if !(HEADER_LEN..=MAX_MESSAGE).contains(&len) {
            return None;
        }
        let Some(message) = rest.get_mut(..len) else {
            break;
        };
        if reflect(message) {
            out.extend_from_slice(message);
        }
        used += len;
    }
    Some(used)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_header_and_reflection() {
        let mut msg = vec![0u8; 20];
        Header {
            seq: 0x0102,
            flags: CLIENT | PONG_REQUEST,
            len: 20,
        }
        .write(&mut msg);
        assert_eq!(&msg[..14], &[0, 0, 0, 0, 0, 0, 1, 2, 0, 3, 0, 0, 0, 20]);
        assert!(reflect(&mut msg));
        assert_eq!(
            Header::read(&msg),
            Some(Header {
                seq: 0x0102,
                flags: PONG_REQUEST,
                len: 20
            })
        );
        assert!(!reflect(&mut msg), "a reply is not answered again");
        let mut warm = vec![0u8; 14];
        Header {
            seq: 1,
            flags: CLIENT | PONG_REQUEST | WARMUP,
            len: 14,
        }
        .write(&mut warm);
        assert!(!reflect(&mut warm));
        assert!(!reflect(&mut [0u8; 13]));
    }

    fn message(seq: u64, flags: u16, len: usize) -> Vec<u8> {
        let mut msg = vec![7u8; len];
        Header {
            seq,
            flags,
            len: len as u32,
        }
        .write(&mut msg);
        msg
    }

    #[test]
    fn a_stream_is_answered_message_by_message() {
        let mut input = message(1, CLIENT | PONG_REQUEST, 20);
        input.extend(message(2, CLIENT | PONG_REQUEST | WARMUP, 14));
        input.extend(message(3, CLIENT | PONG_REQUEST, 30));
        let whole = input.len();
        input.extend(&message(4, CLIENT | PONG_REQUEST, 40)[..25]);
        let mut out = Vec::new();
        assert_eq!(answer_stream(&mut input, &mut out), Some(whole));
        assert_eq!(out.len(), 50, "the two pong requests, not the warm-up");
        assert_eq!(
            Header::read(&out).map(|h| (h.seq, h.flags)),
            Some((1, PONG_REQUEST))
        );
        assert_eq!(Header::read(&out[20..]).map(|h| h.seq), Some(3));
        let mut short = message(5, CLIENT | PONG_REQUEST, 20);
        assert_eq!(answer_stream(&mut short[..13], &mut out), Some(0));
        let mut bad = message(6, CLIENT, 20);
        Header {
            seq: 6,
            flags: CLIENT,
            len: 3,
        }
        .write(&mut bad);
        assert_eq!(answer_stream(&mut bad, &mut out), None);
    }
}
