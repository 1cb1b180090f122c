//! The code phrase's handshake, before a word of the transfer: SPAKE2
//! (Ed25519, the `spake2` crate) over the code, keys derived with
//! HKDF-SHA256 from its secret and the transcript (both messages), and
//! each side's key confirmed with an HMAC before any file data moves.
//!
//! On the wire, sender first: `sondepak`, version (u16), its 33-byte
//! message; the receiver answers the same with its message and its
//! confirmation (32 bytes); the sender checks it and sends its own. A
//! wrong code shows as a confirmation that does not verify (the sender
//! closes without confirming): one guess per connection, and the receiver
//! counts them.

use std::io::{Read, Write};

use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use spake2::{Ed25519Group, Identity, Password, Spake2};

/// What opens a code-phrase connection.
pub(crate) const MAGIC: [u8; 8] = *b"sondepak";
const VERSION: u16 = 1;
/// A SPAKE2 message (Ed25519: a side byte and a point).
const MESSAGE_LEN: usize = 33;
/// The sender's opening: magic, version, message.
pub(crate) const OPENING_LEN: usize = MAGIC.len() + 2 + MESSAGE_LEN;
const CONFIRM_LEN: usize = 32;

/// Both ends' identity in SPAKE2's symmetric mode.
const IDENTITY: &[u8] = b"sonde send/receive";

/// The keys of one connection, seen from one side.
pub(crate) struct Keys {
    /// For what this side sends.
    pub(crate) outbound: [u8; 32],
    /// For what it receives.
    pub(crate) inbound: [u8; 32],
}

/// Why the handshake failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The other side's confirmation did not verify, or it went without
    /// confirming: the codes differ.
    Mismatch,
    /// The peer is a receiver started without a code (it answered with
    /// the plain transfer's hello).
    PlainReceiver,
    /// Not the code handshake, or broken.
    Malformed(String),
    /// The connection failed.
    Io(std::io::Error),
}

impl From<std::io::Error> for Failure {
    fn from(err: std::io::Error) -> Self {
        if err.kind() == std::io::ErrorKind::UnexpectedEof {
            // The peer closed instead of confirming: it found our
            // confirmation wrong.
            return Failure::Mismatch;
        }
        Failure::Io(err)
    }
}

/// Everything derived from the SPAKE2 secret, in one place (pure).
struct Derived {
    to_receiver: [u8; 32],
    to_sender: [u8; 32],
    sender_confirm: [u8; 32],
    receiver_confirm: [u8; 32],
    transcript: Vec<u8>,
}

fn derive(secret: &[u8], sender_message: &[u8], receiver_message: &[u8]) -> Derived {
    let mut transcript = b"sonde code v1".to_vec();
    transcript.extend_from_slice(sender_message);
    transcript.extend_from_slice(receiver_message);
    let hk = Hkdf::<Sha256>::new(Some(&transcript), secret);
    let expand = |info: &[u8]| {
        let mut out = [0u8; 32];
        // 32 bytes is far below HKDF-SHA256's limit: expand cannot fail.
        let _ = hk.expand(info, &mut out);
        out
    };
    Derived {
        to_receiver: expand(b"sonde key to receiver"),
        to_sender: expand(b"sonde key to sender"),
        sender_confirm: expand(b"sonde confirm sender"),
        receiver_confirm: expand(b"sonde confirm receiver"),
        transcript,
    }
}

fn tag(key: &[u8; 32], transcript: &[u8]) -> [u8; CONFIRM_LEN] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(transcript);
    mac.finalize().into_bytes().into()
}

fn verify(key: &[u8; 32], transcript: &[u8], theirs: &[u8]) -> bool {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(transcript);
    mac.verify_slice(theirs).is_ok()
}

fn opening(message: &[u8]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&VERSION.to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// The SPAKE2 message of an opening, once its magic and version check.
fn their_message(opening: &[u8]) -> Result<&[u8], Failure> {
    if opening.len() != OPENING_LEN || opening[..MAGIC.len()] != MAGIC {
        return Err(Failure::Malformed(
            "it did not open with sonde's code handshake".into(),
        ));
    }
    let version = u16::from_be_bytes([opening[8], opening[9]]);
    if version != VERSION {
        return Err(Failure::Malformed(format!(
            "code handshake version {version}, this sonde speaks {VERSION}"
        )));
    }
    Ok(&opening[10..])
}

fn start(code: &str) -> (Spake2<Ed25519Group>, Vec<u8>) {
    Spake2::<Ed25519Group>::start_symmetric(
        &Password::new(code.as_bytes()),
        &Identity::new(IDENTITY),
    )
}

fn finish(state: Spake2<Ed25519Group>, theirs: &[u8]) -> Result<Vec<u8>, Failure> {
    state
        .finish(theirs)
        .map_err(|e| Failure::Malformed(format!("a bad code handshake message ({e:?})")))
}

/// The sender's side, on a connected stream.
pub(crate) fn sender(stream: &mut (impl Read + Write), code: &str) -> Result<Keys, Failure> {
    let (state, mine) = start(code);
    stream.write_all(&opening(&mine))?;
    let mut reply = [0u8; OPENING_LEN + CONFIRM_LEN];
    let head = &mut reply[..super::wire::MAGIC.len()];
    stream
        .read_exact(head)
        .map_err(|e| match Failure::from(e) {
            Failure::Mismatch => Failure::Malformed("it closed without answering".into()),
            other => other,
        })?;
    if *head == super::wire::MAGIC {
        return Err(Failure::PlainReceiver);
    }
    stream.read_exact(&mut reply[super::wire::MAGIC.len()..])?;
    let theirs = their_message(&reply[..OPENING_LEN])?;
    let derived = derive(&finish(state, theirs)?, &mine, theirs);
    if !verify(
        &derived.receiver_confirm,
        &derived.transcript,
        &reply[OPENING_LEN..],
    ) {
        return Err(Failure::Mismatch);
    }
    stream.write_all(&tag(&derived.sender_confirm, &derived.transcript))?;
    Ok(Keys {
        outbound: derived.to_receiver,
        inbound: derived.to_sender,
    })
}

/// The receiver's side, the sender's opening already read.
pub(crate) fn receiver(
    stream: &mut (impl Read + Write),
    code: &str,
    their_opening: &[u8],
) -> Result<Keys, Failure> {
    let theirs = their_message(their_opening)?;
    let (state, mine) = start(code);
    let derived = derive(&finish(state, theirs)?, theirs, &mine);
    let mut reply = opening(&mine);
    reply.extend_from_slice(&tag(&derived.receiver_confirm, &derived.transcript));
    stream.write_all(&reply)?;
    let mut confirm = [0u8; CONFIRM_LEN];
    stream.read_exact(&mut confirm)?;
    if !verify(&derived.sender_confirm, &derived.transcript, &confirm) {
        return Err(Failure::Mismatch);
    }
    Ok(Keys {
        outbound: derived.to_sender,
        inbound: derived.to_receiver,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    fn exchange(sent: &str, expected: &str) -> (Result<Keys, Failure>, Result<Keys, Failure>) {
        let (mut a, mut b) = UnixStream::pair().expect("pair");
        let code = expected.to_string();
        let receiving = std::thread::spawn(move || {
            let mut opening = [0u8; OPENING_LEN];
            b.read_exact(&mut opening).expect("opening");
            let got = receiver(&mut b, &code, &opening);
            drop(b);
            got
        });
        let sent = sender(&mut a, sent);
        drop(a);
        (sent, receiving.join().expect("receiver thread"))
    }

    #[test]
    fn the_same_code_gives_matching_keys() {
        let (s, r) = exchange("7-acorn-actor-sunset", "7-acorn-actor-sunset");
        let (s, r) = (s.expect("sender"), r.expect("receiver"));
        assert_eq!(s.outbound, r.inbound);
        assert_eq!(s.inbound, r.outbound);
        assert_ne!(s.outbound, s.inbound);
    }

    #[test]
    fn a_different_code_fails_on_both_ends() {
        let (s, r) = exchange("7-acorn-actor-sunset", "8-acorn-actor-sunset");
        assert!(matches!(s, Err(Failure::Mismatch)), "{:?}", s.err());
        assert!(matches!(r, Err(Failure::Mismatch)), "{:?}", r.err());
    }

    #[test]
    fn a_stranger_opening_is_malformed() {
        let mut garbage = [7u8; OPENING_LEN];
        assert!(matches!(
            their_message(&garbage),
            Err(Failure::Malformed(_))
        ));
        garbage[..8].copy_from_slice(&MAGIC);
        garbage[8..10].copy_from_slice(&9u16.to_be_bytes());
        assert!(matches!(
            their_message(&garbage),
            Err(Failure::Malformed(_))
        ));
    }
}
