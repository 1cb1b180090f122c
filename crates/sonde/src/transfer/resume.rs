//! Where a sender starts a file, from what the receiver holds of it: an
//! identical file in place is skipped, a partial file whose bytes hash
//! the same as ours is resumed after them, anything else starts afresh.
//! Pure but for the hashing of our own bytes.

use std::fs::File;

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
