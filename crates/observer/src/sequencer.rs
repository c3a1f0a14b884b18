//! The sequencer: the one place commits enter the observer's chain,
//! whichever stream they were derived from or received on.
//!
//! It turns verified sub-DAGs into one [`WriteBatch`]: the next commits in
//! order, their blocks, and the checkpoint keys they close and open. A
//! commit seen before must have the digest persisted for it; one past the
//! next is ignored (a core that is behind catches up on its own). It reads
//! the store to compare repeats and never writes: the node writes the
//! batch.

use crate::checkpoint::{load_open, summary_key, OPEN_CHECKPOINT_KEY};
use crate::delivery::DeliveredSubDag;
use crate::{ObserverError, Result};
use dagstream_store::{Store, WriteBatch};
use dagstream_types::{
    CheckpointBuilder, CheckpointSummary, CommitIndex, CommittedSubDag, Digest, Epoch,
    OpenCheckpoint, Round, TrustedCommit,
};

/// What the sequencer does with a commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sequencing {
    /// The next commit: persist it.
    Persist,
    /// Seen before, with the same digest: nothing to do.
    AlreadyPersisted,
    /// Seen before with another digest: an integrity error.
    Conflict { persisted: Digest },
    /// Past the next one: a core that is behind catches up on its own, so
    /// it is ignored.
    Ahead,
}

/// The sequencer's rule: `persisted` is the digest stored for `index` when
/// `index <= tip` (`None` if it was pruned).
pub fn decide(
    tip: CommitIndex,
    index: CommitIndex,
    digest: Digest,
    persisted: Option<Digest>,
) -> Sequencing {
    if index == tip + 1 {
        Sequencing::Persist
    } else if index > tip {
        Sequencing::Ahead
    } else {
        match persisted {
            Some(persisted) if persisted != digest => Sequencing::Conflict { persisted },
            _ => Sequencing::AlreadyPersisted,
        }
    }
}

/// Commits to persist, in one atomic write.
#[derive(Debug, Default)]
pub struct Sequenced {
    /// The commits, their blocks, and the checkpoint keys.
    pub batch: WriteBatch,
    /// The same commits with their checkpoints, for the consumer.
    pub sub_dags: Vec<DeliveredSubDag>,
    /// The checkpoints these commits closed, in order.
    pub closed: Vec<ClosedCheckpoint>,
}

/// A checkpoint the sequencer closed, and the commit that closed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClosedCheckpoint {
    pub summary: CheckpointSummary,
    /// The round of the closing commit's leader.
    pub leader_round: Round,
    /// The closing commit's timestamp.
    pub timestamp_ms: u64,
}

/// The chain's tip and checkpoints, as persisted.
#[derive(Clone, Debug)]
pub struct Sequencer {
    tip: Option<TrustedCommit>,
    checkpoints: CheckpointBuilder,
    last_closed: Option<CheckpointSummary>,
}

impl Sequencer {
    /// Continues the chain in `store`, of a committee of `epoch`.
    pub fn recover(store: &dyn Store, epoch: Epoch) -> Result<Self> {
        Ok(Sequencer {
            tip: store.last_commit()?,
            checkpoints: CheckpointBuilder::resume(epoch, load_open(store)?),
            last_closed: None,
        })
    }

    /// The highest persisted commit.
    pub fn tip(&self) -> Option<&TrustedCommit> {
        self.tip.as_ref()
    }

    pub fn tip_index(&self) -> CommitIndex {
        self.tip.as_ref().map_or(0, |c| c.index())
    }

    pub fn open_checkpoint(&self) -> Option<&OpenCheckpoint> {
        self.checkpoints.open()
    }

    /// The newest checkpoint closed since this sequencer started.
    pub fn last_closed_checkpoint(&self) -> Option<&CheckpointSummary> {
        self.last_closed.as_ref()
    }

    /// The commit that a commit-stream batch starting at `first` must chain
    /// to (`None`: it starts the chain). A batch that leaves a gap after
    /// the tip is [`ObserverError::BrokenChain`].
    pub fn chain_before(
        &self,
        first: CommitIndex,
        store: &dyn Store,
    ) -> Result<Option<TrustedCommit>> {
        let tip = self.tip_index();
        match first.checked_sub(1) {
            Some(0) | None => Ok(None),
            Some(index) if index == tip => Ok(self.tip.clone()),
            Some(index) if index < tip => Ok(store.read_commit(index)?),
            Some(_) => Err(ObserverError::BrokenChain {
                expected_after: tip,
                got: first,
            }),
        }
    }

    /// Sequences verified sub-DAGs. Returns the batch to write, if any
    /// commit is new; the sequencer then counts it as persisted, so the
    /// caller must write it before sequencing again (a failed write is
    /// fatal for the observer).
    pub fn sequence(
        &mut self,
        sub_dags: Vec<CommittedSubDag>,
        store: &dyn Store,
    ) -> Result<Option<Sequenced>> {
        let stored_tip = self.tip_index();
        let mut tip = stored_tip;
        let mut to_persist: Vec<CommittedSubDag> = Vec::new();
        for sub_dag in sub_dags {
            let index = sub_dag.index();
            let persisted = if index <= stored_tip {
                store.read_commit(index)?.map(|c| c.digest())
            } else if index <= tip {
                // Earlier in this same call.
                to_persist
                    .get((index - stored_tip - 1) as usize)
                    .map(|c| c.commit.digest())
            } else {
                None
            };
            match decide(tip, index, sub_dag.commit.digest(), persisted) {
                Sequencing::Persist => {
                    tip = index;
                    to_persist.push(sub_dag);
                }
                Sequencing::AlreadyPersisted | Sequencing::Ahead => {}
                Sequencing::Conflict { persisted } => {
                    return Err(ObserverError::Conflict {
                        index,
                        persisted,
                        received: sub_dag.commit.digest(),
                    })
                }
            }
        }
        if to_persist.is_empty() {
            return Ok(None);
        }
        let mut sequenced = Sequenced::default();
        for sub_dag in to_persist {
            let commit = &sub_dag.commit;
            let placed =
                self.checkpoints
                    .place(commit.index(), commit.digest(), commit.timestamp_ms());
            for block in &sub_dag.blocks {
                sequenced.batch.add_block(block);
            }
            sequenced.batch.add_commit(commit.clone());
            if let Some(summary) = placed.closed {
                sequenced
                    .batch
                    .put_meta(summary_key(summary.sequence), summary.encode());
                sequenced.closed.push(ClosedCheckpoint {
                    summary,
                    leader_round: commit.leader().round,
                    timestamp_ms: commit.timestamp_ms(),
                });
                self.last_closed = Some(summary);
            }
            self.tip = Some(commit.clone());
            sequenced.sub_dags.push(DeliveredSubDag {
                certified_checkpoint: None,
                sub_dag,
                checkpoint: placed.sequence,
            });
        }
        if let Some(open) = self.checkpoints.open() {
            sequenced.batch.put_meta(OPEN_CHECKPOINT_KEY, open.encode());
        }
        Ok(Some(sequenced))
    }
}
