//! The node's receive path: blocks verified and derived (a hand-off
//! among them applied in its place), commit batches verified against the
//! persisted chain.

use super::write::Origin;
use super::{faulty, Node, SessionEnd};
use crate::certify::CATCH_UP_LAG_COMMITS;
use crate::sequencer::ReceivedSubDag;
use crate::upstream::{Inbound, Received};
use crate::verify::{verify_blocks, verify_commit_batch};
use crate::{ObserverError, Result};
use bytes::Bytes;
use dagstream_proto::v1::CommitStreamResponse;
use dagstream_publisher::Offload;
use dagstream_types::{BlockLimits, Committee, Digest, TrustedCommit, VerifiedBlock};
use std::sync::Arc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

impl Node {
    /// Verifies received blocks, derives the commits they decide, and
    /// sequences them; a hand-off among them is applied in its place, so
    /// that the blocks after it are verified by the next committee. Drains
    /// `received`.
    pub(super) async fn on_blocks(
        &mut self,
        received: &mut Vec<Inbound<Received>>,
    ) -> Result<Option<SessionEnd>> {
        let mut blocks = Vec::with_capacity(received.len());
        let mut arrivals = Vec::with_capacity(received.len());
        let mut ended = None;
        for item in received.drain(..) {
            match item {
                Inbound::Item(_) if self.blocks_ahead => self.metrics.future_epoch_blocks.inc(),
                Inbound::Item(block) => {
                    blocks.push(block.bytes);
                    arrivals.push(block.at);
                }
                Inbound::HandOff(hand_off) => {
                    let before = std::mem::take(&mut blocks);
                    let arrived = std::mem::take(&mut arrivals);
                    if let Some(end) = self.verify_and_derive(before, arrived).await? {
                        return Ok(Some(end));
                    }
                    if let Some(end) = self.on_hand_off(hand_off, true).await? {
                        return Ok(Some(end));
                    }
                }
                Inbound::Ended(reason) => ended = Some(SessionEnd::Failed(reason)),
            }
        }
        if let Some(end) = self.verify_and_derive(blocks, arrivals).await? {
            return Ok(Some(end));
        }
        Ok(ended)
    }

    /// Verifies blocks of the current epoch, derives the commits they
    /// decide, and sequences them.
    async fn verify_and_derive(
        &mut self,
        blocks: Vec<Bytes>,
        arrivals: Vec<Instant>,
    ) -> Result<Option<SessionEnd>> {
        // Blocks of an epoch this observer has left (a block stream behind
        // the commit stream that handed over) are settled: dropped. Blocks
        // of an epoch it has not reached are dropped too, never verified
        // under a committee that is not theirs: the rest of a block stream
        // that ran past a hand-off, still in flight when the hand-off came
        // through the commit stream and restarted it. (An upstream whose
        // block stream skips a hand-off then stalls the chain, and the
        // stall ends its session.)
        let current = self.epochs.current().epoch();
        let (blocks, arrivals): (Vec<Bytes>, Vec<Instant>) = blocks
            .into_iter()
            .zip(arrivals)
            .filter(|(bytes, _)| match VerifiedBlock::peek_epoch(bytes) {
                Some(epoch) if epoch < current => {
                    self.metrics.stale_epoch_blocks.inc();
                    false
                }
                Some(epoch) if epoch > current => {
                    self.metrics.future_epoch_blocks.inc();
                    false
                }
                _ => true,
            })
            .unzip();
        if blocks.is_empty() {
            return Ok(None);
        }
        let verified = match verify_blocks(
            self.epochs.current(),
            self.config.block_limits,
            blocks,
            self.config.offload,
        )
        .await
        {
            Ok(verified) => verified,
            Err(source) => return Ok(Some(SessionEnd::Faulty(ObserverError::BadBlock { source }))),
        };
        let verified_at = Instant::now();
        self.first_block_of_epoch();
        self.metrics.blocks_verified.inc_by(verified.len() as u64);
        for arrived in arrivals {
            let waited = verified_at.saturating_duration_since(arrived);
            self.metrics.receive_to_verify.observe(waited.as_secs_f64());
        }
        for block in &verified {
            let outcomes = self.certifier.observe(block);
            self.metrics.signatures(&outcomes);
            self.sequencer.observe(block);
        }
        if self.verified.receiver_count() > 0 {
            for block in &verified {
                // A receiver that lags loses the oldest: not an error here.
                let _ = self.verified.send(block.clone());
            }
        }
        let commits = self.deriver.add_blocks(verified.clone())?;
        // Derived commits carry no randomness to refuse, and those the
        // ended epoch's DAG decides past its last commit are not the
        // chain's.
        self.sequence(commits, verified_at, Origin::Derived, &[])
            .await?;
        for block in verified {
            self.keep_epoch_vote(block);
        }
        Ok(None)
    }

    /// Verifies a commit-stream batch against the persisted chain and
    /// sequences it.
    pub(super) async fn on_commits(
        &mut self,
        response: CommitStreamResponse,
    ) -> Result<Option<SessionEnd>> {
        match self.verify_commits(response, None).await? {
            Verified::Batch(batch) => self.sequence_commits(batch).await,
            Verified::Nothing => Ok(None),
            Verified::End(end) => Ok(Some(end)),
        }
    }

    /// Verifies a commit-stream batch against the persisted chain: the
    /// hand-offs it starts with applied first, then its commits rebuilt
    /// after the commit before them, under their epoch's committee (off
    /// the runtime). `ahead` is the batch's verification if it was started
    /// early; its result counts only if it was verified against the very
    /// commit and committee that the batch chains to now.
    pub(super) async fn verify_commits(
        &mut self,
        response: CommitStreamResponse,
        ahead: Option<Ahead>,
    ) -> Result<Verified> {
        let Some(first) = response.commits.first().map(|c| c.commit_index) else {
            return Ok(Verified::Nothing);
        };
        for hand_off in &response.epoch_changes {
            if let Some(end) = self.on_hand_off(hand_off.clone(), false).await? {
                return Ok(Verified::End(end));
            }
        }
        if first <= self.tip_index() {
            // A batch that starts at or below the tip chains to a commit
            // read from the store: it must be there.
            self.settle().await?;
        }
        let previous = match self.sequencer.chain_before(first, self.store.as_ref()) {
            Ok(previous) => previous,
            Err(err) => return Verified::faulty(err),
        };
        let last = response.commits.last().map_or(first, |c| c.commit_index);
        let origin = Origin::Received {
            behind: response.highest_commit_index > last.saturating_add(CATCH_UP_LAG_COMMITS),
        };
        // A batch is of one epoch: that of its first commit, handed over
        // to before it if it starts one.
        let certifiers = response.certifier_blocks.clone();
        let committee = match self.epochs.committee(self.epochs.of_commit(first)) {
            Some(committee) => committee.clone(),
            None => self.epochs.current().clone(),
        };
        let ahead = ahead.filter(|ahead| {
            ahead.previous == previous.as_ref().map(TrustedCommit::digest)
                && Arc::ptr_eq(&ahead.committee, &committee)
        });
        let verifying = match ahead {
            Some(ahead) => ahead.verifying,
            None => {
                Ahead::start(
                    self.config.offload,
                    committee.clone(),
                    self.config.block_limits,
                    previous,
                    response,
                )
                .verifying
            }
        };
        let verified = verifying.await.expect("commit verification does not panic");
        match verified {
            Ok(sub_dags) => Ok(Verified::Batch(VerifiedBatch {
                sub_dags,
                origin,
                certifiers,
                committee,
            })),
            Err(err) => Verified::faulty(err),
        }
    }

    /// Sequences a verified batch (and writes it, behind the write before).
    pub(super) async fn sequence_commits(
        &mut self,
        batch: VerifiedBatch,
    ) -> Result<Option<SessionEnd>> {
        match self
            .sequence(
                batch.sub_dags,
                Instant::now(),
                batch.origin,
                &batch.certifiers,
            )
            .await?
        {
            Some(refused) => faulty(refused),
            None => Ok(None),
        }
    }
}

/// What verifying a commit batch came to.
pub(super) enum Verified {
    Batch(VerifiedBatch),
    /// An empty batch.
    Nothing,
    /// The session ends (a hand-off ended it, or the batch is faulty).
    End(SessionEnd),
}

impl Verified {
    fn faulty(err: ObserverError) -> Result<Verified> {
        Ok(faulty(err)?.map_or(Verified::Nothing, Verified::End))
    }
}

/// A verified commit batch, ready to sequence.
pub(super) struct VerifiedBatch {
    pub(super) sub_dags: Vec<ReceivedSubDag>,
    origin: Origin,
    certifiers: Vec<Bytes>,
    /// The committee it was verified under.
    pub(super) committee: Arc<Committee>,
}

/// A commit batch's verification, running off the runtime, with what it
/// is verified against: the commit before the batch (by digest) and its
/// epoch's committee.
pub(super) struct Ahead {
    previous: Option<Digest>,
    committee: Arc<Committee>,
    verifying: JoinHandle<Result<Vec<ReceivedSubDag>>>,
}

impl Ahead {
    /// Starts verifying `response` after `previous` under `committee`.
    pub(super) fn start(
        offload: Offload,
        committee: Arc<Committee>,
        limits: BlockLimits,
        previous: Option<TrustedCommit>,
        response: CommitStreamResponse,
    ) -> Ahead {
        let digest = previous.as_ref().map(TrustedCommit::digest);
        let verifier = committee.clone();
        let verifying = offload
            .spawn(move || verify_commit_batch(&verifier, &limits, previous.as_ref(), &response));
        Ahead {
            previous: digest,
            committee,
            verifying,
        }
    }
}
