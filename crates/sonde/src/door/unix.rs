//! The front door on a Unix stream socket: the same accept loop, cap,
//! refusal and back-off as TCP's. No address rules: a Unix socket's
//! access control is its file's permissions (or, for an abstract name,
//! the network namespace), and its peers have no IP to judge.

use std::os::unix::net::UnixListener as StdUnixListener;
use std::sync::atomic::Ordering;

use tokio::net::{UnixListener, UnixStream};

use super::accept::Listening;
use super::permit::Permit;
use super::{Door, Refusal};

/// A Unix connection let in, and its place under the cap.
#[derive(Debug)]
pub struct UnixAccepted {
    /// The connection.
    pub stream: UnixStream,
    /// Its place; hold it as long as the connection is open.
    pub permit: Permit,
}

impl Listening for UnixListener {
    type Conn = UnixStream;
    async fn accept_next(&self) -> std::io::Result<UnixStream> {
        self.accept().await.map(|(stream, _)| stream)
    }
    fn describe(&self) -> String {
        self.local_addr()
            .ok()
            .and_then(|a| a.as_pathname().map(|p| p.display().to_string()))
            .unwrap_or_else(|| "a Unix socket".into())
    }
}

impl Door {
    /// Accepts on a Unix `listener` until shutdown, handing each
    /// connection given a place to `handler`; past the cap a client gets
    /// the door's [`Refusal`] and is closed.
    pub async fn serve_unix(&self, listener: UnixListener, mut handler: impl FnMut(UnixAccepted)) {
        self.accept_loop(&listener, |stream| {
            let inner = &self.inner;
            match Permit::try_new(inner).or_else(|| Permit::from_oldest(inner)) {
                Some(permit) => {
                    inner.counters.accepted.fetch_add(1, Ordering::Relaxed);
                    handler(UnixAccepted { stream, permit });
                }
                None => {
                    inner.counters.refused.fetch_add(1, Ordering::Relaxed);
                    if let Refusal::Send(bytes) = &inner.config.refusal {
                        let _ = stream.try_write(bytes);
                    }
                }
            }
        })
        .await;
    }

    /// [`Self::serve_unix`] on a small runtime of its own on this thread.
    ///
    /// # Errors
    /// When the runtime cannot start or the listener cannot be registered.
    pub fn serve_unix_blocking(
        &self,
        listener: StdUnixListener,
        handler: impl FnMut(UnixAccepted),
    ) -> std::io::Result<()> {
        let runtime = super::runtime()?;
        runtime.block_on(async {
            listener.set_nonblocking(true)?;
            let listener = UnixListener::from_std(listener)?;
            self.serve_unix(listener, handler).await;
            Ok(())
        })
    }
}
