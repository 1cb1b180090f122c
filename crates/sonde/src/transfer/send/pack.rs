//! Small files packed together: those that start afresh, whose answers
//! are already here, go as one `Pack` frame and one chunk of data, so a
//! tree of many small files costs a frame per pack, not a round of frames
//! per file.

use std::collections::VecDeque;

use super::super::ahead::Ready;
use super::super::plan::Entry;
use super::super::resume::Held;
use super::super::wire::{MAX_CHUNK, MAX_PACK, Message};
use super::super::{FileReport, Outcome, TransferError, hex};
use super::{Offered, Sender};

impl Sender<'_> {
    /// Small files that start afresh, sent as one frame and one chunk.
    pub(super) fn pack(
        &mut self,
        first: &Entry,
        ready: Ready,
        offered: &mut VecDeque<Offered>,
    ) -> Result<(), TransferError> {
        let mut members = vec![(first, ready)];
        let mut bytes = members[0].1.data.len();
        while members.len() < MAX_PACK {
            let next = offered.front().and_then(|o| o.ready.as_ref());
            if next.is_none_or(|r| bytes + r.data.len() > MAX_CHUNK) {
                break;
            }
            // Only answers already here: the pack never waits for one.
            let Ok(word) = self.words.try_recv() else {
                break;
            };
            let Some(head) = offered.pop_front() else {
                break;
            };
            let ready = head.ready.unwrap_or_default();
            match word? {
                Message::Have {
                    len,
                    blake3,
                    complete,
                    overwrite,
                } => {
                    let held = Held {
                        len: len as u64,
                        hash: blake3,
                        complete,
                        overwrite,
                    };
                    if packable(&held, &ready) {
                        bytes += ready.data.len();
                        members.push((head.entry, ready));
                    } else {
                        self.send_pack(&members)?;
                        return self.file(head.entry, &held, Some(ready));
                    }
                }
                Message::Decline { reason } => self.refused(head.entry, reason, 0),
                other => {
                    // A batch or a note: dealt with, and the file waits
                    // for its answer in the ordinary way.
                    offered.push_front(Offered {
                        entry: head.entry,
                        ready: Some(ready),
                    });
                    self.aside(other)?;
                }
            }
        }
        self.send_pack(&members)
    }

    fn send_pack(&mut self, members: &[(&Entry, Ready)]) -> Result<(), TransferError> {
        let sizes = members.iter().map(|(_, r)| r.data.len() as u64).collect();
        let blake3 = members.iter().map(|(_, r)| hex(&r.hash)).collect();
        self.conn.queue(&Message::Pack { sizes, blake3 });
        let total: usize = members.iter().map(|(_, r)| r.data.len()).sum();
        self.conn.queue_bytes(&(total as u32).to_be_bytes());
        for (entry, ready) in members {
            self.conn.queue_bytes(&ready.data);
            self.progress.add(ready.data.len() as u64);
            self.settling.push_back(FileReport {
                path: entry.path.clone(),
                size: ready.data.len() as u64,
                resumed_from: 0,
                moved: ready.data.len() as u64,
                outcome: Outcome::Verified,
                blake3: hex(&ready.hash),
                reason: None,
            });
        }
        self.report.moved += total as u64;
        Ok(())
    }
}

/// Whether a small file goes in a pack: read well, and nothing of it held.
pub(super) fn packable(held: &Held, ready: &Ready) -> bool {
    ready.error.is_none() && held.len == 0 && !held.complete
}
