//! Checkpoints: consecutive commits grouped by time, identically on every
//! observer of a chain.
//!
//! Checkpoint 0 starts at commit 1. A new checkpoint starts at the first
//! commit whose timestamp is at least `min_checkpoint_interval_ms` after the
//! first commit of the current one; the current one is then closed. The
//! grouping depends on commit timestamps only, so it is deterministic.
//!
//! # Stored form
//! The sequencer writes, in the same atomic batch as the commits:
//! - under [`OPEN_CHECKPOINT_KEY`], the open checkpoint (24 bytes: sequence,
//!   first commit, first timestamp, each a little-endian u64);
//! - under [`Checkpoint::key`], each closed checkpoint's commit range (16
//!   bytes: first and last commit).
//!
//! [`CheckpointLookup`] answers which checkpoint holds a persisted commit
//! from these keys alone, without replaying the chain.

use crate::{ObserverError, Result};
use dagstream_store::{Store, StoreError};
use dagstream_types::CommitIndex;

/// Meta key of the open checkpoint.
pub const OPEN_CHECKPOINT_KEY: &str = "observer/checkpoint";

/// The open checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenCheckpoint {
    pub sequence: u64,
    pub first_commit: CommitIndex,
    pub first_timestamp_ms: u64,
}

/// A closed checkpoint: its commit range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub sequence: u64,
    pub first_commit: CommitIndex,
    pub last_commit: CommitIndex,
}

impl Checkpoint {
    /// Meta key of closed checkpoint `sequence`: zero-padded, so that keys
    /// sort by sequence.
    pub fn key(sequence: u64) -> String {
        format!("checkpoint/{sequence:020}")
    }

    /// 16 bytes: first and last commit (LE u64 each).
    pub fn encode(&self) -> Vec<u8> {
        [self.first_commit, self.last_commit]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect()
    }

    pub fn decode(sequence: u64, bytes: &[u8]) -> Option<Checkpoint> {
        let (first, last) = bytes.split_at_checked(8)?;
        Some(Checkpoint {
            sequence,
            first_commit: u64::from_le_bytes(first.try_into().ok()?),
            last_commit: u64::from_le_bytes(last.try_into().ok()?),
        })
    }

    /// Closed checkpoint `sequence` as stored.
    pub fn load(store: &dyn Store, sequence: u64) -> Result<Option<Checkpoint>> {
        let Some(bytes) = store.read_meta(&Checkpoint::key(sequence))? else {
            return Ok(None);
        };
        Checkpoint::decode(sequence, &bytes)
            .map(Some)
            .ok_or_else(|| corrupt(format!("checkpoint {sequence} is {} bytes", bytes.len())))
    }

    fn contains(&self, index: CommitIndex) -> bool {
        (self.first_commit..=self.last_commit).contains(&index)
    }
}

fn corrupt(reason: String) -> ObserverError {
    ObserverError::Store(StoreError::Corrupt {
        what: "checkpoint",
        reason,
    })
}

/// Assigns commits to checkpoints, one commit at a time, in order.
#[derive(Clone, Debug)]
pub struct Checkpointer {
    interval_ms: u64,
    open: Option<OpenCheckpoint>,
}

impl Checkpointer {
    /// Continues after `open` (`None`: before commit 1).
    pub fn new(interval_ms: u64, open: Option<OpenCheckpoint>) -> Self {
        Checkpointer { interval_ms, open }
    }

    pub fn open(&self) -> Option<OpenCheckpoint> {
        self.open
    }

    /// Places the next commit. Returns its checkpoint's sequence number and
    /// the checkpoint this commit closed, if any.
    pub fn place(&mut self, index: CommitIndex, timestamp_ms: u64) -> (u64, Option<Checkpoint>) {
        match self.open {
            Some(open) if timestamp_ms < open.first_timestamp_ms + self.interval_ms => {
                (open.sequence, None)
            }
            Some(open) => {
                let closed = Checkpoint {
                    sequence: open.sequence,
                    first_commit: open.first_commit,
                    last_commit: index - 1,
                };
                let next = OpenCheckpoint {
                    sequence: open.sequence + 1,
                    first_commit: index,
                    first_timestamp_ms: timestamp_ms,
                };
                self.open = Some(next);
                (next.sequence, Some(closed))
            }
            None => {
                self.open = Some(OpenCheckpoint {
                    sequence: 0,
                    first_commit: index,
                    first_timestamp_ms: timestamp_ms,
                });
                (0, None)
            }
        }
    }

    /// 24 bytes: sequence, first commit, first timestamp (LE u64 each).
    pub fn encode(open: &OpenCheckpoint) -> Vec<u8> {
        [open.sequence, open.first_commit, open.first_timestamp_ms]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect()
    }

    pub fn decode(bytes: &[u8]) -> Option<OpenCheckpoint> {
        if bytes.len() != 24 {
            return None;
        }
        let word =
            |i: usize| u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        Some(OpenCheckpoint {
            sequence: word(0),
            first_commit: word(1),
            first_timestamp_ms: word(2),
        })
    }

    /// The open checkpoint as stored (`None`: no commit yet).
    pub fn load_open(store: &dyn Store) -> Result<Option<OpenCheckpoint>> {
        let Some(bytes) = store.read_meta(OPEN_CHECKPOINT_KEY)? else {
            return Ok(None);
        };
        Checkpointer::decode(&bytes)
            .map(Some)
            .ok_or_else(|| corrupt(format!("the open checkpoint is {} bytes", bytes.len())))
    }
}

/// Which checkpoint holds a persisted commit, from the stored checkpoint
/// keys. Remembers the last closed checkpoint it found, so that reading
/// commits in order costs one store read per checkpoint.
#[derive(Clone, Debug, Default)]
pub struct CheckpointLookup {
    last: Option<Checkpoint>,
}

impl CheckpointLookup {
    /// The sequence number of the checkpoint that holds persisted commit
    /// `index`.
    pub fn sequence_of(&mut self, store: &dyn Store, index: CommitIndex) -> Result<u64> {
        if let Some(last) = self.last.filter(|c| c.contains(index)) {
            return Ok(last.sequence);
        }
        let open = Checkpointer::load_open(store)?
            .ok_or_else(|| corrupt(format!("commit {index} is persisted in no checkpoint")))?;
        if index >= open.first_commit {
            return Ok(open.sequence);
        }
        // In order, the next checkpoint is the one after the last found.
        if let Some(next) = self.last.filter(|c| c.last_commit + 1 == index) {
            if let Some(found) = Checkpoint::load(store, next.sequence + 1)? {
                if found.contains(index) {
                    self.last = Some(found);
                    return Ok(found.sequence);
                }
            }
        }
        // Otherwise a binary search over the closed checkpoints, whose
        // ranges are consecutive and ascending.
        let (mut low, mut high) = (0, open.sequence);
        while low < high {
            let middle = low + (high - low) / 2;
            let checkpoint = Checkpoint::load(store, middle)?
                .ok_or_else(|| corrupt(format!("closed checkpoint {middle} is missing")))?;
            if index < checkpoint.first_commit {
                high = middle;
            } else if index > checkpoint.last_commit {
                low = middle + 1;
            } else {
                self.last = Some(checkpoint);
                return Ok(middle);
            }
        }
        Err(corrupt(format!(
            "commit {index} is in no stored checkpoint"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_group_by_interval_from_each_checkpoint_start() {
        let mut checkpointer = Checkpointer::new(200, None);
        let timestamps = [1_000, 1_075, 1_150, 1_199, 1_200, 1_390, 1_401, 5_000];
        let placed: Vec<_> = timestamps
            .iter()
            .enumerate()
            .map(|(i, ts)| checkpointer.place(i as u64 + 1, *ts))
            .collect();
        let sequences: Vec<u64> = placed.iter().map(|p| p.0).collect();
        assert_eq!(sequences, vec![0, 0, 0, 0, 1, 1, 2, 3]);
        let closed: Vec<Checkpoint> = placed.iter().filter_map(|p| p.1).collect();
        assert_eq!(
            closed,
            vec![
                Checkpoint {
                    sequence: 0,
                    first_commit: 1,
                    last_commit: 4
                },
                Checkpoint {
                    sequence: 1,
                    first_commit: 5,
                    last_commit: 6
                },
                Checkpoint {
                    sequence: 2,
                    first_commit: 7,
                    last_commit: 7
                },
            ]
        );
    }

    #[test]
    fn resuming_from_the_persisted_open_checkpoint_gives_the_same_grouping() {
        let timestamps: Vec<u64> = (0..50).map(|i| 1_000 + i * 37).collect();
        let mut whole = Checkpointer::new(200, None);
        let expected: Vec<_> = timestamps
            .iter()
            .enumerate()
            .map(|(i, ts)| whole.place(i as u64 + 1, *ts))
            .collect();
        let mut first = Checkpointer::new(200, None);
        let mut got: Vec<_> = timestamps[..20]
            .iter()
            .enumerate()
            .map(|(i, ts)| first.place(i as u64 + 1, *ts))
            .collect();
        let saved = Checkpointer::encode(&first.open().unwrap());
        let mut resumed = Checkpointer::new(200, Checkpointer::decode(&saved));
        got.extend(
            timestamps[20..]
                .iter()
                .enumerate()
                .map(|(i, ts)| resumed.place(i as u64 + 21, *ts)),
        );
        assert_eq!(got, expected);
        assert_eq!(Checkpointer::decode(&[0; 23]), None);
    }
}
