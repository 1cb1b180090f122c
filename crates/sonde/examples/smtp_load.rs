//! A load for `bench/smtp.py`: SENDERS connections at once, each sending
//! messages one after another as smtplib does (each command waits for its
//! reply: no pipelining), for SECS seconds or COUNT messages in all;
//! prints the messages per second the server accepted (one number). Lean
//! on purpose, so the load is not what is measured.
//!
//! `cargo run --release --example smtp_load -- HOST:PORT SENDERS SECS COUNT`

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A small message, as an app's notification is.
const MESSAGE: &[u8] = b"From: app@example.com\r\nTo: user@example.com\r\nSubject: Your code\r\n\r\nYour code is 123456.\r\n.\r\n";

/// Reads one reply (its last line); its code.
fn reply(reader: &mut BufReader<TcpStream>, line: &mut String) -> Option<u16> {
    loop {
        line.clear();
        if reader.read_line(line).ok()? == 0 {
            return None;
        }
        if line.as_bytes().get(3) != Some(&b'-') {
            return line.get(..3)?.parse().ok();
        }
    }
}

/// One sender: messages until the time or the count is up; how many the
/// server answered 250.
fn sender(target: &str, until: Instant, left: &AtomicU64) -> u64 {
    let Ok(mut writer) = TcpStream::connect(target) else {
        return 0;
    };
    let _ = writer.set_nodelay(true);
    let Ok(read_half) = writer.try_clone() else {
        return 0;
    };
    let mut reader = BufReader::new(read_half);
    let mut line = String::new();
    let mut say = |w: &mut TcpStream, r: &mut BufReader<TcpStream>, bytes: &[u8]| {
        w.write_all(bytes).ok()?;
        reply(r, &mut line)
    };
    if reply(&mut reader, &mut String::new()) != Some(220)
        || say(&mut writer, &mut reader, b"EHLO load\r\n") != Some(250)
    {
        return 0;
    }
    let mut sent = 0;
    while Instant::now() < until
        && left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
    {
        let steps: [&[u8]; 4] = [
            b"MAIL FROM:<app@example.com>\r\n",
            b"RCPT TO:<user@example.com>\r\n",
            b"DATA\r\n",
            MESSAGE,
        ];
        let codes: Vec<Option<u16>> = steps
            .iter()
            .map(|s| say(&mut writer, &mut reader, s))
            .collect();
        if codes != [Some(250), Some(250), Some(354), Some(250)] {
            break;
        }
        sent += 1;
    }
    let _ = say(&mut writer, &mut reader, b"QUIT\r\n");
    sent
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [target, senders, secs, count] = args.as_slice() else {
        eprintln!("usage: smtp_load HOST:PORT SENDERS SECS COUNT");
        std::process::exit(2);
    };
    let (Ok(senders), Ok(secs), Ok(count)) = (
        senders.parse::<u64>(),
        secs.parse::<f64>(),
        count.parse::<u64>(),
    ) else {
        eprintln!("smtp_load: SENDERS, SECS and COUNT are numbers");
        std::process::exit(2);
    };
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let left = AtomicU64::new(count);
    let start = Instant::now();
    let total: u64 = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..senders)
            .map(|_| scope.spawn(|| sender(target, until, &left)))
            .collect();
        workers.into_iter().map(|w| w.join().unwrap_or(0)).sum()
    });
    let secs = start.elapsed().as_secs_f64();
    println!("{:.1}", total as f64 / secs);
}
