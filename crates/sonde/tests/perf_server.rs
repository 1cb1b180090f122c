//! The perf server under bad input and load: each bad peer is refused or
//! times out with a clear error, and the server keeps serving; a full
//! server answers iperf3's busy reply; tests run side by side.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::Duration;

use sonde::Error;
use sonde::perf::client::{self, ClientConfig};
use sonde::perf::server::{self, ServerConfig, ServerEvent};

/// Every test body must finish within this.
const DEADLINE: Duration = Duration::from_secs(60);

struct Server {
    addr: SocketAddr,
    events: mpsc::Receiver<String>,
    stop: Arc<AtomicBool>,
    handle: Option<thread::JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn start(config: ServerConfig) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, events) = mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let tx = std::sync::Mutex::new(tx);
    let handle = thread::spawn(move || {
        let notify = move |e: ServerEvent| {
            let text = match e {
                ServerEvent::Accepted { .. } => "accepted".to_string(),
                ServerEvent::Busy(_) => "busy".to_string(),
                ServerEvent::Done { concurrent, .. } => format!("done {concurrent}"),
                ServerEvent::Failed { error, .. } => format!("failed: {error}"),
                ServerEvent::Interrupted { .. } => "interrupted".to_string(),
                // Progress within a test: not what these tests count.
                ServerEvent::Started { .. } | ServerEvent::Interval { .. } => return,
            };
            if let Ok(tx) = tx.lock() {
                let _ = tx.send(text);
            }
        };
        server::serve(listener, config, notify, &flag).expect("serve");
    });
    Server {
        addr,
        events,
        stop,
        handle: Some(handle),
    }
}

fn quick() -> ServerConfig {
    ServerConfig {
        setup_timeout: Duration::from_millis(800),
        ..ServerConfig::default()
    }
}

fn within<T: Send + 'static>(body: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(body());
    });
    rx.recv_timeout(DEADLINE)
        .expect("the test body finished in time")
}

fn client_test(addr: SocketAddr) -> sonde::Result<client::ClientReport> {
    let mut config = ClientConfig::new("127.0.0.1", addr.port());
    config.params.time = 1;
    config.interval = None;
    client::run(
        &config,
        &sonde::perf::Quiet,
        &Arc::new(AtomicBool::new(false)),
    )
}

/// Waits for the next event that is not "accepted".
fn outcome(server: &Server) -> String {
    loop {
        let e = server.events.recv_timeout(DEADLINE).expect("an event");
        if e != "accepted" {
            return e;
        }
    }
}

const COOKIE: &[u8; 37] = b"abcdefghijklmnopqrstuvwxyz234567abcd\0";

fn control(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(DEADLINE)).expect("timeout");
    s.write_all(COOKIE).expect("cookie");
    let mut state = [0u8; 1];
    s.read_exact(&mut state).expect("state");
    assert_eq!(state[0], 9, "PARAM_EXCHANGE");
    s
}

/// After each bad peer, a good client still gets a full test.
fn still_serves(server: &Server) {
    let report = client_test(server.addr).expect("a good client after a bad one");
    assert!(report.ends.iter().all(|e| e.received.0 > 0));
    assert!(outcome(server).starts_with("done"));
}

#[test]
fn bad_peers_are_refused_and_the_server_goes_on() {
    within(|| {
        let server = start(quick());
        // Garbage instead of a cookie, then close.
        let mut s = TcpStream::connect(server.addr).expect("connect");
        s.write_all(b"GET / HTTP/1.0\r\n").expect("write");
        drop(s);
        assert!(
            outcome(&server).contains("closed the control connection"),
            "garbage"
        );
        still_serves(&server);

        // Nothing at all: the cookie read times out.
        let _silent = TcpStream::connect(server.addr).expect("connect");
        let e = outcome(&server);
        assert!(
            e.contains("reading the cookie") && e.contains("timed out"),
            "{e}"
        );
        still_serves(&server);

        // A JSON length of 4 GB.
        let mut s = control(server.addr);
        s.write_all(&u32::MAX.to_be_bytes()).expect("len");
        let mut reply = [0u8; 9];
        s.read_exact(&mut reply).expect("server error");
        assert_eq!(
            reply,
            [0xFE, 0, 0, 0, 114, 0, 0, 0, 0],
            "SERVER_ERROR IERECVPARAMS"
        );
        assert!(outcome(&server).contains("JSON length 4294967295 is out of range"));
        still_serves(&server);

        // Malformed JSON.
        let mut s = control(server.addr);
        s.write_all(&5u32.to_be_bytes()).expect("len");
        s.write_all(b"{nope").expect("body");
        assert!(outcome(&server).contains("malformed JSON"));
        still_serves(&server);

        // A truncated message: 100 bytes announced, 10 sent, then close.
        let mut s = control(server.addr);
        s.write_all(&100u32.to_be_bytes()).expect("len");
        s.write_all(b"{\"tcp\":tru").expect("part");
        drop(s);
        assert!(outcome(&server).contains("closed the control connection"));
        still_serves(&server);

        // A state byte iperf3 never sends, during the test.
        let mut s = control(server.addr);
        let params = br#"{"tcp":true,"time":5,"parallel":1,"len":1024}"#;
        s.write_all(&(params.len() as u32).to_be_bytes())
            .expect("len");
        s.write_all(params).expect("params");
        let mut state = [0u8; 1];
        s.read_exact(&mut state).expect("create streams");
        assert_eq!(state[0], 10);
        let mut data = TcpStream::connect(server.addr).expect("data");
        data.write_all(COOKIE).expect("data cookie");
        s.read_exact(&mut state).expect("test start");
        s.write_all(&[3]).expect("bad state");
        assert!(outcome(&server).contains("unknown state byte 3"));
        still_serves(&server);

        // The data stream never comes: stream set-up times out.
        let mut s = control(server.addr);
        s.write_all(&(params.len() as u32).to_be_bytes())
            .expect("len");
        s.write_all(params).expect("params");
        let e = outcome(&server);
        assert!(
            e.contains("waiting for the data streams") && e.contains("timed out"),
            "{e}"
        );
        still_serves(&server);
    });
}

#[test]
fn a_full_server_answers_busy_and_tests_run_side_by_side() {
    within(|| {
        let server = start(ServerConfig {
            max_tests: 1,
            ..quick()
        });
        // A test holds the one place once its parameters are in (a client
        // that sent only its cookie holds none).
        let mut holding = control(server.addr);
        let params = br#"{"tcp":true,"time":5,"parallel":1,"len":1024}"#;
        holding
            .write_all(&(params.len() as u32).to_be_bytes())
            .expect("len");
        holding.write_all(params).expect("params");
        let mut state = [0u8; 1];
        holding.read_exact(&mut state).expect("create streams");
        assert_eq!(state[0], 10);
        match client_test(server.addr) {
            Err(Error::Busy) => {}
            other => panic!("expected busy, got {:?}", other.map(|_| ())),
        }
        drop(server);

        let server = start(quick());
        let a = server.addr;
        let first = thread::spawn(move || client_test(a).map(|r| r.ends.len()));
        let second = client_test(server.addr).map(|r| r.ends.len());
        assert_eq!(second.expect("second test"), 1);
        assert_eq!(first.join().expect("thread").expect("first test"), 1);
        let mut done = Vec::new();
        while done.len() < 2 {
            let e = outcome(&server);
            assert!(e.starts_with("done"), "{e}");
            done.push(e);
        }
        assert!(
            done.iter().any(|e| e == "done 2"),
            "one test saw the other: {done:?}"
        );
    });
}

/// A control connection whose one-stream test has started: the data
/// stream is connected and TEST_START and TEST_RUNNING are read.
fn started(addr: SocketAddr) -> (TcpStream, TcpStream) {
    let mut s = control(addr);
    let params = br#"{"tcp":true,"time":1,"parallel":1,"len":1024}"#;
    s.write_all(&(params.len() as u32).to_be_bytes())
        .expect("len");
    s.write_all(params).expect("params");
    let mut state = [0u8; 1];
    s.read_exact(&mut state).expect("create streams");
    assert_eq!(state[0], 10, "CREATE_STREAMS");
    let mut data = TcpStream::connect(addr).expect("data");
    data.write_all(COOKIE).expect("data cookie");
    for want in [1, 2] {
        s.read_exact(&mut state).expect("test start, running");
        assert_eq!(state[0], want, "TEST_START, TEST_RUNNING");
    }
    (s, data)
}

/// The server's Failed event, and how long after `from` it came.
fn failure_after(server: &Server, from: std::time::Instant) -> (String, Duration) {
    let e = outcome(server);
    (e, from.elapsed())
}

#[test]
fn a_client_silent_once_the_test_runs_is_ended_by_each_deadline() {
    within(|| {
        // The test's length (1 s) and the grace (1 s) pass with no
        // TEST_END: the server says the test expired, and goes on.
        let server = start(ServerConfig {
            grace: Duration::from_secs(1),
            message_timeout: Duration::from_secs(1),
            ..quick()
        });
        let from = std::time::Instant::now();
        let (mut s, _data) = started(server.addr);
        let (e, after) = failure_after(&server, from);
        assert!(
            e.contains("waiting for the client to end the test") && e.contains("timed out"),
            "{e}"
        );
        assert!(after >= Duration::from_secs(2), "after {after:?}");
        let mut reply = [0u8; 5];
        s.read_exact(&mut reply).expect("server error");
        assert_eq!(reply[0], 0xFE, "SERVER_ERROR");
        assert_eq!(
            i32::from_be_bytes([reply[1], reply[2], reply[3], reply[4]]),
            sonde::wire::iperf::codec::errors::IESERVERTESTDURATIONEXPIRED,
            "IESERVERTESTDURATIONEXPIRED"
        );
        still_serves(&server);

        // TEST_END, and then no results: the results' read times out.
        let (mut s, _data) = started(server.addr);
        s.write_all(&[4]).expect("TEST_END");
        let mut state = [0u8; 1];
        s.read_exact(&mut state).expect("exchange results");
        assert_eq!(state[0], 13, "EXCHANGE_RESULTS");
        let from = std::time::Instant::now();
        let (e, after) = failure_after(&server, from);
        assert!(
            e.contains("reading the client's results") && e.contains("timed out"),
            "{e}"
        );
        assert!(after >= Duration::from_millis(900), "after {after:?}");
        still_serves(&server);
    });
}
