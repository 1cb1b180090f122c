//! `-F FILE`, as iperf3 has it: a sending stream sends the file's bytes
//! instead of its payload and stops at the end of the file (which ends the
//! client's test); a receiving stream writes what it receives into the
//! file. Each stream opens the file itself, as in iperf3: with `-P N`
//! every stream sends the whole file, and receiving streams write over
//! one another. Over UDP each datagram carries the header and then the
//! file's next bytes, and the receiver writes the bytes after the header.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::Ordering;

use super::worker::{Run, monotonic, pace};
use crate::wire::iperf::datagram::UdpHeader;

/// The file of `-F` and how large it was when the test ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskFile {
    /// The name as given.
    pub name: String,
    /// Its size in bytes at the end of the test.
    pub size: u64,
}

impl DiskFile {
    /// The file at `path` as it is now (size 0 when it cannot be read).
    pub fn stat(path: &Path) -> Self {
        Self {
            name: path.display().to_string(),
            size: std::fs::metadata(path).map_or(0, |m| m.len()),
        }
    }

    /// `bytes` as a whole percentage of the file, as iperf3 counts it.
    pub fn percent(&self, bytes: u64) -> u64 {
        if self.size == 0 {
            0
        } else {
            (bytes as f64 * 100.0 / self.size as f64) as u64
        }
    }
}

/// Opens the file for a stream: to read from when it sends, else created
/// (or emptied) to write into, readable by its owner only, as iperf3 does.
///
/// # Errors
/// When the file cannot be opened.
pub fn open(path: &Path, sender: bool) -> io::Result<File> {
    if sender {
        File::open(path)
    } else {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
    }
}

/// Reads as much of `buf` as the file still has (short only at its end).
fn fill(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Sends the file over TCP a block at a time, paced with `-b`.
pub(super) fn tcp_send(mut sock: TcpStream, mut file: File, run: &Run<'_>) -> io::Result<()> {
    let (params, c, stop, budget) = (run.params, run.c, run.stop, run.budget);
    let mut buf = vec![0u8; (params.len as usize).max(1)];
    let mut pacer = run.pacer(buf.len());
    while !stop.load(Ordering::Relaxed) && budget.take(1) == 1 {
        let n = fill(&mut file, &mut buf)?;
        if n == 0 {
            break;
        }
        pace(&mut pacer, n, stop);
        sock.write_all(&buf[..n])?;
        c.bytes.fetch_add(n as u64, Ordering::Relaxed);
        c.blocks.fetch_add(1, Ordering::Relaxed);
    }
    c.file_done.store(true, Ordering::Relaxed);
    Ok(())
}

/// Sends the file over UDP, a datagram at a time after its header.
pub(super) fn udp_send(sock: &UdpSocket, mut file: File, run: &Run<'_>) -> io::Result<()> {
    let (params, c, stop, budget) = (run.params, run.c, run.stop, run.budget);
    let wide = params.udp_counters_64bit;
    let header = UdpHeader::len(wide);
    let mut buf = vec![0u8; (params.len as usize).max(header + 1)];
    let mut pacer = run.pacer(buf.len());
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) && budget.take(1) == 1 {
        let n = fill(&mut file, &mut buf[header..])?;
        if n == 0 {
            break;
        }
        pace(&mut pacer, header + n, stop);
        let (sec, usec) = monotonic();
        seq += 1;
        UdpHeader {
            sec: sec as u32,
            usec,
            seq,
        }
        .write(&mut buf, wide);
        let sent = sock.send(&buf[..header + n])?;
        c.bytes.fetch_add(sent as u64, Ordering::Relaxed);
        c.blocks.fetch_add(1, Ordering::Relaxed);
    }
    c.file_done.store(true, Ordering::Relaxed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_are_whole_and_truncated_as_iperf3s() {
        let f = DiskFile {
            name: "f".into(),
            size: 714_434_560,
        };
        assert_eq!(f.percent(719_585_280), 100);
        assert_eq!(f.percent(714_303_488), 99);
        assert_eq!(DiskFile { size: 0, ..f }.percent(5), 0);
    }

    #[test]
    fn a_received_file_is_made_private_and_emptied() {
        use std::os::unix::fs::PermissionsExt;
        let path = std::env::temp_dir().join(format!("sonde-diskfile-{}", std::process::id()));
        std::fs::write(&path, b"old contents").expect("write");
        let file = open(&path, false).expect("open");
        (&file).write_all(b"new").expect("write");
        drop(file);
        assert_eq!(std::fs::read(&path).expect("read"), b"new");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        let _ = std::fs::remove_file(&path);
        // An existing file keeps its mode; a new one is 0600.
        assert!(mode & 0o777 != 0);
        let fresh = path.with_extension("new");
        drop(open(&fresh, false).expect("open"));
        let mode = std::fs::metadata(&fresh)
            .expect("stat")
            .permissions()
            .mode();
        let _ = std::fs::remove_file(&fresh);
        assert_eq!(mode & 0o777, 0o600);
    }
}
