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
//!
//! It also places the epoch's end: the commit that brings end-of-publish
//! messages of 2f+1 stake into the chain is the epoch's last
//! ([`EndOfPublishTally`]). Its checkpoint closes at once, and no commit
//! follows until the node verifies the epoch's hand-off and starts the
//! next ([`Sequencer::start_epoch`]).

use crate::checkpoint::{load_open, load_summary, summary_key, OPEN_CHECKPOINT_KEY};
use crate::delivery::DeliveredSubDag;
use crate::randomness::{RandomnessStage, RANDOMNESS_TALLY_KEY};
use crate::{ObserverError, Result};
use dagstream_store::{randomness_key, Store, WriteBatch};
use dagstream_types::randomness::encode_outputs;
use dagstream_types::{
    CheckpointBuilder, CheckpointKind, CheckpointSummary, CommitIndex, CommittedSubDag, Committee,
    Digest, EndOfPublishTally, OpenCheckpoint, RandomnessOutput, RandomnessTally, Round,
    TrustedCommit, VerifiedBlock,
};
use std::sync::Arc;

/// Meta key of the current epoch's end-of-publish tally (BCS), written
/// with every batch of commits.
pub const END_OF_PUBLISH_KEY: &str = "observer/end_of_publish";

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

/// The chain's tip, checkpoints, randomness and epoch's end, as
/// persisted.
pub struct Sequencer {
    committee: Arc<Committee>,
    tip: Option<TrustedCommit>,
    checkpoints: CheckpointBuilder,
    last_closed: Option<CheckpointSummary>,
    randomness: RandomnessStage,
    end_of_publish: EndOfPublishTally,
    /// Once the epoch's last commit is sequenced, until its hand-off: the
    /// epoch's last checkpoint, which the final one must follow.
    ended: Option<CheckpointSummary>,
}

impl Sequencer {
    /// Continues the chain in `store`, in the epoch of `committee`, whose
    /// first checkpoint follows `handed_over`, the epoch before's final
    /// checkpoint (`None` in the first epoch).
    pub fn recover(
        store: &dyn Store,
        committee: Arc<Committee>,
        handed_over: Option<&CheckpointSummary>,
    ) -> Result<Self> {
        let tip = store.last_commit()?;
        let tip_index = tip.as_ref().map_or(0, |c| c.index());
        let end_of_publish = match store.read_meta(END_OF_PUBLISH_KEY)? {
            Some(bytes) => EndOfPublishTally::decode(&bytes).map_err(|err| {
                ObserverError::Store(dagstream_store::StoreError::Corrupt {
                    what: "end-of-publish tally",
                    reason: err.to_string(),
                })
            })?,
            None => EndOfPublishTally::default(),
        };
        let epoch = committee.epoch();
        let open = load_open(store)?;
        let mut ended = None;
        let checkpoints = match (open, handed_over) {
            // The epoch has no commit yet: its first checkpoint follows
            // the final one of the epoch before.
            (None, Some(last)) => CheckpointBuilder::after(epoch, last),
            (Some(open), Some(last)) if open.sequence <= last.sequence => {
                CheckpointBuilder::after(epoch, last)
            }
            (Some(open), _) => match load_summary(store, open.sequence)? {
                // The open checkpoint closed at the epoch's last commit:
                // its hand-off is awaited.
                Some(closed) => {
                    let randomness = load_summary(store, open.sequence + 1)?
                        .filter(|s| s.kind == CheckpointKind::Randomness);
                    ended = Some(randomness.unwrap_or(closed));
                    CheckpointBuilder::resume(epoch, None)
                }
                None => CheckpointBuilder::resume(epoch, Some(open)),
            },
            (None, None) => CheckpointBuilder::new(epoch),
        };
        Ok(Sequencer {
            tip,
            checkpoints,
            last_closed: ended,
            randomness: RandomnessStage::recover(committee.clone(), store, tip_index)?,
            end_of_publish,
            ended,
            committee,
        })
    }

    /// The epoch's last checkpoint, once its last commit is sequenced and
    /// until its hand-off.
    pub fn ended(&self) -> Option<&CheckpointSummary> {
        self.ended.as_ref()
    }

    pub fn committee(&self) -> &Arc<Committee> {
        &self.committee
    }

    /// Starts the epoch of `committee`, handed over by `last`, the final
    /// checkpoint of the ended one (verified by the caller), and adds what
    /// records it to `batch`: the final checkpoint, and the new epoch's
    /// empty tallies.
    pub fn start_epoch(
        &mut self,
        committee: Arc<Committee>,
        last: &CheckpointSummary,
        batch: &mut WriteBatch,
    ) {
        self.checkpoints = CheckpointBuilder::after(committee.epoch(), last);
        self.randomness = RandomnessStage::start_epoch(committee.clone(), self.tip_index());
        self.end_of_publish = EndOfPublishTally::default();
        self.ended = None;
        self.last_closed = Some(*last);
        self.committee = committee;
        batch.put_meta(summary_key(last.sequence), last.encode());
        batch.put_meta(END_OF_PUBLISH_KEY, self.end_of_publish.encode());
        batch.put_meta(RANDOMNESS_TALLY_KEY, RandomnessTally::default().encode());
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

    /// Adds the checkpoints `commit` closed to `sequenced`: their summaries
    /// to its batch, and to what the certifier gets.
    fn record_closed(
        &mut self,
        sequenced: &mut Sequenced,
        closed: Vec<CheckpointSummary>,
        commit: &TrustedCommit,
    ) {
        for summary in closed {
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
            if let Some(ended) = &self.ended {
                // Derived from the ended epoch's DAG past its end (the
                // node ignores those), or sent as if the epoch went on.
                sequenced.refused = Some(ObserverError::CommitAfterEpochEnd {
                    index: sub_dag.index(),
                    epoch: ended.epoch,
                    last: ended.last_commit,
                });
                break;
            }
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
            self.record_closed(&mut sequenced, placed.closed, commit);
            if self
                .end_of_publish
                .on_commit(&sub_dag.blocks, &self.committee)
            {
                // The epoch's last commit: its checkpoint closes now. It
                // stays the stored open checkpoint, whose stored summary
                // tells recovery that the epoch ended there.
                if let Some(open) = self.checkpoints.open() {
                    sequenced.batch.put_meta(OPEN_CHECKPOINT_KEY, open.encode());
                }
                let closed = self.checkpoints.end_epoch();
                self.record_closed(&mut sequenced, closed, commit);
                self.ended = self.last_closed;
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
        sequenced
            .batch
            .put_meta(END_OF_PUBLISH_KEY, self.end_of_publish.encode());
        Ok(Some(sequenced))
    }
}
