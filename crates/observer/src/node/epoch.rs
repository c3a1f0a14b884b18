//! The node's epoch changes: a hand-off verified with the committee the
//! observer trusts, recorded atomically with the final checkpoint, then
//! the switch of every stage to the next committee.
//!
//! A hand-off comes in a response of either stream, before anything of
//! the epoch it leads to. It counts only once the observer's own chain has
//! reached the ended epoch's last commit: the final checkpoint must follow
//! the observer's own last checkpoint of that epoch. A block stream that
//! runs ahead of the chain (catching up, in Overlap) hands over too early:
//! its blocks are dropped until the commit stream brings the chain there,
//! then the block stream starts again from the new epoch.

use super::{faulty, Node, SessionEnd};
use crate::config::Waypoint;
use crate::sequencer::Sequenced;
use crate::state_machine::{Command, Mode};
use crate::upstream::Connection;
use crate::{ObserverError, Result};
use bytes::Bytes;
use dagstream_publisher::epochs::Epochs;
use dagstream_store::{epoch_change_key, WriteBatch};
use dagstream_types::{CheckpointSummary, Committee, Epoch, EpochChange, VerifiedBlock};
use std::sync::Arc;
use tokio::time::Instant;
use tracing::info;

/// The final checkpoint of the epoch before `epoch`, from its stored
/// hand-off (`None` in the chain's first epoch).
pub(crate) fn final_checkpoint(epochs: &Epochs, epoch: Epoch) -> Result<Option<CheckpointSummary>> {
    let Some(hand_off) = epoch.checked_sub(1).and_then(|e| epochs.hand_off(e)) else {
        return Ok(None);
    };
    Ok(Some(decode_stored(&hand_off.bytes)?.certificate.summary))
}

/// The hand-offs a store holds must match the operator's waypoints: a
/// store that followed another chain past one is refused at start.
pub(crate) fn check_waypoints(epochs: &Epochs, waypoints: &[Waypoint]) -> Result<()> {
    for waypoint in waypoints {
        let Some(hand_off) = epochs.hand_off(waypoint.epoch) else {
            continue;
        };
        let change = decode_stored(&hand_off.bytes)?;
        let got = change.certificate.summary.digest();
        if got != waypoint.checkpoint_digest {
            return Err(ObserverError::WaypointMismatch {
                epoch: waypoint.epoch,
                pinned: waypoint.checkpoint_digest,
                got,
            });
        }
    }
    Ok(())
}

fn decode_stored(bytes: &[u8]) -> Result<EpochChange> {
    EpochChange::decode(bytes).map_err(|source| {
        ObserverError::Store(dagstream_store::StoreError::Corrupt {
            what: "hand-off",
            reason: source.to_string(),
        })
    })
}

impl Node {
    /// A hand-off received on the block stream (`from_blocks`) or the
    /// commit stream.
    pub(super) async fn on_hand_off(
        &mut self,
        bytes: Bytes,
        from_blocks: bool,
    ) -> Result<Option<SessionEnd>> {
        let current = self.epochs.current().epoch();
        let change = match EpochChange::decode(&bytes) {
            Ok(change) => change,
            Err(source) => {
                return faulty(ObserverError::BadHandOff {
                    epoch: current,
                    source,
                })
            }
        };
        let epoch = change.epoch();
        if epoch < current {
            // Handed over already, through the other stream.
            return Ok(None);
        }
        if let Err(err) = self.check_waypoint(&change) {
            return faulty(err);
        }
        let Some(last) = self.sequencer.ended().copied().filter(|_| epoch == current) else {
            if from_blocks {
                self.blocks_ahead = true;
                return Ok(None);
            }
            return faulty(ObserverError::UnexpectedHandOff { epoch, current });
        };
        let next = match change.verify(self.epochs.current(), &last) {
            Ok(next) => Arc::new(next),
            Err(source) => return faulty(ObserverError::BadHandOff { epoch, source }),
        };
        self.start_epoch(change, bytes, next).await?;
        Ok(None)
    }

    /// A hand-off must match the operator's waypoint for its epoch, if
    /// there is one.
    pub(super) fn check_waypoint(&self, change: &EpochChange) -> Result<()> {
        let epoch = change.epoch();
        let got = change.certificate.summary.digest();
        match self.config.waypoints.iter().find(|w| w.epoch == epoch) {
            Some(pinned) if pinned.checkpoint_digest != got => {
                Err(ObserverError::WaypointMismatch {
                    epoch,
                    pinned: pinned.checkpoint_digest,
                    got,
                })
            }
            _ => Ok(()),
        }
    }

    /// Records the verified hand-off `change` (its bytes `bytes`) in one
    /// write after everything sequenced before it, and switches every
    /// stage to `next`.
    async fn start_epoch(
        &mut self,
        change: EpochChange,
        bytes: Bytes,
        next: Arc<Committee>,
    ) -> Result<()> {
        let ended = change.epoch();
        let last_commit = self
            .sequencer
            .tip()
            .cloned()
            .expect("an ended epoch has commits");
        // One write in flight: the commits before the hand-off first.
        self.settle().await?;
        let mut batch = WriteBatch::new();
        for block in std::mem::take(&mut self.epoch_votes) {
            batch.add_block(&block);
        }
        batch.put_meta(epoch_change_key(ended), bytes.clone());
        let final_checkpoint = change.certificate.summary;
        self.sequencer
            .start_epoch(next.clone(), &final_checkpoint, &mut batch);
        self.certifier
            .start_epoch(next.clone(), change.certificate.clone());
        let certified = self.certifier.take_certified(&mut batch);
        let highest = self.certifier.highest_certified();
        self.metrics.certified(&certified, highest);
        self.status.highest_certified_checkpoint = highest;
        self.deriver.start_epoch(next.clone(), last_commit);
        self.epochs.push_validated(bytes, Some(next.clone()))?;
        self.source.expect_epoch(next.clone());
        self.persister.start(Sequenced {
            batch,
            ..Sequenced::default()
        });
        info!(
            epoch = next.epoch(),
            authorities = next.size(),
            genesis_round = next.genesis_round(),
            final_checkpoint = final_checkpoint.sequence,
            "handed over to the next committee"
        );
        self.status.epoch = next.epoch();
        self.metrics.epoch.set(next.epoch() as i64);
        self.handed_over_at = Some(Instant::now());
        if std::mem::take(&mut self.blocks_ahead) {
            self.restart_blocks = true;
        }
        Ok(())
    }

    /// Starts the block stream again at the new epoch's positions, if a
    /// hand-off left it behind and the state machine has it running.
    pub(super) async fn restart_blocks(
        &mut self,
        connection: &Connection,
    ) -> Result<Option<SessionEnd>> {
        if !std::mem::take(&mut self.restart_blocks) {
            return Ok(None);
        }
        let streaming = matches!(self.machine.mode(), Mode::BlocksOnly | Mode::Overlap)
            && !self.machine.paused();
        if !streaming {
            return Ok(None);
        }
        self.apply(vec![Command::StartBlocks], connection).await
    }

    /// Keeps `block` if it votes for the ended epoch's last commit: no later
    /// commit of the chain holds such blocks, and a relay's subscribers need
    /// them to certify that commit. One per author, so at most the
    /// committee.
    pub(super) fn keep_epoch_vote(&mut self, block: VerifiedBlock) {
        let Some(last) = self.sequencer.ended().and(self.sequencer.tip()) else {
            return;
        };
        let votes = block.commit_votes().contains(&last.reference());
        if votes
            && block.epoch() == self.epochs.current().epoch()
            && self
                .epoch_votes
                .iter()
                .all(|b| b.author() != block.author())
        {
            self.epoch_votes.push(block);
        }
    }

    /// Observes the time from the hand-off to the first verified block of
    /// the next epoch.
    pub(super) fn first_block_of_epoch(&mut self) {
        if let Some(at) = self.handed_over_at.take() {
            self.metrics
                .epoch_change_seconds
                .observe(at.elapsed().as_secs_f64());
        }
    }
}
