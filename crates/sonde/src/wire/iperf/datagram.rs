//! The UDP datagram header and the receiver's statistics (loss,
//! out-of-order, RFC 3550 jitter) exactly as iperf3 defines them.

use super::ProtocolError;

/// The header at the start of every datagram (big-endian): seconds and
/// microseconds of the sender's monotonic clock, then the sequence number
/// (u32, or u64 with `udp_counters_64bit`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpHeader {
    /// Sender clock, seconds (truncated to 32 bits).
    pub sec: u32,
    /// Sender clock, microseconds.
    pub usec: u32,
    /// Sequence number, from 1.
    pub seq: u64,
}

impl UdpHeader {
    /// Header length: 12 bytes, or 16 with 64-bit counters.
    pub fn len(counters_64bit: bool) -> usize {
        if counters_64bit { 16 } else { 12 }
    }

    /// Writes the header at the start of `buf` (which must hold it).
    ///
    /// # Panics
    /// Never for a `buf` of at least 16 bytes, which every caller sends
    /// (UDP lengths start at 16).
    pub fn write(&self, buf: &mut [u8], counters_64bit: bool) {
        buf[0..4].copy_from_slice(&self.sec.to_be_bytes());
        buf[4..8].copy_from_slice(&self.usec.to_be_bytes());
        if counters_64bit {
            buf[8..16].copy_from_slice(&self.seq.to_be_bytes());
        } else {
            buf[8..12].copy_from_slice(&(self.seq as u32).to_be_bytes());
        }
    }

    /// Reads a header.
    ///
    /// # Errors
    /// [`ProtocolError::ShortDatagram`] when `buf` is shorter than it.
    pub fn read(buf: &[u8], counters_64bit: bool) -> Result<Self, ProtocolError> {
        let need = Self::len(counters_64bit);
        let head = buf
            .get(..need)
            .ok_or(ProtocolError::ShortDatagram(buf.len()))?;
        let word =
            |at: usize| u32::from_be_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]);
        let seq = if counters_64bit {
            (u64::from(word(8)) << 32) | u64::from(word(12))
        } else {
            u64::from(word(8))
        };
        Ok(Self {
            sec: word(0),
            usec: word(4),
            seq,
        })
    }

    /// The timestamp in seconds.
    pub fn seconds(&self) -> f64 {
        f64::from(self.sec) + f64::from(self.usec) / 1e6
    }
}

/// A UDP receiver's running counts, by iperf3's rules: loss is a gap in
/// sequence numbers, a late or repeated one is out of order and "un-loses"
/// one, the reported packet count is the highest sequence seen, and jitter
/// is the RFC 3550 running mean of transit-time differences.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UdpRecvStats {
    /// Highest sequence number seen.
    pub max_seq: u64,
    /// Packets counted as lost.
    pub lost: u64,
    /// Packets that arrived late or twice.
    pub out_of_order: u64,
    /// Datagrams received.
    pub received: u64,
    /// Bytes received.
    pub bytes: u64,
    /// Jitter in seconds.
    pub jitter: f64,
    prev_transit: Option<f64>,
}

impl UdpRecvStats {
    /// Accounts one datagram of `len` bytes with `header`, which arrived at
    /// `arrival` seconds on the receiver's clock.
    pub fn record(&mut self, header: &UdpHeader, len: usize, arrival: f64) {
        self.received += 1;
        self.bytes += len as u64;
        if header.seq > self.max_seq {
            self.lost += header.seq - 1 - self.max_seq;
            self.max_seq = header.seq;
        } else {
            self.out_of_order += 1;
            self.lost = self.lost.saturating_sub(1);
        }
        let transit = (arrival - header.seconds()).abs();
        let prev = self.prev_transit.unwrap_or(transit);
        self.jitter += ((transit - prev).abs() - self.jitter) / 16.0;
        self.prev_transit = Some(transit);
    }

    /// Starts over after the omit period, keeping nothing.
    pub fn reset(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(seq: u64, secs: f64) -> UdpHeader {
        UdpHeader {
            sec: secs as u32,
            usec: ((secs.fract()) * 1e6).round() as u32,
            seq,
        }
    }

    #[test]
    fn header_golden_bytes_both_widths() {
        let h = UdpHeader {
            sec: 1,
            usec: 2,
            seq: 0x0102_0304,
        };
        let mut buf = [0u8; 16];
        h.write(&mut buf, false);
        assert_eq!(&buf[..12], &[0, 0, 0, 1, 0, 0, 0, 2, 1, 2, 3, 4]);
        assert_eq!(UdpHeader::read(&buf, false), Ok(h));
        let big = UdpHeader {
            seq: 0x1_0000_0002,
            ..h
        };
        big.write(&mut buf, true);
        assert_eq!(&buf[8..16], &[0, 0, 0, 1, 0, 0, 0, 2]);
        assert_eq!(UdpHeader::read(&buf, true), Ok(big));
        for short in 0..12 {
            assert_eq!(
                UdpHeader::read(&buf[..short], false),
                Err(ProtocolError::ShortDatagram(short))
            );
        }
        assert!(UdpHeader::read(&buf[..15], true).is_err());
    }

    fn feed(seqs: &[u64]) -> UdpRecvStats {
        let mut stats = UdpRecvStats::default();
        for &seq in seqs {
            stats.record(&header(seq, 0.0), 100, 0.0);
        }
        stats
    }

    #[test]
    fn in_order_has_no_loss() {
        let s = feed(&[1, 2, 3, 4]);
        assert_eq!(
            (s.max_seq, s.lost, s.out_of_order, s.received),
            (4, 0, 0, 4)
        );
    }

    #[test]
    fn gaps_are_lost_and_tail_loss_is_not_seen() {
        let s = feed(&[1, 2, 5, 6, 10]);
        assert_eq!((s.max_seq, s.lost, s.out_of_order), (10, 5, 0));
    }

    #[test]
    fn a_late_packet_is_out_of_order_and_unloses_one() {
        let s = feed(&[1, 3, 2, 4]);
        assert_eq!((s.max_seq, s.lost, s.out_of_order), (4, 0, 1));
    }

    #[test]
    fn duplicates_count_as_out_of_order_like_iperf3() {
        let s = feed(&[1, 2, 2, 3]);
        assert_eq!(
            (s.max_seq, s.lost, s.out_of_order, s.received),
            (3, 0, 1, 4)
        );
        let s = feed(&[1, 4, 4]);
        assert_eq!((s.lost, s.out_of_order), (1, 1), "a duplicate un-loses one");
    }

    #[test]
    fn thirty_two_bit_counter_wrap_is_read_from_64_bit_headers() {
        let mut stats = UdpRecvStats::default();
        for seq in [u64::from(u32::MAX) - 1, u64::from(u32::MAX), 1 << 32] {
            let mut buf = [0u8; 16];
            header(seq, 0.0).write(&mut buf, true);
            let h = UdpHeader::read(&buf, true).expect("header");
            stats.record(&h, 16, 0.0);
        }
        assert_eq!(stats.max_seq, 1 << 32);
        assert_eq!(stats.lost, u64::from(u32::MAX) - 2);
    }

    #[test]
    fn jitter_follows_rfc3550() {
        let mut s = UdpRecvStats::default();
        // Transit times 1 ms, 3 ms, 2 ms.
        s.record(&header(1, 10.0), 16, 10.001);
        assert_eq!(s.jitter, 0.0);
        s.record(&header(2, 10.01), 16, 10.013);
        let j1 = 0.002 / 16.0;
        assert!((s.jitter - j1).abs() < 1e-9, "{}", s.jitter);
        s.record(&header(3, 10.02), 16, 10.022);
        let j2 = j1 + (0.001 - j1) / 16.0;
        assert!((s.jitter - j2).abs() < 1e-9, "{}", s.jitter);
    }
}
