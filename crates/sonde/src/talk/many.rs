//! `listen -k`: many clients at once. What each client sends goes to the
//! output as it arrives (a whole read at a time, so chunks never interleave
//! mid-write); the input goes to every connected client.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::thread;

use super::pump::{Activity, Filters};
use super::relay::{Input, RelayOptions, send_all};
use super::transform::Direction;
use crate::error::{Error, Result};

/// Something that happened to one client, for the caller to report.
#[derive(Debug)]
pub enum ClientEvent {
    /// A client connected.
    Connected(SocketAddr),
    /// A client finished sending and was closed.
    Closed(SocketAddr),
    /// A client's connection failed; others go on.
    Failed(SocketAddr, Error),
    /// Accepting a connection failed (e.g. out of descriptors); the
    /// listener goes on.
    AcceptFailed(Error),
}

type Clients = Arc<Mutex<Vec<(u64, TcpStream)>>>;

/// Serves clients of `listener` until the process ends.
///
/// # Errors
/// Only when a thread cannot be started.
pub fn serve_many(
    listener: TcpListener,
    input: Input,
    output: OwnedFd,
    opts: RelayOptions,
    on_event: impl Fn(ClientEvent) + Send + Sync + 'static,
) -> Result<()> {
    let clients: Clients = Arc::default();
    let output = Arc::new(Mutex::new(std::fs::File::from(output)));
    let on_event = Arc::new(on_event);
    let opts = Arc::new(opts);
    spawn_broadcaster(input, Arc::clone(&clients), &opts)?;
    let mut next_id = 0u64;
    loop {
        let (stream, peer) = match listener.accept() {
            Ok(pair) => pair,
            Err(e) => {
                on_event(ClientEvent::AcceptFailed(Error::io(
                    "accepting a client",
                    e,
                )));
                // Out of descriptors is the usual cause: give closes a moment.
                thread::sleep(std::time::Duration::from_millis(50));
                continue;
            }
        };
        next_id += 1;
        // Listed before it is reported, so input typed after the report
        // reaches it.
        match stream.try_clone() {
            Ok(writer) => {
                if let Ok(mut list) = clients.lock() {
                    list.push((next_id, writer));
                }
            }
            Err(e) => {
                on_event(ClientEvent::Failed(
                    peer,
                    Error::io("duplicating the socket", e),
                ));
                continue;
            }
        }
        on_event(ClientEvent::Connected(peer));
        let client = Client {
            id: next_id,
            peer,
            clients: Arc::clone(&clients),
            output: Arc::clone(&output),
            opts: Arc::clone(&opts),
        };
        let on_event = Arc::clone(&on_event);
        thread::Builder::new()
            .name("sonde-client".into())
            .spawn(move || on_event(client.run(stream)))
            .map_err(|e| Error::io("starting a client thread", e))?;
    }
}

struct Client {
    id: u64,
    peer: SocketAddr,
    clients: Clients,
    output: Arc<Mutex<std::fs::File>>,
    opts: Arc<RelayOptions>,
}

impl Client {
    fn run(self, stream: TcpStream) -> ClientEvent {
        let result = self.serve(&stream);
        remove(&self.clients, self.id);
        let _ = stream.shutdown(Shutdown::Both);
        match result {
            Ok(()) => ClientEvent::Closed(self.peer),
            Err(e) => ClientEvent::Failed(self.peer, e),
        }
    }

    fn serve(&self, stream: &TcpStream) -> Result<()> {
        let mut sender = self.opts.filters(Direction::Sent);
        if let Some(greeting) = self.opts.greeting.clone() {
            send_all(
                stream,
                Some(greeting),
                Input::Nothing,
                &mut sender,
                &Activity::new(),
            )
            .map_err(|_| {
                Error::io(
                    format!("greeting {}", self.peer),
                    std::io::ErrorKind::BrokenPipe.into(),
                )
            })?;
        }
        let mut dump = self.opts.filters(Direction::Received);
        let mut buf = vec![0u8; 64 * 1024];
        let mut reader = stream;
        loop {
            let n = reader
                .read(&mut buf)
                .map_err(|e| Error::io(format!("receiving from {}", self.peer), e))?;
            if n == 0 {
                return Ok(());
            }
            dump.dump(&buf[..n]);
            if let Ok(mut out) = self.output.lock() {
                out.write_all(&buf[..n])
                    .map_err(|e| Error::io("writing the output", e))?;
            }
        }
    }
}

fn remove(clients: &Clients, id: u64) {
    if let Ok(mut list) = clients.lock() {
        list.retain(|(other, _)| *other != id);
    }
}

/// Reads the input and writes each chunk to every connected client; a
/// client whose write fails is dropped from the list.
fn spawn_broadcaster(input: Input, clients: Clients, opts: &RelayOptions) -> Result<()> {
    let mut filters = Filters {
        hex: None,
        ..opts.filters(Direction::Sent)
    };
    let mut dump = opts.filters(Direction::Sent);
    thread::Builder::new()
        .name("sonde-broadcast".into())
        .spawn(move || {
            let mut reader: Box<dyn Read> = match input {
                Input::Fd(fd) => Box::new(std::fs::File::from(fd)),
                Input::Bytes(bytes) => Box::new(std::io::Cursor::new(bytes)),
                Input::Nothing => return,
            };
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    return;
                }
                dump.dump(&buf[..n]);
                let Ok(mut list) = clients.lock() else { return };
                list.retain(|(_, sock)| filters.write(sock.as_fd(), &buf[..n]).is_ok());
            }
        })
        .map_err(|e| Error::io("starting the input thread", e))?;
    Ok(())
}
