//! The sequencer: the one place commits enter the observer's chain,
//! whichever stream they were derived from or received on.
//!
//! It turns verified sub-DAGs into one [`WriteBatch`]: the next commits in
//! order, their blocks, the checkpoint keys they close and open, and the
//! randomness they generate ([`RandomnessStage`]). A
//! commit seen before must have the digest persisted for it; one past the
//! next is ignored (a core that is behind catches up on its own). It reads
//! the store to compare repeats and never writes: the node writes the
//! batch.

use crate::checkpoint::{load_open, summary_key, OPEN_CHECKPOINT_KEY};
use crate::delivery::DeliveredSubDag;
use crate::randomness::{RandomnessStage, RANDOMNESS_TALLY_KEY};
use crate::{ObserverError, Result};
use dagstream_store::{randomness_key, Store, WriteBatch};
use dagstream_types::randomness::encode_outputs;
use dagstream_types::{
    CheckpointBuilder, CheckpointSummary, CommitIndex, CommittedSubDag, Committee, Digest,
    OpenCheckpoint, RandomnessOutput, Round, TrustedCommit, VerifiedBlock,
};
use std::sync::Arc;

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

/// A verified commit, with the randomness its upstream sent for it (on
/// the commit stream; verified against the group key).
#[derive(Clone, Debug)]
pub struct ReceivedSubDag {
    pub sub_dag: CommittedSubDag,
    /// `None`: derived from blocks, or sent without randomness; the
    /// observer interpolates it from partials.
    pub randomness: Option<Vec<RandomnessOutput>>,
}

impl From<CommittedSubDag> for ReceivedSubDag {
    fn from(sub_dag: CommittedSubDag) -> Self {
        ReceivedSubDag {
            sub_dag,
            randomness: None,
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
    /// Why the commits after these were refused: the upstream sent
    /// randomness that its commit does not generate.
    pub refused: Option<ObserverError>,
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

/// The chain's tip, checkpoints and randomness, as persisted.
pub struct Sequencer {
    tip: Option<TrustedCommit>,
    checkpoints: CheckpointBuilder,
    last_closed: Option<CheckpointSummary>,
    randomness: RandomnessStage,
}

impl Sequencer {
    /// Continues the chain in `store`, of `committee`.
    pub fn recover(store: &dyn Store, committee: Arc<Committee>) -> Result<Self> {
        let tip = store.last_commit()?;
        let tip_index = tip.as_ref().map_or(0, |c| c.index());
        Ok(Sequencer {
            tip,
            checkpoints: CheckpointBuilder::resume(committee.epoch(), load_open(store)?),
            last_closed: None,
            randomness: RandomnessStage::recover(committee, store, tip_index)?,
        })
    }

    /// Keeps the randomness partials of a verified block.
    pub fn observe(&mut self, block: &VerifiedBlock) {
        self.randomness.observe(block);
    }

    /// Randomness partials found forged since the last call.
    pub fn take_forgeries(&mut self) -> u64 {
        self.randomness.take_forgeries()
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
    ///
    /// A commit whose randomness cannot be computed yet ends the batch (the
    /// commits after it count as ahead); one whose upstream sent the wrong
    /// rounds ends it with [`Sequenced::refused`].
    pub fn sequence<S: Into<ReceivedSubDag>>(
        &mut self,
        sub_dags: Vec<S>,
        store: &dyn Store,
    ) -> Result<Option<Sequenced>> {
        let stored_tip = self.tip_index();
        let mut tip = stored_tip;
        let mut to_persist: Vec<ReceivedSubDag> = Vec::new();
        for received in sub_dags {
            let received = received.into();
            let sub_dag = &received.sub_dag;
            let index = sub_dag.index();
            let persisted = if index <= stored_tip {
                store.read_commit(index)?.map(|c| c.digest())
            } else if index <= tip {
                // Earlier in this same call.
                to_persist
                    .get((index - stored_tip - 1) as usize)
                    .map(|c| c.sub_dag.commit.digest())
            } else {
                None
            };
            match decide(tip, index, sub_dag.commit.digest(), persisted) {
                Sequencing::Persist => {
                    tip = index;
                    to_persist.push(received);
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
        let mut sequenced = Sequenced::default();
        for received in to_persist {
            let sub_dag = received.sub_dag;
            let randomness = match self
                .randomness
                .generate(&sub_dag, received.randomness.as_deref())
            {
                Ok(Some(outputs)) => outputs,
                Ok(None) => break,
                Err(err) => {
                    sequenced.refused = Some(err);
                    break;
                }
            };
            let commit = &sub_dag.commit;
            let placed = self.checkpoints.place(
                commit.index(),
                commit.digest(),
                commit.timestamp_ms(),
                &randomness,
            );
            for block in &sub_dag.blocks {
                sequenced.batch.add_block(block);
            }
            sequenced.batch.add_commit(commit.clone());
            if !randomness.is_empty() {
                sequenced
                    .batch
                    .put_meta(randomness_key(commit.index()), encode_outputs(&randomness));
            }
            for summary in placed.closed {
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
                randomness,
            });
        }
        if sequenced.sub_dags.is_empty() {
            return Ok(sequenced.refused.is_some().then_some(sequenced));
        }
        if let Some(open) = self.checkpoints.open() {
            sequenced.batch.put_meta(OPEN_CHECKPOINT_KEY, open.encode());
        }
        sequenced
            .batch
            .put_meta(RANDOMNESS_TALLY_KEY, self.randomness.tally().encode());
        Ok(Some(sequenced))
    }
}
