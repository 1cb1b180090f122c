//! The TCP receiving loop of a perf stream, copying or discarding
//! (`--skip-rx-copy`), which asks again at once while data keeps coming.
//!
//! Why it spins: a receiver that sleeps until data arrives leaves its socket
//! unowned whenever it waits, and arriving segments are then processed by
//! the softirq of the CPU that sent them (on loopback, the sender's: one
//! CPU did both sides' TCP work). A receiver that asks again with
//! `MSG_DONTWAIT` owns the socket nearly all the time, so arriving segments
//! wait on its backlog and are processed on the receiving CPU when it
//! releases the socket. Measured on loopback (BENCHMARKS.md): `-Z
//! --skip-rx-copy` 23 -> 35 Gbit/s, a copying stream 21 -> 32 Gbit/s.
//! After `SPIN` without data the receiver sleeps in a blocking `recv`, and a
//! paced test (`-b`) never spins, so a slow test does not burn a CPU; nor
//! does a process allowed only one CPU.

use std::io;
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::net::RecvFlags;

use super::worker::Counters;

/// How long a receiver keeps asking a dry socket before it sleeps.
const SPIN: Duration = Duration::from_micros(200);

/// How a stream receives.
pub(crate) struct Receive<'a> {
    /// `MSG_TRUNC` discards in the kernel; empty flags copy into the buffer.
    pub flags: RecvFlags,
    /// Ask again at once (up to `SPIN`) while the socket is dry.
    pub spin: bool,
    pub c: &'a Counters,
    pub stop: &'a AtomicBool,
    /// `-F`: where the bytes received go.
    pub sink: Option<&'a std::fs::File>,
}

impl Receive<'_> {
    /// Receives into `buf` until end of input, an error, or `stop` (looked
    /// at after each receive, and while spinning).
    pub(crate) fn run(&self, sock: &TcpStream, buf: &mut [u8]) -> io::Result<()> {
        let mut dry_since: Option<Instant> = None;
        loop {
            let spinning = self.spin && dry_since.is_none_or(|t| t.elapsed() < SPIN);
            let flags = if spinning {
                self.flags | RecvFlags::DONTWAIT
            } else {
                self.flags
            };
            let n = match crate::sys::retry(|| rustix::net::recv(sock.as_fd(), &mut *buf, flags)) {
                Ok((_, n)) => n,
                Err(Errno::AGAIN) if spinning => {
                    if self.stop.load(Ordering::Relaxed) {
                        return Ok(());
                    }
                    dry_since.get_or_insert_with(Instant::now);
                    std::hint::spin_loop();
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            dry_since = None;
            if n == 0 {
                return Ok(());
            }
            if let Some(mut file) = self.sink {
                io::Write::write_all(&mut file, &buf[..n])?;
            }
            self.c.bytes.fetch_add(n as u64, Ordering::Relaxed);
            self.c.blocks.fetch_add(1, Ordering::Relaxed);
            if self.stop.load(Ordering::Relaxed) {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;
    use std::thread;

    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding loopback");
        let addr = listener.local_addr().expect("local address");
        let client = TcpStream::connect(addr).expect("connecting");
        let (server, _) = listener.accept().expect("accepting");
        (client, server)
    }

    /// CPU time this thread has used.
    fn thread_cpu() -> Duration {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
        Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
    }

    fn spinning_copy<'a>(c: &'a Counters, stop: &'a AtomicBool) -> Receive<'a> {
        Receive {
            flags: RecvFlags::empty(),
            spin: true,
            c,
            stop,
            sink: None,
        }
    }

    fn receive_all(flags: RecvFlags, spin: bool) -> u64 {
        let (mut tx, rx) = pair();
        let writer = thread::spawn(move || {
            for _ in 0..64 {
                tx.write_all(&[7u8; 100_000]).expect("writing");
            }
        });
        let (c, stop) = (Counters::default(), AtomicBool::new(false));
        let mut buf = vec![0u8; 1 << 20];
        let receive = Receive {
            flags,
            spin,
            c: &c,
            stop: &stop,
            sink: None,
        };
        receive.run(&rx, &mut buf).expect("receiving");
        writer.join().expect("writer thread");
        c.bytes.load(Ordering::Relaxed)
    }

    #[test]
    fn every_byte_is_counted_until_end_of_input() {
        for flags in [RecvFlags::empty(), RecvFlags::TRUNC] {
            for spin in [false, true] {
                assert_eq!(receive_all(flags, spin), 6_400_000, "{flags:?} spin {spin}");
            }
        }
    }

    #[test]
    fn a_spinning_receiver_on_a_dry_socket_stops_when_told() {
        let (_tx, rx) = pair();
        let (c, stop) = (Counters::default(), AtomicBool::new(true));
        let receive = spinning_copy(&c, &stop);
        receive.run(&rx, &mut [0u8; 64]).expect("receiving");
        assert_eq!(c.bytes.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_dry_socket_puts_the_receiver_to_sleep_instead_of_spinning() {
        let (mut tx, rx) = pair();
        let writer = thread::spawn(move || {
            tx.write_all(b"a").expect("writing");
            // A pause long enough that a receiver still spinning through it
            // would use most of it in CPU time.
            thread::sleep(Duration::from_millis(300));
            tx.write_all(b"b").expect("writing");
        });
        let (c, stop) = (Counters::default(), AtomicBool::new(false));
        let before = thread_cpu();
        let receive = spinning_copy(&c, &stop);
        receive.run(&rx, &mut [0u8; 64]).expect("receiving");
        let used = thread_cpu() - before;
        writer.join().expect("writer thread");
        assert_eq!(c.bytes.load(Ordering::Relaxed), 2);
        assert!(
            used < Duration::from_millis(100),
            "spun for {used:?} of a 300 ms pause"
        );
    }
}
