//! UDP reply accounting: replies are matched by sequence number, never by
//! arrival order; loss, duplicates and late (reordered) replies are counted.
//! Pure.

/// What happened to the replies of a UDP run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeqTrack {
    seen: Vec<u64>,
    /// Requests sent.
    pub sent: u64,
    /// Distinct requests answered.
    pub received: u64,
    /// Replies for a sequence already answered.
    pub duplicates: u64,
    /// Replies that came after a later request was already sent.
    pub late: u64,
}

/// How one reply was classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// The answer to the request in flight.
    Current,
    /// A first answer to an earlier request (it was given up on).
    Late,
    /// A sequence already answered.
    Duplicate,
    /// A sequence never sent.
    Unknown,
}

impl SeqTrack {
    /// Room for `expected` sequence numbers without reallocating.
    pub fn with_capacity(expected: u64) -> Self {
        Self {
            seen: Vec::with_capacity((expected / 64 + 1) as usize),
            ..Self::default()
        }
    }

    /// Records that request `seq` (0, 1, 2, …) was sent.
    pub fn sent(&mut self, seq: u64) {
        self.sent = self.sent.max(seq + 1);
        let word = (seq / 64) as usize;
        if self.seen.len() <= word {
            self.seen.resize(word + 1, 0);
        }
    }

    /// Classifies a reply carrying `seq` while `current` is in flight.
    pub fn reply(&mut self, seq: u64, current: u64) -> Reply {
        if seq >= self.sent {
            return Reply::Unknown;
        }
        let (word, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
        let Some(slot) = self.seen.get_mut(word) else {
            return Reply::Unknown;
        };
        if *slot & bit != 0 {
            self.duplicates += 1;
            return Reply::Duplicate;
        }
        *slot |= bit;
        self.received += 1;
        if seq == current {
            Reply::Current
        } else {
            self.late += 1;
            Reply::Late
        }
    }

    /// Adds the counts of another run (another pass at the same size).
    pub fn absorb(&mut self, other: &SeqTrack) {
        self.sent += other.sent;
        self.received += other.received;
        self.duplicates += other.duplicates;
        self.late += other.late;
    }

    /// Requests never answered.
    pub fn lost(&self) -> u64 {
        self.sent - self.received
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_loss_duplicates_and_late_replies() {
        let mut t = SeqTrack::with_capacity(10);
        t.sent(0);
        assert_eq!(t.reply(0, 0), Reply::Current);
        t.sent(1); // lost: its reply never comes
        t.sent(2);
        assert_eq!(t.reply(2, 2), Reply::Current);
        assert_eq!(t.reply(2, 2), Reply::Duplicate);
        t.sent(3); // its reply arrives late, while 4 is in flight
        t.sent(4);
        assert_eq!(t.reply(3, 4), Reply::Late);
        assert_eq!(t.reply(4, 4), Reply::Current);
        assert_eq!(t.reply(99, 4), Reply::Unknown);
        assert_eq!(
            (t.sent, t.received, t.duplicates, t.late, t.lost()),
            (5, 4, 1, 1, 1)
        );
    }

    #[test]
    fn grows_past_its_capacity() {
        let mut t = SeqTrack::with_capacity(1);
        for s in 0..1000 {
            t.sent(s);
            assert_eq!(t.reply(s, s), Reply::Current);
        }
        assert_eq!(t.lost(), 0);
    }
}
