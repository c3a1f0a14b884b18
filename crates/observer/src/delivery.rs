//! Delivery: hands the consumer every persisted commit after the one it
//! resumes from, in order, each once.
//!
//! Newly persisted commits wait in a bounded queue; a commit that is no
//! longer in it (a consumer resuming from further back) is read from the
//! store, with its checkpoint found from the stored checkpoint keys. No
//! network I/O: the node owns the consumer's channel.

use crate::checkpoint::{load_highest_certified, CheckpointLookup};
use crate::{ObserverError, Result};
use dagstream_store::{randomness_key, Store, StoreError};
use dagstream_types::randomness::decode_outputs;
use dagstream_types::{CommitIndex, CommittedSubDag, Epoch, RandomnessOutput, VerifiedBlock};
use std::collections::VecDeque;

/// What the consumer receives: a persisted commit with its blocks, the
/// checkpoint it belongs to, and how far the chain is certified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveredSubDag {
    pub sub_dag: CommittedSubDag,
    /// The sequence number of the checkpoint that holds this commit.
    pub checkpoint: u64,
    /// The highest checkpoint certified, durably, by the time this commit
    /// was (`None`: none yet). It depends on when signatures arrived, so
    /// two runs may differ; it never goes back.
    pub certified_checkpoint: Option<u64>,
    /// The randomness rounds this commit generated, with their signatures
    /// (verified); empty for most commits of a chain without randomness.
    pub randomness: Vec<RandomnessOutput>,
}

impl DeliveredSubDag {
    pub fn index(&self) -> CommitIndex {
        self.sub_dag.index()
    }

    /// The epoch of the committee that made the commit: its leader's.
    pub fn epoch(&self) -> Epoch {
        self.sub_dag
            .blocks
            .last()
            .map_or(0, |leader| leader.epoch())
    }
}

/// The consumer's position and the commits persisted for it.
#[derive(Debug)]
pub struct Delivery {
    /// The highest commit handed to the consumer.
    delivered: CommitIndex,
    /// Persisted commits not yet delivered, in index order, at most
    /// `capacity`.
    recent: VecDeque<DeliveredSubDag>,
    capacity: usize,
    checkpoints: CheckpointLookup,
    /// The certified checkpoint handed over last.
    certified: Option<u64>,
}

impl Delivery {
    /// A consumer that has processed every commit up to `resume_after`,
    /// which may be past the highest persisted commit: delivery then starts
    /// once the store passes it. At most `capacity` persisted commits wait
    /// for it in memory.
    pub fn new(resume_after: CommitIndex, capacity: usize) -> Self {
        Delivery {
            // A consumer may be ahead of the store (an observer
            // re-syncing a repaired store): commits up to where it is are
            // persisted but not delivered again.
            delivered: resume_after,
            recent: VecDeque::with_capacity(capacity),
            capacity,
            checkpoints: CheckpointLookup::default(),
            certified: None,
        }
    }

    /// The highest commit handed to the consumer.
    pub fn delivered(&self) -> CommitIndex {
        self.delivered
    }

    /// Whether a persisted commit waits for the consumer.
    pub fn pending(&self, tip: CommitIndex) -> bool {
        self.delivered < tip
    }

    /// Whether fewer than `capacity` persisted commits wait: the node
    /// takes more input only then, so a slow consumer slows it down.
    pub fn has_room(&self, tip: CommitIndex) -> bool {
        tip.saturating_sub(self.delivered) < self.capacity as u64
    }

    /// Queues newly persisted commits, which follow every queued one.
    pub fn push(&mut self, persisted: impl IntoIterator<Item = DeliveredSubDag>) {
        self.recent.extend(persisted);
        while self.recent.len() > self.capacity {
            self.recent.pop_front();
        }
    }

    /// The commit after the last delivered one, which must be persisted,
    /// counted as delivered.
    pub fn take_next(&mut self, store: &dyn Store) -> Result<DeliveredSubDag> {
        let index = self.delivered + 1;
        while self.recent.front().is_some_and(|c| c.index() < index) {
            self.recent.pop_front();
        }
        let mut next = match self.recent.front() {
            Some(front) if front.index() == index => self.recent.pop_front().expect("front"),
            _ => DeliveredSubDag {
                // What the store holds now: at least what it held when
                // the commit was persisted.
                certified_checkpoint: load_highest_certified(store)?,
                sub_dag: load_sub_dag(store, index)?,
                checkpoint: self.checkpoints.sequence_of(store, index)?,
                randomness: load_randomness(store, index)?,
            },
        };
        next.certified_checkpoint = next.certified_checkpoint.max(self.certified);
        self.certified = next.certified_checkpoint;
        self.delivered = index;
        Ok(next)
    }
}

/// The randomness rounds a persisted commit generated.
pub fn load_randomness(store: &dyn Store, index: CommitIndex) -> Result<Vec<RandomnessOutput>> {
    let Some(bytes) = store.read_meta(&randomness_key(index))? else {
        return Ok(Vec::new());
    };
    decode_outputs(&bytes).map_err(|err| {
        ObserverError::Store(StoreError::Corrupt {
            what: "persisted randomness",
            reason: format!("commit {index}: {err}"),
        })
    })
}

/// A persisted commit with its blocks.
pub fn load_sub_dag(store: &dyn Store, index: CommitIndex) -> Result<CommittedSubDag> {
    let corrupt = |reason: String| {
        ObserverError::Store(StoreError::Corrupt {
            what: "persisted commit",
            reason,
        })
    };
    let commit = store
        .read_commit(index)?
        .ok_or_else(|| corrupt(format!("commit {index} is missing")))?;
    let blocks = commit
        .commit()
        .blocks
        .iter()
        .map(|reference| {
            let bytes = store.read_block(reference)?.ok_or_else(|| {
                corrupt(format!("block {reference:?} of commit {index} is missing"))
            })?;
            VerifiedBlock::decode_trusted(bytes).map_err(|err| corrupt(err.to_string()))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(CommittedSubDag { commit, blocks })
}
