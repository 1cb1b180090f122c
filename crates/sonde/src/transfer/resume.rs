//! Where a sender starts a file, from what the receiver holds of it: an
//! identical file in place is skipped, a partial file whose bytes hash
//! the same as ours is resumed after them, anything else starts afresh.
//! Also what a sender proves it holds (the hash of its first bytes) and
//! which of the receiver's lengths may be weighed against that proof.
//! Pure but for the hashing of our own bytes.

use std::fs::File;
use std::path::Path;

use super::wire::proof_len;
use super::{TransferError, hex};

/// What the receiver said about one announced file.
pub(crate) struct Held {
    pub(crate) len: u64,
    pub(crate) hash: Option<String>,
    pub(crate) complete: bool,
    pub(crate) overwrite: bool,
}

/// Where the data starts, and the hash of what comes before it.
pub(crate) enum Resume {
    Skip(blake3::Hash),
    From(u64, Box<blake3::Hasher>),
}

/// Decides from what the receiver holds: an identical file in place is
/// skipped, a partial one whose bytes hash the same as our prefix is
/// resumed, anything else starts from zero. `prefix(len)` hashes our
/// first `len` bytes (`None`: we have fewer).
pub(crate) fn resume_point(
    held: &Held,
    size: u64,
    prefix: impl FnOnce(u64) -> Result<Option<blake3::Hasher>, TransferError>,
) -> Result<Resume, TransferError> {
    let fresh = Resume::From(0, Box::default());
    let Some(held_hash) = &held.hash else {
        return Ok(fresh);
    };
    // An empty partial file holds nothing to resume from; an empty file in
    // place is the same as an empty one sent.
    if (held.len == 0 && !held.complete) || held.len > size || (held.complete && held.len != size) {
        return Ok(fresh);
    }
    let Some(hasher) = prefix(held.len)? else {
        return Ok(fresh);
    };
    if hex(&hasher.finalize()) != *held_hash {
        return Ok(fresh);
    }
    Ok(if held.complete {
        Resume::Skip(hasher.finalize())
    } else {
        Resume::From(held.len, Box::new(hasher))
    })
}

/// Whether a receiver's file of `len` bytes may be shown to a sender of
/// a `size`-byte file, before any hash: a file in place (`complete`) of
/// the same length, or a partial one that covers the sender's proof and
/// is no longer than its file.
pub(crate) fn fits(len: u64, complete: bool, size: u64) -> bool {
    if complete {
        len == size
    } else {
        (proof_len(size)..=size).contains(&len)
    }
}

/// The sender's proof for a file: the BLAKE3 of its first
/// [`proof_len`] bytes, from `data` when they are all there.
pub(crate) fn head_of(data: &[u8], size: u64) -> Option<String> {
    let head = data.get(..usize::try_from(proof_len(size)).ok()?)?;
    Some(hex(&blake3::hash(head)))
}

/// The proof of the file at `source`, read (`None` when it is shorter
/// now or cannot be read: the file then shows nothing, and its own read
/// reports the error).
pub(crate) fn head_of_file(source: &Path, size: u64) -> Option<String> {
    let file = File::open(source).ok()?;
    let head = proof_len(size);
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(std::io::Read::take(file, head)).ok()?;
    (hasher.count() == head).then(|| hex(&hasher.finalize()))
}

pub(crate) fn prefix_hash(data: &[u8], len: u64) -> Option<blake3::Hasher> {
    let part = data.get(..usize::try_from(len).ok()?)?;
    let mut hasher = blake3::Hasher::new();
    hasher.update(part);
    Some(hasher)
}

/// The hasher of a just-opened file's first `len` bytes (`None` when it is
/// shorter now).
pub(crate) fn hash_prefix(
    file: &File,
    len: u64,
    name: &str,
) -> Result<Option<blake3::Hasher>, TransferError> {
    let mut hasher = blake3::Hasher::new();
    hasher
        .update_reader(std::io::Read::take(file, len))
        .map_err(|e| TransferError::io(format!("reading {name}"), e))?;
    Ok((hasher.count() == len).then_some(hasher))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(data: &[u8], complete: bool) -> Held {
        Held {
            len: data.len() as u64,
            hash: Some(hex(&blake3::hash(data))),
            complete,
            overwrite: false,
        }
    }

    fn start(held: &Held, ours: &[u8]) -> Resume {
        resume_point(held, ours.len() as u64, |len| Ok(prefix_hash(ours, len))).expect("pure")
    }

    #[test]
    fn an_identical_file_is_skipped_even_empty() {
        assert!(matches!(
            start(&held(b"abc", true), b"abc"),
            Resume::Skip(_)
        ));
        assert!(matches!(start(&held(b"", true), b""), Resume::Skip(_)));
    }

    #[test]
    fn a_partial_file_is_resumed_after_what_matches() {
        assert!(matches!(
            start(&held(b"ab", false), b"abc"),
            Resume::From(2, _)
        ));
        assert!(matches!(
            start(&held(b"", false), b"abc"),
            Resume::From(0, _)
        ));
        assert!(matches!(
            start(&held(b"xb", false), b"abc"),
            Resume::From(0, _)
        ));
    }

    #[test]
    fn only_a_length_that_fits_the_proof_is_shown() {
        let mib = super::super::wire::PROOF_LEN;
        assert!(fits(10, true, 10));
        assert!(!fits(9, true, 10));
        assert!(fits(0, true, 0));
        // A partial file must cover the sender's proof and not pass its end.
        assert!(fits(10, false, 10));
        assert!(!fits(9, false, 10));
        assert!(fits(mib, false, 5 * mib));
        assert!(fits(3 * mib, false, 5 * mib));
        assert!(!fits(mib - 1, false, 5 * mib));
        assert!(!fits(6 * mib, false, 5 * mib));
    }

    #[test]
    fn the_proof_covers_a_small_file_whole_and_a_large_ones_first_mib() {
        let mib = super::super::wire::PROOF_LEN as usize;
        assert_eq!(head_of(b"abc", 3), Some(hex(&blake3::hash(b"abc"))));
        assert_eq!(head_of(b"ab", 3), None);
        let big = vec![7u8; mib + 10];
        assert_eq!(
            head_of(&big, big.len() as u64),
            Some(hex(&blake3::hash(&big[..mib])))
        );
    }

    #[test]
    fn a_different_file_starts_afresh() {
        assert!(matches!(
            start(&held(b"abd", true), b"abc"),
            Resume::From(0, _)
        ));
        assert!(matches!(
            start(&held(b"ab", true), b"abc"),
            Resume::From(0, _)
        ));
        assert!(matches!(
            start(&held(b"abcd", false), b"abc"),
            Resume::From(0, _)
        ));
    }
}
