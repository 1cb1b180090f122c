//! What a receiver tells a sender that has not shown it holds the same
//! bytes: nothing of lengths or hashes. A hand-made sender announces
//! files the receiver holds (in place, or partial from an interrupted
//! transfer) with a wrong proof, none, or the right one, and reads the
//! answers off the wire.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Stdio;

use common::{TempDir, random_bytes, start_sonde};
use sonde::transfer::wire::{self, Message};

/// Offers `files` (path, size, proof) to a receiver of `dir` and returns
/// its answer to each, leaving before any data.
fn answers(dir: &Path, extra: &[&str], files: &[(&str, u64, Option<String>)]) -> Vec<Message> {
    let dir = dir.to_str().expect("utf-8 temp path");
    let mut args = vec!["receive", dir, "--bind", "127.0.0.1", "--port", "0"];
    args.extend_from_slice(extra);
    let recv = start_sonde(&args, Stdio::null(), Stdio::piped());
    let mut conn = TcpStream::connect(("127.0.0.1", recv.port)).expect("connect");
    conn.set_read_timeout(Some(common::DEADLINE))
        .expect("timeout");
    conn.write_all(&wire::hello()).expect("hello");
    let mut theirs = [0; wire::HELLO_LEN];
    conn.read_exact(&mut theirs).expect("their hello");
    let total = files.iter().map(|f| f.1).sum::<u64>() as i64;
    send(
        &mut conn,
        &Message::Offer {
            files: files.len() as i64,
            dirs: 0,
            bytes: total,
        },
    );
    assert_eq!(next(&mut conn), Message::Accept);
    for (path, size, head) in files {
        send(
            &mut conn,
            &Message::File {
                path: (*path).into(),
                mode: 0o644,
                size: *size as i64,
                mtime: None,
                head: head.clone(),
            },
        );
    }
    let got = files.iter().map(|_| next(&mut conn)).collect();
    drop(conn);
    let _ = recv.finish();
    got
}

fn send(conn: &mut TcpStream, message: &Message) {
    conn.write_all(&wire::encode(message)).expect("a frame");
}

fn next(conn: &mut TcpStream) -> Message {
    let mut len = [0; 4];
    conn.read_exact(&mut len).expect("a frame's length");
    let mut body = vec![0; u32::from_be_bytes(len) as usize];
    conn.read_exact(&mut body).expect("a frame");
    wire::decode(&body).expect("a message")
}

fn proof(data: &[u8]) -> Option<String> {
    let head = &data[..data.len().min(wire::PROOF_LEN as usize)];
    Some(blake3::hash(head).to_hex().to_string())
}

fn nothing(overwrite: bool) -> Message {
    Message::Have {
        len: 0,
        blake3: None,
        complete: false,
        overwrite,
    }
}

#[test]
fn a_sender_without_the_bytes_learns_no_length_or_hash() {
    let dst = TempDir::new("privacy-dst");
    let secret = b"the receiver's own file\n".to_vec();
    fs::write(dst.join("secret.txt"), &secret).expect("in place");
    let big = random_bytes(4 << 20, 31);
    fs::write(dst.join(".big.bin.sonde-part"), &big[..2 << 20]).expect("partial");
    let size = secret.len() as u64;
    let wrong = Some(blake3::hash(b"a guess").to_hex().to_string());

    // Wrong proofs, or none: a partial file looks like nothing held, and a
    // file in place that may not be replaced is declined, without figures.
    let got = answers(
        &dst.0,
        &[],
        &[
            ("big.bin", 4 << 20, wrong.clone()),
            ("absent.bin", 4 << 20, wrong.clone()),
            ("secret.txt", size, None),
        ],
    );
    assert_eq!(got[0], nothing(false), "{got:?}");
    assert_eq!(got[0], got[1], "a held partial answers as an absent name");
    match &got[2] {
        Message::Decline { reason } => assert!(reason.contains("--overwrite"), "{reason}"),
        other => panic!("expected a decline, got {other:?}"),
    }

    // With --overwrite the file in place is not even declined; the right
    // first bytes of a file shorter than the partial show nothing either.
    let got = answers(
        &dst.0,
        &["--overwrite"],
        &[
            ("secret.txt", size, wrong.clone()),
            ("absent.txt", size, wrong),
            ("big.bin", 3 << 19, proof(&big)),
        ],
    );
    assert_eq!(got[0], nothing(true), "{got:?}");
    assert_eq!(got[0], got[1]);
    assert_eq!(got[2], nothing(true), "a partial past the size announced");

    // The sender that holds the bytes is shown what it needs to resume and
    // to skip.
    let got = answers(
        &dst.0,
        &[],
        &[
            ("big.bin", 4 << 20, proof(&big)),
            ("secret.txt", size, proof(&secret)),
        ],
    );
    let held = blake3::hash(&big[..2 << 20]).to_hex().to_string();
    assert_eq!(
        got[0],
        Message::Have {
            len: 2 << 20,
            blake3: Some(held),
            complete: false,
            overwrite: false,
        }
    );
    assert_eq!(
        got[1],
        Message::Have {
            len: size as i64,
            blake3: Some(blake3::hash(&secret).to_hex().to_string()),
            complete: true,
            overwrite: false,
        }
    );
    // Nothing was written or taken away by any of it.
    assert_eq!(fs::read(dst.join("secret.txt")).expect("kept"), secret);
    let partial = fs::read(dst.join(".big.bin.sonde-part")).expect("kept");
    assert!(partial == big[..2 << 20]);
}
