//! Pure byte transforms applied to traffic: LF to CRLF line endings
//! (`--crlf`), the hex dump of traffic (`--hex`), and refusing a telnet
//! server's option negotiation (`-t`). No I/O here.

use std::fmt::Write as _;

/// Turns each bare `\n` into `\r\n`, remembering across calls whether the
/// previous chunk ended in `\r`, so a split `\r\n` is left alone.
#[derive(Debug, Default)]
pub struct Crlf {
    last_was_cr: bool,
}

impl Crlf {
    /// Appends `input`, with bare line feeds expanded, to `out`.
    pub fn convert(&mut self, input: &[u8], out: &mut Vec<u8>) {
        out.reserve(input.len() + input.len() / 16);
        for &byte in input {
            if byte == b'\n' && !self.last_was_cr {
                out.push(b'\r');
            }
            out.push(byte);
            self.last_was_cr = byte == b'\r';
        }
    }
}

/// Which way traffic went, for the hex dump's first column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Sent to the peer (`>`).
    Sent,
    /// Received from the peer (`<`).
    Received,
}

/// Formats traffic as a hex dump: 16 bytes a line with the offset within
/// its direction, the bytes in hex and the printable ones as text.
#[derive(Debug)]
pub struct HexDump {
    direction: Direction,
    offset: u64,
}

impl HexDump {
    /// A dump of one direction, starting at offset 0.
    pub fn new(direction: Direction) -> Self {
        Self {
            direction,
            offset: 0,
        }
    }

    /// Appends the lines for `data` to `out` and advances the offset.
    pub fn dump(&mut self, data: &[u8], out: &mut String) {
        let mark = match self.direction {
            Direction::Sent => '>',
            Direction::Received => '<',
        };
        for line in data.chunks(16) {
            let _ = write!(out, "{mark} {:08x} ", self.offset);
            for i in 0..16 {
                if i == 8 {
                    out.push(' ');
                }
                match line.get(i) {
                    Some(byte) => {
                        let _ = write!(out, " {byte:02x}");
                    }
                    None => out.push_str("   "),
                }
            }
            out.push_str("  |");
            out.extend(line.iter().map(|&b| {
                if b.is_ascii_graphic() || b == b' ' {
                    char::from(b)
                } else {
                    '.'
                }
            }));
            out.push_str("|\n");
            self.offset += line.len() as u64;
        }
    }
}

const IAC: u8 = 255;
const DONT: u8 = 254;
const DO: u8 = 253;
const WONT: u8 = 252;
const WILL: u8 = 251;
const SB: u8 = 250;
const SE: u8 = 240;

/// Where a telnet stream is between bytes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum TelnetState {
    #[default]
    Data,
    Iac,
    Verb(u8),
    Sub,
    SubIac,
}

/// OpenBSD nc's `-t`: every DO is answered WON'T and every WILL DON'T
/// (RFC 854), and the negotiation is kept out of the output; an escaped
/// 255 is data. State carries across reads, so a command split between
/// two is still seen whole.
#[derive(Debug, Default)]
pub struct Telnet {
    state: TelnetState,
}

impl Telnet {
    /// Splits `input` into the data (appended to `data`) and the answers
    /// to send back (appended to `reply`).
    pub fn feed(&mut self, input: &[u8], data: &mut Vec<u8>, reply: &mut Vec<u8>) {
        use TelnetState::*;
        for &byte in input {
            self.state = match (self.state, byte) {
                (Data, IAC) => Iac,
                (Data, b) => {
                    data.push(b);
                    Data
                }
                (Iac, IAC) => {
                    data.push(IAC);
                    Data
                }
                (Iac, WILL | WONT | DO | DONT) => Verb(byte),
                (Iac, SB) => Sub,
                // NOP, GA and the other bare commands.
                (Iac, _) => Data,
                (Verb(verb), option) => {
                    match verb {
                        DO => reply.extend_from_slice(&[IAC, WONT, option]),
                        WILL => reply.extend_from_slice(&[IAC, DONT, option]),
                        _ => {}
                    }
                    Data
                }
                (Sub, IAC) => SubIac,
                (Sub, _) => Sub,
                (SubIac, SE) => Data,
                (SubIac, _) => Sub,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crlf_expands_bare_line_feeds_only() {
        let mut crlf = Crlf::default();
        let mut out = Vec::new();
        crlf.convert(b"a\nb\r\nc\r", &mut out);
        crlf.convert(b"\nd\n", &mut out);
        assert_eq!(out, b"a\r\nb\r\nc\r\nd\r\n");
    }

    #[test]
    fn hex_dump_lines_carry_offset_hex_and_text() {
        let mut dump = HexDump::new(Direction::Sent);
        let mut out = String::new();
        dump.dump(b"Hello, World!\n", &mut out);
        assert_eq!(
            out,
            "> 00000000  48 65 6c 6c 6f 2c 20 57  6f 72 6c 64 21 0a        |Hello, World!.|\n"
        );
        let mut more = String::new();
        let mut recv = HexDump::new(Direction::Received);
        recv.dump(&[0u8; 17], &mut more);
        let lines: Vec<&str> = more.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[1].starts_with("< 00000010  00 "));
    }

    #[test]
    fn telnet_negotiation_is_refused_and_kept_out_of_the_data() {
        let mut telnet = Telnet::default();
        let (mut data, mut reply) = (Vec::new(), Vec::new());
        // DO ECHO, WILL SUPPRESS-GO-AHEAD, then text with an escaped 255.
        telnet.feed(
            &[IAC, DO, 1, IAC, WILL, 3, b'h', b'i', IAC, IAC],
            &mut data,
            &mut reply,
        );
        assert_eq!(data, [b'h', b'i', IAC]);
        assert_eq!(reply, [IAC, WONT, 1, IAC, DONT, 3]);
        // A command split across reads, and a subnegotiation skipped.
        let (mut data, mut reply) = (Vec::new(), Vec::new());
        telnet.feed(&[b'a', IAC], &mut data, &mut reply);
        telnet.feed(
            &[DO, 24, IAC, SB, 24, 1, IAC, SE, b'b'],
            &mut data,
            &mut reply,
        );
        assert_eq!(data, b"ab");
        assert_eq!(reply, [IAC, WONT, 24]);
        // WON'T and DON'T need no answer.
        let (mut data, mut reply) = (Vec::new(), Vec::new());
        telnet.feed(&[IAC, WONT, 1, IAC, DONT, 1], &mut data, &mut reply);
        assert!(data.is_empty() && reply.is_empty());
    }
}
