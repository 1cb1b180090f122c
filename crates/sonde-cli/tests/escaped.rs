//! What a peer says reaches the terminal escaped (issue 18): a receiver's
//! refusal that carries terminal controls and a newline (to forge a line
//! of sonde's own) is printed by the sender as escapes.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;

use common::{TempDir, run, sonde};
use sonde::transfer::wire;

#[test]
fn a_refusal_with_terminal_controls_is_printed_escaped() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let receiver = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("the sender");
        conn.set_read_timeout(Some(common::DEADLINE))
            .expect("timeout");
        conn.write_all(&wire::hello()).expect("hello");
        let mut theirs = [0u8; wire::HELLO_LEN];
        conn.read_exact(&mut theirs).expect("their hello");
        let refuse = wire::encode(&wire::Message::Refuse {
            reason: "no\u{1b}[2J\u{1b}]0;owned\u{7}\nsonde: forged line\u{202e}".into(),
        });
        conn.write_all(&refuse).expect("the refusal");
        let _ = conn.read_to_end(&mut Vec::new());
    });
    let src = TempDir::new("escaped-src");
    let file = src.join("a.txt");
    std::fs::write(&file, b"hello").expect("source");
    let mut cmd = sonde();
    cmd.arg("send").arg(&file).arg(format!("127.0.0.1:{port}"));
    let done = run(cmd, b"");
    assert_ne!(done.code(), Some(0), "{}", done.stderr);
    assert!(!done.stderr.contains('\u{1b}'), "{:?}", done.stderr);
    assert!(!done.stderr.contains('\u{7}'), "{:?}", done.stderr);
    assert!(!done.stderr.contains('\u{202e}'), "{:?}", done.stderr);
    assert!(
        !done.stderr.lines().any(|l| l.starts_with("sonde: forged")),
        "{:?}",
        done.stderr
    );
    common::assert_contains(&done.stderr, "no\\u{1b}[2J");
    receiver.join().expect("the receiver");
}
