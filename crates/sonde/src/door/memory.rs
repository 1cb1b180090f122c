//! Memory given back after a crowd leaves. glibc's allocator keeps what
//! a flood's connections and threads used in its arenas long after they
//! are gone (a perf server kept 139 MB of a 163 MB peak; chat 43 MB), so
//! when a door's connections fall from a crowd to a few, it asks the
//! allocator to return its free pages (`malloc_trim`), and once more when
//! the last of them leaves (chat's 20 members that never read kept 21 MB
//! of queued lines in the five still open at the first trim; 7.8 MB after
//! the second). And a server's
//! threads share two arenas instead of one each (`M_ARENA_MAX`): each
//! perf test's threads otherwise left an arena of freed buffers behind
//! that no trim returned (8 MB after six tests, 1.7 MB with two arenas;
//! the servers' threads allocate outside their hot loops, so sharing
//! costs nothing measurable). And the threshold above which a block is
//! mapped on its own stays fixed at 128 KiB (`M_MMAP_THRESHOLD`): glibc
//! otherwise raises it each time such a block is freed, so after one perf
//! test's 1 MiB buffers the next test's buffers came from the arenas, and
//! a slowloris load's small allocations, landing between them, kept 8 MB
//! of them resident for good (8.3 MB after, 0.6 MB with the threshold
//! fixed). The decision is pure; the calls are rare.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Blocks at least this large are mapped on their own and unmapped when
/// freed: glibc's starting value, kept from rising.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 128 * 1024;

/// Fewer connections than this at the peak are no crowd: nothing to give.
const CROWD: u64 = 16;

/// The most connections since memory was last given back, and whether a
/// crowd has come since the door was last empty.
#[derive(Debug, Default)]
pub(super) struct Trim {
    peak: AtomicU64,
    crowd: AtomicBool,
}

impl Trim {
    /// Notes `active` connections open.
    pub(super) fn saw(&self, active: u64) {
        self.peak.fetch_max(active, Ordering::Relaxed);
        if active >= CROWD {
            self.crowd.store(true, Ordering::Relaxed);
        }
    }

    /// With `active` connections left: gives memory back when most of a
    /// crowd has gone, and again when the last of it has (what the few
    /// still open held, a chat's queued lines, is free only then).
    pub(super) fn left(&self, active: u64) {
        let peak = self.peak.load(Ordering::Relaxed);
        let most_gone = should_trim(peak, active)
            && self
                .peak
                .compare_exchange(peak, active, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok();
        let all_gone = active == 0 && self.crowd.swap(false, Ordering::AcqRel);
        if most_gone || all_gone {
            give_back();
        }
    }
}

/// Whether a fall from `peak` connections to `active` is a crowd leaving:
/// a peak of at least [`CROWD`], three quarters of it gone.
pub(super) fn should_trim(peak: u64, active: u64) -> bool {
    peak >= CROWD && active.saturating_mul(4) <= peak
}

/// Asks the allocator to return its free pages now.
pub fn give_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointer and only releases free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Makes the allocator share two arenas among all threads and keeps its
/// mapping threshold fixed (set once, at the first door).
pub(super) fn few_arenas() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: mallopt takes plain integers and only tunes the allocator.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crowd_leaving_gives_memory_back_once() {
        assert!(!should_trim(10, 0), "no crowd");
        assert!(should_trim(100, 25));
        assert!(!should_trim(100, 26));
        assert!(should_trim(16, 0));
        let trim = Trim::default();
        trim.saw(100);
        trim.left(20);
        // The peak is now what is left: no second trim for the same crowd
        // until its last connection leaves.
        assert_eq!(trim.peak.load(Ordering::Relaxed), 20);
        assert!(trim.crowd.load(Ordering::Relaxed));
        trim.left(0);
        assert!(
            !trim.crowd.load(Ordering::Relaxed),
            "the empty door trimmed"
        );
        trim.saw(3);
        assert!(!trim.crowd.load(Ordering::Relaxed), "a few are no crowd");
    }
}
