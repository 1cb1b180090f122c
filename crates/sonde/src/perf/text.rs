//! The text a test prints, in iperf3 3.12's layout, character for
//! character where iperf3 fixes it: the connected lines, the interval
//! header and lines (with `[TX-C]`/`[RX-C]` role tags in `--bidir`,
//! `[SUM]` rows and separators with `-P`), the summary (sender and
//! receiver rows, or a server's own side), `-F`'s file line, and `-V`'s
//! blocks. Only formats; the binary prints.

use std::fmt::Write as _;
use std::net::SocketAddr;

use super::ConnectedStream;
use super::diskfile::DiskFile;
use super::measure::{StreamEnd, StreamInterval, lost_percent, rate};
use crate::units::{Format, bitrate, bytes};
use crate::wire::iperf::params::{Params, Protocol};

/// iperf3's line between interval groups and before the summary.
pub const SEPARATOR: &str = "- - - - - - - - - - - - - - - - - - - - - - - - -\n";

/// An address as iperf3 shows it: an IPv4 peer of a dual-stack socket as
/// plain IPv4.
pub fn host(addr: SocketAddr) -> String {
    addr.ip().to_canonical().to_string()
}

/// "Connecting to host …", and iperf3's reverse-mode line.
pub fn connecting(host: &str, port: u16, reverse: bool) -> String {
    let mut out = format!("Connecting to host {host}, port {port}\n");
    if reverse {
        let _ = writeln!(out, "Reverse mode, remote host {host} is sending");
    }
    out
}

/// One "local … port … connected to … port …" line per stream.
pub fn connected_lines(streams: &[ConnectedStream]) -> String {
    let mut out = String::new();
    for s in streams {
        let part = |a: Option<SocketAddr>| a.map_or(("?".to_string(), 0), |a| (host(a), a.port()));
        let ((lh, lp), (rh, rp)) = (part(s.local), part(s.remote));
        let _ = writeln!(
            out,
            "[{:3}] local {lh} port {lp} connected to {rh} port {rp}",
            s.socket
        );
    }
    out
}

/// A number as C's `%.2g` writes it (iperf3's loss percentage): two
/// significant digits, no trailing zeros, exponent form from 100 up.
pub fn g2(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return "0".into();
    }
    let sci = format!("{x:.1e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..2).contains(&exp) {
        let m = mantissa.trim_end_matches('0').trim_end_matches('.');
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{m}e{sign}{:02}", exp.abs());
    }
    let decimals = usize::try_from(1 - exp).unwrap_or(0);
    let fixed = format!("{x:.decimals$}");
    if fixed.contains('.') {
        fixed
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    } else {
        fixed
    }
}

/// "lost/total (pct%)" as iperf3 writes it.
fn loss(lost: i64, total: i64) -> String {
    let pct = lost_percent(lost.max(0) as u64, total.max(0) as u64);
    format!("{lost}/{total} ({}%)", g2(pct))
}

/// Which summary rows a side prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// A client: each stream's sender and receiver rows.
    Both,
    /// A server: the row of its own end of each stream.
    Own,
}

/// The shape of one test's text: what iperf3 decides its lines by.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    /// TCP or UDP.
    pub protocol: Protocol,
    /// `--bidir`: rows carry role tags.
    pub bidir: bool,
    /// Streams per direction: `[SUM]` rows and separators past one.
    pub parallel: u32,
    /// `-f`.
    pub format: Format,
    /// The client's tags (`-C`) or the server's (`-S`).
    pub client: bool,
}

impl Layout {
    /// The layout of a test with `params`, on the client or the server.
    pub fn new(params: &Params, format: Format, client: bool) -> Self {
        Self {
            protocol: params.protocol,
            bidir: params.bidirectional,
            parallel: params.parallel,
            format,
            client,
        }
    }

    fn tag(&self, sender: bool) -> &'static str {
        match (self.bidir, sender, self.client) {
            (false, ..) => "",
            (true, true, true) => "[TX-C]",
            (true, false, true) => "[RX-C]",
            (true, true, false) => "[TX-S]",
            (true, false, false) => "[RX-S]",
        }
    }

    fn id(&self) -> &'static str {
        if self.bidir { "[ ID][Role]" } else { "[ ID]" }
    }

    /// The interval header: a sending side shows TCP's retransmits and
    /// window, or UDP's datagram count.
    pub fn interval_header(&self, sends: bool) -> String {
        let columns = match (self.protocol, self.bidir || sends) {
            (Protocol::Tcp, true) => "Transfer     Bitrate         Retr  Cwnd",
            (Protocol::Tcp, false) => "Transfer     Bitrate",
            (Protocol::Udp, _) if self.bidir || !sends => {
                "Transfer     Bitrate         Jitter    Lost/Total Datagrams"
            }
            (Protocol::Udp, _) => "Transfer     Bitrate         Total Datagrams",
        };
        format!("{} Interval           {columns}\n", self.id())
    }

    fn head(&self, label: &str, sender: bool, start: f64, end: f64, b: u64, secs: f64) -> String {
        format!(
            "[{label:>3}]{} {start:6.2}-{end:<6.2} sec  {}  {}",
            self.tag(sender),
            bytes(b, self.format),
            bitrate(rate(b, secs), self.format)
        )
    }

    fn interval_row(&self, label: &str, iv: &StreamInterval, sum: bool) -> String {
        let mut line = self.head(
            label,
            iv.sender,
            iv.start,
            iv.end,
            iv.bytes,
            iv.end - iv.start,
        );
        let omitted = if iv.omitted { "(omitted)" } else { "" };
        match (self.protocol, iv.sender, iv.tcp) {
            (Protocol::Tcp, true, Some((retr, _))) if sum => {
                let _ = write!(line, "  {retr:3}             {omitted}");
            }
            (Protocol::Tcp, true, Some((retr, state))) => {
                let cwnd = bytes(state.snd_cwnd, Format::Adaptive);
                let _ = write!(line, "  {retr:3}   {cwnd}       {omitted}");
            }
            (Protocol::Tcp, ..) => line.push_str(&format!("                  {omitted}")),
            (Protocol::Udp, true, _) => {
                let gap = if self.bidir { "            " } else { "  " };
                let _ = write!(line, "{gap}{}  {omitted}", iv.packets);
            }
            (Protocol::Udp, false, _) => {
                let lost = loss(iv.lost as i64, iv.packets as i64);
                let _ = write!(line, "  {:5.3} ms  {lost}  {omitted}", iv.jitter_ms);
            }
        }
        line.push('\n');
        line
    }

    /// One interval's rows: each stream and, with several streams, a
    /// `[SUM]` per direction (senders first), preceded by a separator
    /// unless it is the first interval.
    pub fn interval(&self, interval: &[StreamInterval], first: bool) -> String {
        let mut out = String::new();
        if self.parallel > 1 && !first {
            out.push_str(SEPARATOR);
        }
        // Directions in stream order: a client's senders come first, a
        // server's receivers.
        let first = interval.first().is_none_or(|s| s.sender);
        for sender in [first, !first] {
            let part: Vec<&StreamInterval> =
                interval.iter().filter(|s| s.sender == sender).collect();
            for iv in &part {
                out.push_str(&self.interval_row(&iv.socket.to_string(), iv, false));
            }
            if let (true, Some(head)) = (part.len() > 1, part.first()) {
                let n = part.len() as f64;
                let retr = part.iter().filter_map(|s| s.tcp.map(|t| t.0)).sum::<u64>();
                let sum = StreamInterval {
                    bytes: part.iter().map(|s| s.bytes).sum(),
                    packets: part.iter().map(|s| s.packets).sum(),
                    lost: part.iter().map(|s| s.lost).sum(),
                    jitter_ms: part.iter().map(|s| s.jitter_ms).sum::<f64>() / n,
                    tcp: head.tcp.map(|(_, state)| (retr, state)),
                    ..(*head).clone()
                };
                out.push_str(&self.interval_row("SUM", &sum, true));
            }
        }
        out
    }

    fn summary_row(&self, label: &str, e: &StreamEnd, sender: bool) -> String {
        let (b, secs) = if sender { e.sent } else { e.received };
        let mut line = self.head(label, e.local_sender, 0.0, secs, b, secs);
        let role = if sender { "sender" } else { "receiver" };
        match (e.udp, e.retransmits) {
            (Some((_, _, packets, _)), _) if sender => {
                let _ = write!(line, "  {:5.3} ms  {}  {role}", 0.0, loss(0, packets));
            }
            (Some((jitter, lost, packets, _)), _) => {
                let _ = write!(line, "  {jitter:5.3} ms  {}  {role}", loss(lost, packets));
            }
            (None, Some(r)) if sender => {
                let _ = write!(line, "  {r:3}             {role}");
            }
            (None, _) => {
                let _ = write!(line, "                  {role}");
            }
        }
        line.push('\n');
        line
    }

    fn file_line(e: &StreamEnd, file: &DiskFile) -> String {
        let moved = if e.local_sender {
            e.sent.0
        } else {
            e.received.0
        };
        let unit = |n: u64| {
            let text = bytes(n, Format::Adaptive);
            text.strip_suffix('s').map(str::to_string).unwrap_or(text)
        };
        format!(
            "        Sent {} / {} ({}%) of {}\n",
            unit(moved),
            unit(file.size),
            file.percent(moved),
            file.name
        )
    }

    fn rows(&self, label: &str, e: &StreamEnd, side: Side, file: Option<&DiskFile>) -> String {
        let mut out = String::new();
        if side == Side::Both || e.local_sender {
            out.push_str(&self.summary_row(label, e, true));
            if let Some(file) = file.filter(|_| label != "SUM") {
                out.push_str(&Self::file_line(e, file));
            }
        }
        if side == Side::Both || !e.local_sender {
            out.push_str(&self.summary_row(label, e, false));
        }
        out
    }

    /// The summary: a separator, the header and the rows, each direction's
    /// streams and then their `[SUM]`.
    pub fn summary(&self, ends: &[StreamEnd], side: Side, file: Option<&DiskFile>) -> String {
        let mut out = String::from(SEPARATOR);
        let shown = |e: &&StreamEnd| side == Side::Both || e.local_sender;
        let retr = ends.iter().filter(shown).any(|e| e.retransmits.is_some());
        let columns = match (self.protocol, retr) {
            (Protocol::Udp, _) => "Transfer     Bitrate         Jitter    Lost/Total Datagrams",
            (Protocol::Tcp, true) => "Transfer     Bitrate         Retr",
            (Protocol::Tcp, false) => "Transfer     Bitrate",
        };
        let _ = writeln!(out, "{} Interval           {columns}", self.id());
        let first = ends.first().is_none_or(|e| e.local_sender);
        for sender in [first, !first] {
            let part: Vec<&StreamEnd> = ends.iter().filter(|e| e.local_sender == sender).collect();
            for e in &part {
                out.push_str(&self.rows(&e.socket.to_string(), e, side, file));
            }
            if part.len() > 1 {
                out.push_str(&self.rows("SUM", &sum(&part), side, None));
            }
        }
        out
    }
}

/// The streams of one direction summed, as iperf3's `[SUM]` rows: UDP
/// jitter averaged, loss and counts added.
fn sum(part: &[&StreamEnd]) -> StreamEnd {
    let mut total = super::report::sum(part);
    let udp: Vec<_> = part.iter().filter_map(|e| e.udp).collect();
    if !udp.is_empty() {
        let n = udp.len() as f64;
        total.udp = Some((
            udp.iter().map(|u| u.0).sum::<f64>() / n,
            udp.iter().map(|u| u.1).sum(),
            udp.iter().map(|u| u.2).sum(),
            udp.iter().map(|u| u.3).sum(),
        ));
    }
    total
}

/// A server's first line of a test.
pub fn accepted(peer: SocketAddr) -> String {
    format!(
        "Accepted connection from {}, port {}\n",
        host(peer),
        peer.port()
    )
}

/// A server's banner, before each test it waits for.
pub fn listening(port: u16, test: usize) -> String {
    let rule = "-----------------------------------------------------------";
    format!("{rule}\nServer listening on {port} (test #{test})\n{rule}\n")
}

/// What iperf3's server prints for one test, whole: the text a client
/// gets with `--get-server-output`.
pub fn server_test(
    peer: SocketAddr,
    streams: &[ConnectedStream],
    intervals: &[Vec<StreamInterval>],
    ends: &[StreamEnd],
    params: &Params,
) -> String {
    let layout = Layout::new(params, Format::Adaptive, false);
    let mut out = accepted(peer);
    out.push_str(&connected_lines(streams));
    for (i, interval) in intervals.iter().enumerate() {
        if i == 0 {
            out.push_str(&layout.interval_header(interval.iter().any(|s| s.sender)));
        }
        out.push_str(&layout.interval(interval, i == 0));
    }
    out.push_str(&layout.summary(ends, Side::Own, None));
    out.push('\n');
    out
}

/// `-V`'s line before the intervals.
pub fn starting_test(params: &Params) -> String {
    let proto = match params.protocol {
        Protocol::Tcp => "TCP",
        Protocol::Udp => "UDP",
    };
    let end = if params.num > 0 {
        format!("{} bytes to send", params.num)
    } else if params.blockcount > 0 {
        format!("{} blocks to send", params.blockcount)
    } else {
        format!("{} second test", params.time)
    };
    format!(
        "Starting Test: protocol: {proto}, {} streams, {} byte blocks, omitting {} seconds, {end}, tos {}\n",
        params.parallel, params.len, params.omit, params.tos
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::perf::stream::TcpState;

    #[test]
    fn g2_is_cs_percent_two_g() {
        for (x, want) in [
            (0.0, "0"),
            (0.5, "0.5"),
            (1.25, "1.2"),
            (12.34, "12"),
            (99.6, "1e+02"),
            (100.0, "1e+02"),
            (0.0123, "0.012"),
            (0.00001234, "1.2e-05"),
            (3.0, "3"),
        ] {
            assert_eq!(g2(x), want, "{x}");
        }
    }

    fn iv(socket: i32, sender: bool) -> StreamInterval {
        StreamInterval {
            id: 1,
            socket,
            sender,
            start: 0.0,
            end: 1.0,
            bytes: 1 << 30,
            omitted: false,
            packets: 39,
            lost: 0,
            out_of_order: 0,
            jitter_ms: 0.016,
            tcp: sender.then_some((
                16,
                TcpState {
                    snd_cwnd: 1 << 20,
                    ..TcpState::default()
                },
            )),
        }
    }

    fn layout(protocol: Protocol, bidir: bool, parallel: u32) -> Layout {
        Layout {
            protocol,
            bidir,
            parallel,
            format: Format::Adaptive,
            client: true,
        }
    }

    #[test]
    fn rows_are_iperf3s_to_the_space() {
        let tcp = layout(Protocol::Tcp, false, 1);
        assert_eq!(
            tcp.interval(&[iv(5, true)], true),
            "[  5]   0.00-1.00   sec  1.00 GBytes  8.59 Gbits/sec   16   1.00 MBytes       \n"
        );
        assert_eq!(
            tcp.interval(&[iv(5, false)], true),
            "[  5]   0.00-1.00   sec  1.00 GBytes  8.59 Gbits/sec                  \n"
        );
        let udp = layout(Protocol::Udp, true, 1);
        let rows = udp.interval(&[iv(5, true), iv(7, false)], true);
        assert_eq!(
            rows,
            "[  5][TX-C]   0.00-1.00   sec  1.00 GBytes  8.59 Gbits/sec            39  \n\
             [  7][RX-C]   0.00-1.00   sec  1.00 GBytes  8.59 Gbits/sec  0.016 ms  0/39 (0%)  \n"
        );
        assert_eq!(
            udp.interval_header(true),
            "[ ID][Role] Interval           Transfer     Bitrate         Jitter    Lost/Total Datagrams\n"
        );
    }

    #[test]
    fn several_streams_add_sums_and_separators() {
        let tcp = layout(Protocol::Tcp, false, 2);
        let rows = tcp.interval(&[iv(5, true), iv(7, true)], false);
        let lines: Vec<&str> = rows.lines().collect();
        assert_eq!(lines[0], SEPARATOR.trim_end());
        assert_eq!(
            lines[3],
            "[SUM]   0.00-1.00   sec  2.00 GBytes  17.2 Gbits/sec   32             "
        );
    }

    #[test]
    fn a_server_shows_its_own_end_and_a_client_both() {
        let e = StreamEnd {
            socket: 5,
            local_sender: false,
            sent: (1 << 30, 1.0),
            received: (1 << 30, 1.0),
            ..StreamEnd::default()
        };
        let tcp = layout(Protocol::Tcp, false, 1);
        let own = tcp.summary(std::slice::from_ref(&e), Side::Own, None);
        assert_eq!(
            own,
            format!(
                "{SEPARATOR}[ ID] Interval           Transfer     Bitrate\n\
                 [  5]   0.00-1.00   sec  1.00 GBytes  8.59 Gbits/sec                  receiver\n"
            )
        );
        let both = tcp.summary(
            &[StreamEnd {
                retransmits: Some(3),
                ..e
            }],
            Side::Both,
            None,
        );
        assert!(
            both.contains("Gbits/sec    3             sender\n"),
            "{both}"
        );
    }
}
