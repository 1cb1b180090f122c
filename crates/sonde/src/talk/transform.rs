//! Pure byte transforms applied to traffic: LF to CRLF line endings
//! (`--crlf`) and the hex dump of traffic (`--hex`). No I/O here.

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
}
