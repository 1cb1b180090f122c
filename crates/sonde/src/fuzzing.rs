//! Entry points for the fuzz targets (`fuzz/`) and for the replay of
//! their corpora in `cargo test`: each takes any bytes, hands them to a
//! parser or state machine that reads peer input, and must return without
//! a panic whatever they are. The state machines are driven by a script
//! read from the bytes (one byte picks the event, the next ones its
//! argument), so that a fuzzer reaches every phase instead of stopping at
//! the first check. Not part of the library's API.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::perf::session::client::ClientSession;
use crate::perf::session::server::{ServerLimits, ServerSession};
use crate::wire::iperf::datagram::{UdpHeader, UdpRecvStats};
use crate::wire::iperf::params::Params;
use crate::wire::iperf::results::Results;
use crate::wire::iperf::state::TestState;
use crate::wire::iperf::{MAX_PARAMS_LEN, codec};

/// A fuzz target's entry point.
pub type Target = fn(&[u8]);

/// The fuzz targets by name, for the corpus replay.
pub const TARGETS: &[(&str, Target)] = &[
    ("iperf_json", iperf_json),
    ("iperf_udp", iperf_udp),
    ("sockperf", sockperf),
    ("transfer_wire", transfer_wire),
    ("text", text),
    ("perf_server_session", perf_server_session),
    ("perf_client_session", perf_client_session),
    ("rtt_replies", rtt_replies),
    ("report", report),
    ("talk_inputs", talk_inputs),
    ("smtp_session", smtp_session),
    ("mail_view", mail_view),
];

/// The text the netcat wave reads from users and peers: a relay end as
/// socat spells it, a port list, an HTTP proxy's CONNECT request and its
/// auth file, `perf -U`'s hello and tally, and a telnet server's stream
/// (fed whole, then split in two, since its state carries across reads);
/// and the exporter's: a scrape's target and a modules file.
pub fn talk_inputs(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(target) = crate::exporter::probe::Target::parse(&text, 9) {
        assert!(!target.host.is_empty(), "a target names a host");
        let _ = target.to_string();
    }
    let _ = crate::exporter::config::Config::parse(&text);
    let _ = crate::forward::spec::parse(&text);
    let _ = crate::talk::scan::parse_ports(&text);
    let _ = crate::serve::proxy::parse_connect(data);
    let _ = crate::serve::proxy::parse_users(&text);
    // perf -U's first line and tally: a parsed hello must say it again.
    if let Ok(hello) = crate::perf::unix::hello::Hello::parse(data) {
        let line = hello.line();
        let again = crate::perf::unix::hello::Hello::parse(line.trim_end().as_bytes());
        assert_eq!(again.ok(), Some(hello), "a hello reads back as itself");
    }
    let _ = crate::perf::unix::hello::Tally::parse(data);
    let (mut whole, mut split) = (Vec::new(), Vec::new());
    let mut reply = Vec::new();
    crate::talk::transform::Telnet::default().feed(data, &mut whole, &mut reply);
    let mut telnet = crate::talk::transform::Telnet::default();
    let (a, b) = data.split_at(data.len() / 2);
    telnet.feed(a, &mut split, &mut reply);
    telnet.feed(b, &mut split, &mut reply);
    assert_eq!(whole, split, "telnet data depends on where reads split");
}

/// A result file as `sonde report` reads it (JSON, or JSON lines), drawn
/// alone and beside itself, and written as HTML.
pub fn report(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(doc) = crate::report::parse("fuzz", &text) else {
        return;
    };
    let runs = [
        crate::report::Run {
            label: "a",
            doc: &doc,
        },
        crate::report::Run {
            label: "b",
            doc: &doc,
        },
    ];
    for n in [1, 2] {
        if let Ok(page) = crate::report::build(&runs[..n], crate::report::Facts::default()) {
            let _ = crate::report::html::render(&page, std::slice::from_ref(&doc));
        }
    }
}

/// iperf3's control messages: a length prefix, then parameters or results
/// JSON, parsed and checked as a server and a client do.
pub fn iperf_json(data: &[u8]) {
    if let Some(prefix) = data.get(..4) {
        let prefix = [prefix[0], prefix[1], prefix[2], prefix[3]];
        let _ = codec::decode_len(prefix, MAX_PARAMS_LEN);
    }
    let Ok(json) = codec::decode_json(data) else {
        return;
    };
    if let Ok(params) = Params::from_json(&json) {
        let _ = params.validate();
        let _ = params.total_streams();
        let _ = params.to_json();
    }
    if let Ok(results) = Results::from_json(&json) {
        let _ = results.to_json();
    }
}

/// iperf3's UDP test datagrams, both counter widths, through the
/// receiver's statistics; the first byte also as a state byte.
pub fn iperf_udp(data: &[u8]) {
    if let Some(byte) = data.first() {
        let _ = TestState::from_wire(*byte);
    }
    let mut stats = UdpRecvStats::default();
    for wide in [false, true] {
        for (i, piece) in data.chunks(UdpHeader::len(wide).max(1)).enumerate() {
            if let Ok(header) = UdpHeader::read(piece, wide) {
                stats.record(&header, piece.len(), i as f64 * 0.001);
            }
        }
    }
}

/// sockperf's messages, one datagram and a TCP stream of them.
pub fn sockperf(data: &[u8]) {
    use crate::wire::sockperf;
    let _ = sockperf::Header::read(data);
    let mut datagram = data.to_vec();
    let _ = sockperf::reflect(&mut datagram);
    let mut stream = data.to_vec();
    let mut out = Vec::new();
    let _ = sockperf::answer_stream(&mut stream, &mut out);
}

/// The transfer protocol: the hello, a frame's JSON, a chunk header, and
/// the paths and link targets a receiver checks.
pub fn transfer_wire(data: &[u8]) {
    use crate::transfer::{path, wire};
    if let Some(hello) = data.get(..wire::HELLO_LEN) {
        let mut bytes = [0u8; wire::HELLO_LEN];
        bytes.copy_from_slice(hello);
        let _ = wire::check_hello(&bytes);
    }
    if let Some(header) = data.get(..4) {
        let _ = wire::chunk_len([header[0], header[1], header[2], header[3]]);
    }
    let _ = wire::decode(data);
    let text = String::from_utf8_lossy(data);
    let (name, target) = text.split_once('\n').unwrap_or((&text, "."));
    if let Ok(parts) = path::components(name) {
        let _ = path::check_link(&parts, target);
        if let Some(last) = parts.last() {
            let _ = path::partial_name(last);
        }
    }
}

/// Text a peer supplies: chat lines as the room cleans them, and the
/// netcat transforms (CRLF, hex dump both ways).
pub fn text(data: &[u8]) {
    use crate::talk::transform::{Crlf, Direction, HexDump};
    let _ = crate::serve::chat::sanitize(data);
    let mut crlf = Crlf::default();
    let mut out = Vec::new();
    for piece in data.chunks(7) {
        crlf.convert(piece, &mut out);
    }
    for direction in [Direction::Sent, Direction::Received] {
        let mut dump = HexDump::new(direction);
        let mut shown = String::new();
        for piece in data.chunks(13) {
            dump.dump(piece, &mut shown);
        }
    }
}

/// A script's steps: `(event, argument bytes)`; the clock moves by the
/// argument's first byte in tenths of a second.
fn steps(data: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    data.split(|&b| b == 0xFF)
        .filter_map(|step| step.split_first().map(|(e, rest)| (*e, rest)))
}

fn json_of(bytes: &[u8]) -> Result<Value, crate::wire::iperf::ProtocolError> {
    codec::decode_json(bytes)
}

/// The perf server's session, driven by a script of client events:
/// parameters, states, streams ready, progress, time passing, a close.
pub fn perf_server_session(data: &[u8]) {
    let limits = ServerLimits {
        message_timeout: Duration::from_secs(30),
        setup_timeout: Duration::from_secs(10),
        grace: Duration::from_secs(40),
        rcv_timeout: Duration::from_secs(120),
        max_duration: Some(Duration::from_secs(3600)),
        bitrate_limit: Some(1 << 40),
        auth: None,
        tls: data.first().is_some_and(|b| b & 1 == 1),
    };
    let mut now = Instant::now();
    let mut session = ServerSession::new(now, "fuzz", limits);
    for (event, arg) in steps(data) {
        while session.poll_action().is_some() {}
        let _ = session.poll_read();
        let _ = session.poll_timeout();
        now += Duration::from_millis(100 * u64::from(arg.first().copied().unwrap_or(0)));
        match event % 7 {
            0 => session.handle_json(now, json_of(arg)),
            1 => match arg.first().map(|b| TestState::from_wire(*b)) {
                Some(Ok(state)) => session.handle_state(now, state),
                _ => session.handle_timeout(now),
            },
            2 => session.handle_streams_ready(now),
            3 => session.handle_progress(now, u64::from(arg.len() as u32) << 20),
            4 => session.handle_timeout(now),
            5 => session.handle_closed(),
            _ => session.handle_failure(crate::error::Error::Ended("fuzz".into())),
        }
    }
    while session.poll_action().is_some() {}
}

/// The perf client's session, driven by a script of server events.
pub fn perf_client_session(data: &[u8]) {
    let mut now = Instant::now();
    let params = serde_json::json!({"tcp": true, "time": 1, "parallel": 1, "len": 1024});
    let mut session = ClientSession::new(now, "fuzz", params, Duration::from_secs(30));
    for (event, arg) in steps(data) {
        while session.poll_action().is_some() {}
        let _ = session.poll_read();
        let _ = session.poll_timeout();
        let _ = session.is_running();
        now += Duration::from_millis(100 * u64::from(arg.first().copied().unwrap_or(0)));
        let word = |at: usize| {
            let mut b = [0u8; 4];
            for (i, out) in b.iter_mut().enumerate() {
                *out = arg.get(at + i).copied().unwrap_or(0);
            }
            i32::from_be_bytes(b)
        };
        match event % 7 {
            0 => session.handle_json(now, json_of(arg)),
            1 => match arg.first() {
                Some(byte) => match TestState::from_wire(*byte) {
                    Ok(state) => session.handle_state(now, state),
                    Err(source) => session.handle_unknown_state(
                        *byte,
                        crate::error::Error::Protocol {
                            what: "reading a state".into(),
                            source,
                        },
                    ),
                },
                None => session.handle_timeout(now),
            },
            2 => session.handle_test_over(now, arg.first().is_some_and(|b| b & 1 == 1)),
            3 => session.handle_server_error(word(0), word(4)),
            4 => session.handle_timeout(now),
            5 => session.handle_closed(),
            _ => session.handle_failure(crate::error::Error::Ended("fuzz".into())),
        }
    }
    while session.poll_action().is_some() {}
}

/// rtt's bookkeeping of replies: sequence numbers as a peer may echo
/// them (duplicated, late, from the future), 8 bytes each.
pub fn rtt_replies(data: &[u8]) {
    let mut track = crate::rtt::seq::SeqTrack::with_capacity(64);
    let mut current = 0u64;
    for word in data.chunks(8) {
        let mut b = [0u8; 8];
        b[..word.len()].copy_from_slice(word);
        let seq = u64::from_be_bytes(b);
        if seq & 1 == 0 {
            track.sent(current);
            current += 1;
        }
        let _ = track.reply(seq >> 1, current);
    }
    let _ = track.lost();
}

/// What an SMTP client sends `serve smtp`, as the connection reads it:
/// commands through smtp-proto's receiver into the session, and after a
/// DATA or BDAT its message through the data receiver, to the end. Every
/// reply must be a whole reply line (three digits, CRLF).
pub fn smtp_session(data: &[u8]) {
    use crate::serve::smtp::auth::AuthPolicy;
    use crate::serve::smtp::session::{Limits, Next, Policy, Session};
    use smtp_proto::request::receiver::{BdatReceiver, DataReceiver, RequestReceiver};
    let limits = Limits {
        max_size: 1 << 12,
        max_recipients: 4,
    };
    let policy = Policy {
        starttls: true,
        require_tls: false,
        auth: Some(AuthPolicy {
            accept_any: true,
            allow_insecure: true,
            ..AuthPolicy::default()
        }),
        chaos: crate::serve::smtp::chaos::Chaos {
            sender: 0.2,
            recipient: 0.2,
            auth: 0.2,
            disconnect: 0.0,
        },
        seed: data.len() as u64,
    };
    let mut session = Session::new("fuzz", limits, policy, false);
    let mut receiver = RequestReceiver::default();
    let mut bytes = data.iter();
    let whole = |r: &str| {
        assert!(r.len() >= 5 && r.ends_with("\r\n"), "a reply line: {r:?}");
        assert!(
            r.as_bytes()[..3].iter().all(u8::is_ascii_digit),
            "a code: {r:?}"
        );
    };
    while !bytes.as_slice().is_empty() {
        let next = match receiver.ingest(&mut bytes) {
            Ok(request) => session.command(request),
            Err(smtp_proto::Error::NeedsMoreData { .. }) => break,
            Err(e) => Next::Reply(session.refused(&e)),
        };
        let mut body = Vec::new();
        let next = match next {
            Next::Challenge(r) => {
                whole(&r);
                let rest = bytes.as_slice();
                let end = rest
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(rest.len(), |e| e + 1);
                bytes = rest[end..].iter();
                session.auth_answer(&rest[..end])
            }
            other => other,
        };
        match next {
            Next::Reply(r) | Next::Close(r) | Next::Challenge(r) | Next::StartTls(r) => whole(&r),
            Next::Data(r) => {
                whole(&r);
                if DataReceiver::new().ingest(&mut bytes, &mut body) {
                    let _ = session.message_done(body.len()).map_err(|r| whole(&r));
                }
            }
            Next::Chunk { size, last } => {
                BdatReceiver::new(size, last).ingest(&mut bytes, &mut body);
                if last {
                    let _ = session.message_done(body.len()).map_err(|r| whole(&r));
                } else {
                    whole(&session.chunk_taken(size));
                }
            }
        }
    }
}

/// What a sender's message becomes on the sink's web side, whatever its
/// bytes: its summary, the whole message, its headers, each part (by
/// every PartID the message has, and one it lacks), the HTML with its
/// inline images linked; the bytes also as a search query and as an
/// event stream read by `mail wait`.
pub fn mail_view(data: &[u8]) {
    use crate::serve::smtp::mailpit;
    use crate::serve::smtp::store::Stored;
    let stored = Stored {
        id: "fuzz".into(),
        envelope: Default::default(),
        size: data.len(),
        received: std::time::UNIX_EPOCH,
        summary: std::sync::Arc::new(mailpit::summarize(data)),
        read: false,
    };
    let message = mailpit::message_json(&stored, data);
    let _ = mailpit::summary_json(&stored);
    let _ = mailpit::headers_json(data);
    let listed = message["Attachments"].as_array().into_iter().flatten();
    let inline = message["Inline"].as_array().into_iter().flatten();
    for part in listed.chain(inline) {
        let id = part["PartID"].as_str().unwrap_or("");
        assert!(
            mailpit::part(data, id).is_some(),
            "a listed part is there: {id}"
        );
    }
    let _ = mailpit::part(data, "1.2.3");
    if let Some(html) = mailpit::html(data) {
        let _ = mailpit::link_inline(&html, data, "fuzz");
    }
    let text = String::from_utf8_lossy(data);
    let _ = mailpit::Query::parse(&text).matches(&stored);
    let mut reader = crate::serve::smtp::watch::SseReader::default();
    for chunk in data.chunks(7) {
        let _ = reader.push(chunk);
    }
}
