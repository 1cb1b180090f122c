//! Writing a received file. While writes stay block-aligned they go with
//! `O_DIRECT`, straight from the receive buffer to the disk: every file is
//! synced before it is renamed into place anyway, so the page cache would
//! only add a copy (on this project's VMs, copying into fresh page-cache
//! pages ran at a quarter of the disk's speed). The first unaligned write
//! (the file's tail, or small chunks from a pipe), or a file system without
//! direct I/O, falls back to ordinary buffered writes.

use std::fs::File;
use std::io::{self, Write};

use rustix::fs::{OFlags, fcntl_getfl, fcntl_setfl};

/// The alignment direct I/O needs of offsets, lengths and buffers.
pub(crate) const ALIGN: usize = 4096;

/// A file written directly while it can be.
pub(crate) struct Sink {
    file: File,
    direct: bool,
}

impl Sink {
    /// Wraps `file`, positioned at `offset`.
    pub(crate) fn new(file: File, offset: u64) -> Sink {
        let mut sink = Sink {
            file,
            direct: false,
        };
        if offset.is_multiple_of(ALIGN as u64) {
            sink.direct = sink.set_direct(true).is_ok();
        }
        sink
    }

    /// Whether writes still go around the page cache.
    #[cfg(test)]
    pub(crate) fn is_direct(&self) -> bool {
        self.direct
    }

    /// The file, back in ordinary buffered mode.
    pub(crate) fn into_file(mut self) -> File {
        if self.direct {
            let _ = self.set_direct(false);
        }
        self.file
    }

    fn set_direct(&mut self, on: bool) -> io::Result<()> {
        let flags = fcntl_getfl(&self.file)?;
        let flags = if on {
            flags | OFlags::DIRECT
        } else {
            flags - OFlags::DIRECT
        };
        fcntl_setfl(&self.file, flags)?;
        self.direct = on;
        Ok(())
    }

    fn aligned(data: &[u8]) -> bool {
        data.len().is_multiple_of(ALIGN) && (data.as_ptr() as usize).is_multiple_of(ALIGN)
    }
}

impl Write for Sink {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.direct && !Sink::aligned(data) {
            self.set_direct(false)?;
        }
        match self.file.write(data) {
            // Some file systems refuse direct writes only when they happen.
            Err(e) if self.direct && e.raw_os_error() == Some(libc::EINVAL) => {
                self.set_direct(false)?;
                self.file.write(data)
            }
            other => other,
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_then_unaligned_writes_land_in_order() {
        let dir = std::env::temp_dir().join(format!("sonde-sink-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("f");
        let file = File::create(&path).expect("create");
        let mut sink = Sink::new(file, 0);
        let mut block = vec![0u8; 3 * ALIGN];
        let start = block.as_ptr().align_offset(ALIGN);
        block[start..start + ALIGN].fill(7);
        sink.write_all(&block[start..start + ALIGN])
            .expect("aligned");
        sink.write_all(b"tail").expect("tail");
        assert!(!sink.is_direct(), "the tail ends direct writes");
        drop(sink.into_file());
        let got = std::fs::read(&path).expect("read");
        assert_eq!(got.len(), ALIGN + 4);
        assert!(got[..ALIGN].iter().all(|b| *b == 7));
        assert_eq!(&got[ALIGN..], b"tail");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
