//! The node's write path: commits sequenced, checkpoints certified, one
//! atomic write in flight, and what it made durable queued for the
//! consumer.

use super::Node;
use crate::delivery::DeliveredSubDag;
use crate::sequencer::ReceivedSubDag;
use crate::status::ObserverStatus;
use crate::{ObserverError, Result};
use bytes::Bytes;
use dagstream_types::VerifiedBlock;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// Where commits to sequence come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Origin {
    /// Derived here from the block stream, whose blocks were observed.
    Derived,
    /// Received on the commit stream; `behind`: the upstream's tip lies
    /// far past them (catching up, [`crate::certify::CATCH_UP_LAG_COMMITS`]).
    Received { behind: bool },
}

impl Node {
    /// Sequences commits, certifies the checkpoints they close (with the
    /// signatures in their blocks, if they came on the commit stream),
    /// and starts writing the new commits and certificates in
    /// one atomic write (which also announces the commits to relayed
    /// subscribers), once the previous write is durable. New commits are
    /// sequenced and certified while the previous write is in flight, so
    /// that the next write can start as soon as it is durable; a batch
    /// that repeats commits waits for it first.
    ///
    /// Returns why the upstream's commits past those sequenced were
    /// refused, if they were.
    ///
    /// `certifiers`: the blocks that certified the last of `sub_dags` (a
    /// commit-stream batch). If that commit ends its epoch, they are
    /// written with it: they are the only blocks that vote for it (no
    /// later commit holds them), and subscribers of this observer need them
    /// to certify it.
    pub(super) async fn sequence<S: Into<ReceivedSubDag>>(
        &mut self,
        sub_dags: Vec<S>,
        verified_at: Instant,
        origin: Origin,
        certifiers: &[Bytes],
    ) -> Result<Option<ObserverError>> {
        let sub_dags: Vec<ReceivedSubDag> = sub_dags.into_iter().map(Into::into).collect();
        self.stamps
            .record(sub_dags.iter().map(|s| s.sub_dag.index()), verified_at);
        // The sequencer compares repeats with the store (it counts what it
        // sequenced as written): they must be there. Commits past the tip
        // are compared with nothing stored.
        let repeats = sub_dags
            .first()
            .is_some_and(|first| first.sub_dag.index() <= self.tip_index());
        if repeats {
            self.settle().await?;
        }
        let sequenced = self.sequencer.sequence(sub_dags, self.store.as_ref())?;
        self.metrics
            .randomness_forged_partials
            .inc_by(self.sequencer.take_forgeries());
        if sequenced.is_none() && !self.certifier.has_certified() {
            return Ok(None);
        }
        let mut sequenced = sequenced.unwrap_or_default();
        let refused = sequenced.refused.take();
        let ends_epoch = self.sequencer.ended().is_some_and(|ended| {
            sequenced.sub_dags.last().map(|d| d.index()) == Some(ended.last_commit)
        });
        if ends_epoch {
            for bytes in certifiers {
                // Verified with the batch: decoding cannot fail.
                if let Ok(block) = VerifiedBlock::decode_trusted(bytes.clone()) {
                    self.keep_epoch_vote(block);
                }
            }
        }
        for block in std::mem::take(&mut self.epoch_votes) {
            sequenced.batch.add_block(&block);
        }
        self.metrics.randomness_rounds.inc_by(
            sequenced
                .sub_dags
                .iter()
                .map(|d| d.randomness.len() as u64)
                .sum(),
        );
        let outcomes = self.certifier.on_sequenced(
            &sequenced,
            matches!(origin, Origin::Received { .. }),
            origin == Origin::Received { behind: true },
        );
        self.metrics.signatures(&outcomes);
        let certified = self.certifier.take_certified(&mut sequenced.batch);
        let highest = self.certifier.highest_certified();
        // The certificates are durable with these commits.
        for delivered in &mut sequenced.sub_dags {
            delivered.certified_checkpoint = highest;
        }
        self.metrics.certified(&certified, highest);
        self.status.highest_certified_checkpoint = highest;
        self.status.checkpoint = self.sequencer.open_checkpoint().map(|o| o.sequence);
        if !sequenced.batch.is_empty() {
            // One write at a time, in sequence order; nothing awaits
            // between the settle and the start, so the store never lags
            // what `persisted` says.
            self.settle().await?;
            self.persister.start(sequenced);
        }
        Ok(refused)
    }

    /// Makes everything sequenced and certified durable, before the node
    /// stops.
    pub(super) async fn finish(&mut self) -> Result<()> {
        self.sequence(
            Vec::<ReceivedSubDag>::new(),
            Instant::now(),
            Origin::Derived,
            &[],
        )
        .await?;
        self.settle().await
    }

    /// Waits until everything sequenced is durable.
    pub(super) async fn settle(&mut self) -> Result<()> {
        let written = self.persister.finish().await?;
        self.on_persisted(written);
        Ok(())
    }

    /// Hands the next persisted commit to the consumer.
    pub(super) fn deliver(&mut self, permit: mpsc::Permit<'_, DeliveredSubDag>) -> Result<()> {
        let next = self.delivery.take_next(self.store.as_ref())?;
        self.measure_delivery(&next);
        permit.send(next);
        Ok(())
    }

    /// Observes the latency of a commit handed to the consumer.
    fn measure_delivery(&mut self, next: &DeliveredSubDag) {
        if let Some(verified_at) = self.stamps.take(next.index()) {
            let waited = verified_at.elapsed().as_secs_f64();
            self.metrics.verify_to_deliver.observe(waited);
        }
        let now_ms = dagstream_types::unix_time_ms();
        let lag_ms = now_ms.saturating_sub(next.sub_dag.commit.timestamp_ms());
        self.metrics
            .commit_lag_seconds
            .observe(lag_ms as f64 / 1_000.0);
    }

    /// [`Self::on_persisted`], outside a session (whose evaluations show
    /// the store's progress): the status shows it at once.
    pub(super) fn on_persisted_shown(
        &mut self,
        written: Vec<DeliveredSubDag>,
        status: &watch::Sender<ObserverStatus>,
    ) {
        self.on_persisted(written);
        self.status.local_highest_commit = self.persisted();
        let _ = status.send(self.status.clone());
    }

    /// Queues commits that a write made durable for the consumer.
    pub(super) fn on_persisted(&mut self, written: Vec<DeliveredSubDag>) {
        let Some(last) = written.last().map(|c| c.index()) else {
            return;
        };
        self.metrics.commits_persisted.inc_by(written.len() as u64);
        self.metrics.highest_commit.set(last as i64);
        self.delivery.push(written);
    }
}
