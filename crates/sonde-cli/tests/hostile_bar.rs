//! The bar for every `serve` service over TCP (issue 18): while each
//! hostile load of the harness runs (a flood of silent connections,
//! slowloris, half-open peers, garbage, resets mid-message, clients that
//! never read), a well-behaved client does its normal work; afterwards
//! the server's threads and descriptors come back to their level before
//! the loads and its memory to within 10% or 5 MiB, SIGTERM ends it with
//! 0, and no panic ever reaches its stderr. `hostile_servers.rs` holds
//! the same bar for perf -s, receive -k, listen -k and the UDP services.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::Stdio;

use common::hostile::{self, Load, N, alone, bar};
use common::{Listener, run, sonde, start_sonde};

fn all_loads() -> Vec<Load> {
    Load::all_tcp(N).to_vec()
}

fn serve(args: &[&str]) -> Listener {
    let mut all = vec!["serve"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--bind", "127.0.0.1", "--port", "0"]);
    start_sonde(&all, Stdio::null(), Stdio::null())
}

/// 1,000 echo round trips of sonde rtt (`extra`: its mode flags).
fn round_trips(extra: &'static [&'static str]) -> impl Fn(u16) {
    move |port| {
        let mut cmd = sonde();
        cmd.args(["rtt", &format!("127.0.0.1:{port}"), "-n", "1000"])
            .args(extra);
        let done = run(cmd, b"");
        assert_eq!(done.code(), Some(0), "rtt: {}", done.stderr);
    }
}

#[test]
fn serve_echo_serves_through_every_load() {
    let _alone = alone();
    bar(serve(&["echo"]), b"", &all_loads(), round_trips(&[]));
}

#[test]
fn threaded_echo_serves_through_every_load() {
    let _alone = alone();
    bar(
        serve(&["echo", "--blocking"]),
        b"",
        &all_loads(),
        round_trips(&[]),
    );
}

#[test]
fn busy_polling_echo_serves_through_every_load() {
    let _alone = alone();
    bar(
        serve(&["echo", "--busy-poll"]),
        b"",
        &all_loads(),
        round_trips(&[]),
    );
}

#[test]
fn sockperf_reflector_serves_through_every_load() {
    let _alone = alone();
    // A valid start: a client's 14-byte message that asks for a reply.
    use sonde::wire::sockperf::{CLIENT, HEADER_LEN, Header, PONG_REQUEST};
    let mut header = vec![0u8; HEADER_LEN];
    Header {
        seq: 1,
        flags: CLIENT | PONG_REQUEST,
        len: HEADER_LEN as u32,
    }
    .write(&mut header);
    bar(
        serve(&["sockperf"]),
        &header,
        &all_loads(),
        round_trips(&["--sockperf", "--tcp"]),
    );
}

#[test]
fn discard_reads_everything_through_every_load() {
    let _alone = alone();
    // A megabyte in, the client's end, then the server's: a server that
    // closed with bytes unread would reset instead.
    let takes_it_all = |port: u16| {
        let mut conn = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        conn.set_read_timeout(Some(common::DEADLINE))
            .expect("timeout");
        conn.write_all(&common::random_bytes(1 << 20, 5))
            .expect("a megabyte");
        conn.shutdown(Shutdown::Write).expect("our end");
        let mut rest = Vec::new();
        conn.read_to_end(&mut rest)
            .expect("the server's end, not a reset");
        assert!(rest.is_empty(), "discard sent {} bytes", rest.len());
    };
    bar(serve(&["discard"]), b"", &all_loads(), takes_it_all);
}

#[test]
fn chargen_sends_its_pattern_through_every_load() {
    let _alone = alone();
    let read = |port: u16| {
        let mut conn = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        conn.set_read_timeout(Some(common::DEADLINE))
            .expect("timeout");
        let mut got = vec![0u8; 512 << 10];
        conn.read_exact(&mut got).expect("512 KiB of the pattern");
        got
    };
    let server = serve(&["chargen"]);
    let pattern = read(server.port);
    assert!(pattern.starts_with(b" !\"#$%&"), "RFC 864's first line");
    bar(server, b"", &all_loads(), |port| {
        assert!(read(port) == pattern, "the pattern changed under load");
    });
}

#[test]
fn chat_delivers_a_line_through_every_load() {
    let _alone = alone();
    let line_goes_through = |port: u16| {
        let listener = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        listener
            .set_read_timeout(Some(common::DEADLINE))
            .expect("timeout");
        let mut talker = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let mut lines = BufReader::new(listener);
        // Each hears the room's welcome first; the listener's shows it
        // is in the room before the line is said.
        let mut welcome = String::new();
        lines.read_line(&mut welcome).expect("a welcome");
        talker
            .write_all(b"the good client says hi\n")
            .expect("a line");
        let mut heard = String::new();
        while !heard.contains("the good client says hi") {
            heard.clear();
            let n = lines.read_line(&mut heard).expect("a line of the room");
            assert!(n > 0, "the room closed");
        }
    };
    bar(serve(&["chat"]), b"", &all_loads(), line_goes_through);
}

/// The harness's own measure of a process, checked against itself: a
/// server at rest is steady and settles at once.
#[test]
fn a_resting_server_settles_at_once() {
    let _alone = alone();
    let server = serve(&["echo"]);
    let pid = server.child.id();
    let before = hostile::steady(pid);
    assert!(before.threads >= 1 && before.fds >= 3, "{before:?}");
    let (after, back) = hostile::settles(pid, before);
    assert!(back, "{before:?} then {after:?}");
}
