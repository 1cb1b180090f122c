//! Turning a test's counters into iperf3's figures: interval deltas, the
//! omit period's baselines, this side's results JSON and the end summary
//! that joins both sides' results by stream id. Pure: samples and times
//! come in as values.

use std::time::Duration;

use crate::wire::iperf::datagram::UdpRecvStats;
use crate::wire::iperf::params::Protocol;
use crate::wire::iperf::results::{Results, StreamResult};

use super::stream::TcpState;

/// The counters of one stream at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sample {
    /// Bytes moved so far.
    pub bytes: u64,
    /// Blocks or datagrams moved so far.
    pub blocks: u64,
    /// UDP receive statistics so far.
    pub udp: UdpRecvStats,
    /// TCP state of a sending TCP stream.
    pub tcp: Option<TcpState>,
}

/// What stays fixed about a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamInfo {
    /// iperf3 stream id.
    pub id: u32,
    /// Descriptor number (iperf3's `socket`).
    pub socket: i32,
    /// This side sends on it.
    pub sender: bool,
}

/// One stream's figures over one interval.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StreamInterval {
    /// Stream id.
    pub id: u32,
    /// Descriptor number.
    pub socket: i32,
    /// This side sends on it.
    pub sender: bool,
    /// Seconds from the start (of the omit period, or of the test).
    pub start: f64,
    /// Seconds from the start.
    pub end: f64,
    /// Bytes in the interval.
    pub bytes: u64,
    /// Within the omit period.
    pub omitted: bool,
    /// UDP: datagrams sent, or sequence numbers advanced.
    pub packets: u64,
    /// UDP receiver: packets lost.
    pub lost: u64,
    /// UDP receiver: late packets.
    pub out_of_order: u64,
    /// UDP receiver: jitter now, ms.
    pub jitter_ms: f64,
    /// TCP sender: retransmits in the interval and state now.
    pub tcp: Option<(u64, TcpState)>,
}

/// A TCP sender's state over a whole test, from its samples: what iperf3
/// puts beside a sending stream's totals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SenderTcp {
    /// Largest congestion window, bytes.
    pub max_snd_cwnd: u64,
    /// Largest peer window, bytes.
    pub max_snd_wnd: u64,
    /// Smallest smoothed RTT, µs.
    pub min_rtt: u64,
    /// Largest smoothed RTT, µs.
    pub max_rtt: u64,
    /// Mean smoothed RTT, µs.
    pub mean_rtt: u64,
}

/// The share of `packets` that were lost, in percent (0 for none sent),
/// as iperf3 reports it.
pub fn lost_percent(lost: u64, packets: u64) -> f64 {
    if packets == 0 {
        0.0
    } else {
        100.0 * lost as f64 / packets as f64
    }
}

impl StreamInterval {
    /// Bits per second over the interval.
    pub fn bits_per_second(&self) -> f64 {
        rate(self.bytes, self.end - self.start)
    }
}

/// Bits per second for `bytes` over `secs`.
pub fn rate(bytes: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        bytes as f64 * 8.0 / secs
    } else {
        0.0
    }
}

/// Keeps the previous sample and the omit baselines of every stream.
#[derive(Debug)]
pub struct Meter {
    protocol: Protocol,
    streams: Vec<StreamInfo>,
    omit: Duration,
    omitting: bool,
    /// Time of the last interval's end, from the (omit or test) start.
    last_at: Duration,
    /// When the current period began (0, or the end of the omit period).
    period_start: Duration,
    last: Vec<Sample>,
    baseline: Vec<Sample>,
    /// Per stream: largest cwnd, and RTT min/max/sum/count.
    rtt: Vec<RttTrack>,
}

#[derive(Clone, Debug, Default)]
struct RttTrack {
    max_cwnd: u64,
    max_wnd: u64,
    min: u64,
    max: u64,
    sum: u64,
    count: u64,
}

impl Meter {
    /// A meter for `streams`, omitting the first `omit`.
    pub fn new(protocol: Protocol, streams: Vec<StreamInfo>, omit: Duration) -> Self {
        let n = streams.len();
        Self {
            protocol,
            streams,
            omit,
            omitting: !omit.is_zero(),
            last_at: Duration::ZERO,
            period_start: Duration::ZERO,
            last: vec![Sample::default(); n],
            baseline: vec![Sample::default(); n],
            rtt: vec![RttTrack::default(); n],
        }
    }

    /// The streams measured.
    pub fn streams(&self) -> &[StreamInfo] {
        &self.streams
    }

    /// Whether the omit period is still running at `now` (since TEST_START).
    pub fn omitting(&self) -> bool {
        self.omitting
    }

    /// Records the interval that ends at `now` (since TEST_START) with the
    /// streams' current `samples`; ends the omit period when it is due.
    pub fn interval(&mut self, now: Duration, samples: &[Sample]) -> Vec<StreamInterval> {
        let omitted = self.omitting;
        let start = self.last_at.saturating_sub(self.period_start).as_secs_f64();
        let end = now.saturating_sub(self.period_start).as_secs_f64();
        let mut out = Vec::with_capacity(samples.len());
        for (i, (info, now_s)) in self.streams.iter().zip(samples).enumerate() {
            let prev = &self.last[i];
            let mut iv = StreamInterval {
                id: info.id,
                socket: info.socket,
                sender: info.sender,
                start,
                end,
                bytes: now_s.bytes.saturating_sub(prev.bytes),
                omitted,
                ..StreamInterval::default()
            };
            if self.protocol == Protocol::Udp {
                if info.sender {
                    iv.packets = now_s.blocks.saturating_sub(prev.blocks);
                } else {
                    iv.packets = now_s.udp.max_seq.saturating_sub(prev.udp.max_seq);
                    iv.lost = now_s.udp.lost.saturating_sub(prev.udp.lost);
                    iv.out_of_order = now_s.udp.out_of_order.saturating_sub(prev.udp.out_of_order);
                    iv.jitter_ms = now_s.udp.jitter * 1000.0;
                }
            }
            if let Some(state) = now_s.tcp {
                let before = prev.tcp.map_or(0, |t| t.total_retrans);
                iv.tcp = Some((state.total_retrans.saturating_sub(before), state));
                let track = &mut self.rtt[i];
                track.max_cwnd = track.max_cwnd.max(state.snd_cwnd);
                track.max_wnd = track.max_wnd.max(state.snd_wnd);
                track.min = if track.count == 0 {
                    state.rtt
                } else {
                    track.min.min(state.rtt)
                };
                track.max = track.max.max(state.rtt);
                track.sum += state.rtt;
                track.count += 1;
            }
            out.push(iv);
        }
        self.last = samples.to_vec();
        self.last_at = now;
        if self.omitting && now >= self.omit {
            self.omitting = false;
            self.baseline = samples.to_vec();
            self.period_start = now;
        }
        out
    }

    /// This side's results for the exchange, at `now` with `samples`.
    pub fn results(&self, now: Duration, samples: &[Sample]) -> Vec<StreamResult> {
        let secs = now.saturating_sub(self.period_start).as_secs_f64();
        self.streams
            .iter()
            .zip(samples)
            .zip(&self.baseline)
            .map(|((info, s), base)| {
                let mut r = StreamResult {
                    id: info.id,
                    bytes: s.bytes.saturating_sub(base.bytes),
                    retransmits: -1,
                    end_time: secs,
                    ..StreamResult::default()
                };
                if let (true, Some(tcp)) = (info.sender, s.tcp) {
                    r.retransmits = tcp
                        .total_retrans
                        .saturating_sub(base.tcp.map_or(0, |t| t.total_retrans))
                        as i64;
                }
                if self.protocol == Protocol::Udp {
                    if info.sender {
                        r.packets = s.blocks as i64;
                        r.omitted_packets = base.blocks as i64;
                    } else {
                        r.jitter = s.udp.jitter;
                        r.errors = s.udp.lost as i64;
                        r.omitted_errors = base.udp.lost as i64;
                        r.packets = s.udp.max_seq as i64;
                        r.omitted_packets = base.udp.max_seq as i64;
                    }
                }
                r
            })
            .collect()
    }

    /// RTT figures of a TCP sending stream: (max cwnd, min, max, mean RTT).
    pub fn rtt_summary(&self, index: usize) -> Option<SenderTcp> {
        let t = self.rtt.get(index)?;
        (t.count > 0).then(|| SenderTcp {
            max_snd_cwnd: t.max_cwnd,
            max_snd_wnd: t.max_wnd,
            min_rtt: t.min,
            max_rtt: t.max,
            mean_rtt: t.sum / t.count,
        })
    }

    /// Out-of-order packets of a UDP receiving stream since the omit period.
    pub fn out_of_order(&self, index: usize, sample: &Sample) -> u64 {
        let base = self.baseline.get(index).map_or(0, |b| b.udp.out_of_order);
        sample.udp.out_of_order.saturating_sub(base)
    }
}

/// One stream's end-of-test view from both sides.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StreamEnd {
    /// Stream id.
    pub id: u32,
    /// Descriptor number on this side.
    pub socket: i32,
    /// This side sent on it.
    pub local_sender: bool,
    /// Bytes the sender sent, and over how long.
    pub sent: (u64, f64),
    /// Bytes the receiver got, and over how long.
    pub received: (u64, f64),
    /// TCP retransmits, when the sender knows them.
    pub retransmits: Option<i64>,
    /// UDP: (jitter ms, lost, packets sent, out of order).
    pub udp: Option<(f64, i64, i64, u64)>,
    /// TCP sender on this side: its window and RTT over the test.
    pub rtt: Option<SenderTcp>,
}

/// Joins this side's and the peer's results by stream id.
pub fn join(
    protocol: Protocol,
    streams: &[StreamInfo],
    local: &[StreamResult],
    remote: &Results,
    ooo: &[u64],
) -> Vec<StreamEnd> {
    streams
        .iter()
        .zip(local)
        .enumerate()
        .map(|(i, (info, mine))| {
            let theirs = remote.streams.iter().find(|r| r.id == info.id);
            let their_time = theirs.map_or(mine.end_time, |t| t.end_time - t.start_time);
            let (snd, rcv) = match (info.sender, theirs) {
                (true, Some(t)) => (mine, t),
                (false, Some(t)) => (t, mine),
                (_, None) => (mine, mine),
            };
            let (snd_time, rcv_time) = if info.sender {
                (mine.end_time, their_time)
            } else {
                (their_time, mine.end_time)
            };
            let retransmits =
                (snd.retransmits >= 0 && protocol == Protocol::Tcp).then_some(snd.retransmits);
            let udp = (protocol == Protocol::Udp).then(|| {
                let packets = snd.packets - snd.omitted_packets;
                (
                    rcv.jitter * 1000.0,
                    rcv.errors - rcv.omitted_errors,
                    packets,
                    ooo.get(i).copied().unwrap_or(0),
                )
            });
            StreamEnd {
                id: info.id,
                socket: info.socket,
                local_sender: info.sender,
                sent: (snd.bytes, snd_time),
                received: (rcv.bytes, rcv_time),
                retransmits,
                udp,
                rtt: None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: u32, sender: bool) -> StreamInfo {
        StreamInfo {
            id,
            socket: 5,
            sender,
        }
    }

    fn sample(bytes: u64) -> Sample {
        Sample {
            bytes,
            ..Sample::default()
        }
    }

    #[test]
    fn intervals_are_deltas_and_omit_resets_the_clock() {
        let mut m = Meter::new(Protocol::Tcp, vec![info(1, true)], Duration::from_secs(1));
        let a = m.interval(Duration::from_secs(1), &[sample(100)]);
        assert!(a[0].omitted);
        assert_eq!((a[0].start, a[0].end, a[0].bytes), (0.0, 1.0, 100));
        let b = m.interval(Duration::from_secs(2), &[sample(300)]);
        assert!(!b[0].omitted);
        assert_eq!((b[0].start, b[0].end, b[0].bytes), (0.0, 1.0, 200));
        assert_eq!(b[0].bits_per_second(), 1600.0);
        let r = m.results(Duration::from_secs(3), &[sample(600)]);
        assert_eq!(r[0].bytes, 500, "bytes after the omit period");
        assert!((r[0].end_time - 2.0).abs() < 1e-9);
    }

    #[test]
    fn join_takes_each_view_from_the_right_side() {
        let streams = [info(1, true), info(3, false)];
        let local = [
            StreamResult {
                id: 1,
                bytes: 1000,
                retransmits: 2,
                end_time: 10.0,
                ..Default::default()
            },
            StreamResult {
                id: 3,
                bytes: 500,
                retransmits: -1,
                end_time: 10.0,
                ..Default::default()
            },
        ];
        let remote = Results {
            streams: vec![
                StreamResult {
                    id: 3,
                    bytes: 600,
                    retransmits: 4,
                    end_time: 10.5,
                    ..Default::default()
                },
                StreamResult {
                    id: 1,
                    bytes: 990,
                    retransmits: -1,
                    end_time: 10.1,
                    ..Default::default()
                },
            ],
            ..Results::default()
        };
        let ends = join(Protocol::Tcp, &streams, &local, &remote, &[0, 0]);
        assert_eq!(ends[0].sent, (1000, 10.0));
        assert_eq!(ends[0].received, (990, 10.1));
        assert_eq!(ends[0].retransmits, Some(2));
        assert_eq!(ends[1].sent, (600, 10.5));
        assert_eq!(ends[1].received, (500, 10.0));
        assert_eq!(ends[1].retransmits, Some(4));
    }
}
