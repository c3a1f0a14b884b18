//! The observer's Prometheus metrics, registered on a registry passed in.

use crate::certify::{Certified, Outcome};
use crate::Mode;
use dagstream_archive::ArchiveMetrics;
use dagstream_types::CommitIndex;
use prometheus::{
    exponential_buckets, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry,
};
use std::collections::VecDeque;
use tokio::time::Instant;

#[derive(Clone)]
pub struct ObserverMetrics {
    /// Highest persisted commit.
    pub highest_commit: IntGauge,
    /// The active upstream's latest highest commit.
    pub upstream_highest_commit: IntGauge,
    /// Commits behind the active upstream.
    pub commit_lag: IntGauge,
    /// 0 BlocksOnly, 1 CommitsOnly, 2 Overlap.
    pub mode: IntGauge,
    /// 1 while the block stream is paused.
    pub paused: IntGauge,
    /// Upstream sessions opened.
    pub connections: IntCounter,
    /// Connection attempts that failed: unreachable, refused, TLS, or a
    /// token the upstream does not accept.
    pub connect_failures: IntCounter,
    /// Sessions ended, by reason (`failed`, `faulty`, `degraded`).
    pub session_ends: IntCounterVec,
    /// Unverifiable data received, by error name.
    pub faults: IntCounterVec,
    /// Commits persisted.
    pub commits_persisted: IntCounter,
    /// Blocks verified from the block stream.
    pub blocks_verified: IntCounter,
    /// From a block's arrival to the end of its verification.
    pub receive_to_verify: Histogram,
    /// From the verification of what completed a commit (the block that
    /// decided it, or its commit batch) to the commit's hand-over to the
    /// consumer: sequencing, the durable write and the consumer's pace.
    pub verify_to_deliver: Histogram,
    /// From a commit's timestamp (its leader's, by the wall clock of the
    /// authority that proposed it) to its hand-over to the consumer, by
    /// this node's wall clock: the end-to-end lag, clock skew included.
    pub commit_lag_seconds: Histogram,
    /// Highest certified checkpoint.
    pub highest_certified_checkpoint: IntGauge,
    /// Checkpoint signatures found in blocks, by outcome (`counted`,
    /// `early`, `ignored`, `other_summary`, `forged`).
    pub checkpoint_signatures: IntCounterVec,
    /// Rounds from a checkpoint's closing commit's decision to the block
    /// that completed its certificate.
    pub certification_rounds: Histogram,
    /// Block-time milliseconds from a checkpoint's closing commit to the
    /// block that completed its certificate, in seconds.
    pub certification_seconds: Histogram,
    /// Randomness rounds generated, interpolated or received.
    pub randomness_rounds: IntCounter,
    /// Randomness partials found forged while interpolating.
    pub randomness_forged_partials: IntCounter,
    /// The epoch of the committee the observer trusts now.
    pub epoch: IntGauge,
    /// From a hand-off's verification to the next epoch's first verified
    /// block.
    pub epoch_change_seconds: Histogram,
    /// Block-stream blocks dropped because the stream ran past an epoch's
    /// end that the observer's chain had not reached.
    pub future_epoch_blocks: IntCounter,
    /// Block-stream blocks of an epoch the observer had left, dropped.
    pub stale_epoch_blocks: IntCounter,
    /// The history archive's upload and bootstrap.
    pub archive: ArchiveMetrics,
}

impl ObserverMetrics {
    /// Metrics registered on `registry`.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let mut metrics = Self::unregistered()?;
        metrics.archive = ArchiveMetrics::new(registry)?;
        registry.register(Box::new(metrics.highest_commit.clone()))?;
        registry.register(Box::new(metrics.upstream_highest_commit.clone()))?;
        registry.register(Box::new(metrics.commit_lag.clone()))?;
        registry.register(Box::new(metrics.mode.clone()))?;
        registry.register(Box::new(metrics.paused.clone()))?;
        registry.register(Box::new(metrics.connections.clone()))?;
        registry.register(Box::new(metrics.connect_failures.clone()))?;
        registry.register(Box::new(metrics.session_ends.clone()))?;
        registry.register(Box::new(metrics.faults.clone()))?;
        registry.register(Box::new(metrics.commits_persisted.clone()))?;
        registry.register(Box::new(metrics.blocks_verified.clone()))?;
        registry.register(Box::new(metrics.receive_to_verify.clone()))?;
        registry.register(Box::new(metrics.verify_to_deliver.clone()))?;
        registry.register(Box::new(metrics.commit_lag_seconds.clone()))?;
        registry.register(Box::new(metrics.highest_certified_checkpoint.clone()))?;
        registry.register(Box::new(metrics.checkpoint_signatures.clone()))?;
        registry.register(Box::new(metrics.certification_rounds.clone()))?;
        registry.register(Box::new(metrics.certification_seconds.clone()))?;
        registry.register(Box::new(metrics.randomness_rounds.clone()))?;
        registry.register(Box::new(metrics.randomness_forged_partials.clone()))?;
        registry.register(Box::new(metrics.epoch.clone()))?;
        registry.register(Box::new(metrics.epoch_change_seconds.clone()))?;
        registry.register(Box::new(metrics.future_epoch_blocks.clone()))?;
        registry.register(Box::new(metrics.stale_epoch_blocks.clone()))?;
        Ok(metrics)
    }

    /// Metrics that nothing exports: for observers run as a library without
    /// a registry.
    pub fn unregistered() -> prometheus::Result<Self> {
        let metrics = ObserverMetrics {
            highest_commit: IntGauge::new(
                "dagstream_observer_highest_commit",
                "Highest persisted commit",
            )?,
            upstream_highest_commit: IntGauge::new(
                "dagstream_observer_upstream_highest_commit",
                "The active upstream's highest commit",
            )?,
            commit_lag: IntGauge::new(
                "dagstream_observer_commit_lag",
                "Commits behind the active upstream",
            )?,
            mode: IntGauge::new(
                "dagstream_observer_mode",
                "0 BlocksOnly, 1 CommitsOnly, 2 Overlap",
            )?,
            paused: IntGauge::new(
                "dagstream_observer_paused",
                "1 while the block stream is paused",
            )?,
            connections: IntCounter::new(
                "dagstream_observer_connections_total",
                "Upstream sessions opened",
            )?,
            connect_failures: IntCounter::new(
                "dagstream_observer_connect_failures_total",
                "Upstream connection attempts that failed (unreachable, refused, TLS, auth)",
            )?,
            session_ends: IntCounterVec::new(
                Opts::new(
                    "dagstream_observer_session_ends_total",
                    "Upstream sessions ended",
                ),
                &["reason"],
            )?,
            faults: IntCounterVec::new(
                Opts::new(
                    "dagstream_observer_faults_total",
                    "Unverifiable data received",
                ),
                &["error"],
            )?,
            commits_persisted: IntCounter::new(
                "dagstream_observer_commits_persisted_total",
                "Commits persisted",
            )?,
            blocks_verified: IntCounter::new(
                "dagstream_observer_blocks_verified_total",
                "Blocks verified from the block stream",
            )?,
            receive_to_verify: Histogram::with_opts(
                HistogramOpts::new(
                    "dagstream_observer_receive_to_verify_seconds",
                    "From a block's arrival to its verification",
                )
                .buckets(latency_buckets()?),
            )?,
            verify_to_deliver: Histogram::with_opts(
                HistogramOpts::new(
                    "dagstream_observer_verify_to_deliver_seconds",
                    "From the verification that completed a commit to its delivery",
                )
                .buckets(latency_buckets()?),
            )?,
            commit_lag_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "dagstream_observer_commit_lag_seconds",
                    "From a commit's leader timestamp to its delivery, by wall clocks",
                )
                // 1 ms doubling to about 65 s: live lag is tens of
                // milliseconds, catching up is seconds to minutes.
                .buckets(exponential_buckets(0.001, 2.0, 17)?),
            )?,
            highest_certified_checkpoint: IntGauge::new(
                "dagstream_observer_highest_certified_checkpoint",
                "Highest checkpoint certified by 2f+1 stake",
            )?,
            checkpoint_signatures: IntCounterVec::new(
                Opts::new(
                    "dagstream_observer_checkpoint_signatures_total",
                    "Checkpoint signatures found in blocks, by outcome",
                ),
                &["outcome"],
            )?,
            certification_rounds: Histogram::with_opts(
                HistogramOpts::new(
                    "dagstream_observer_certification_rounds",
                    "Rounds from a checkpoint's closing decision to its certificate",
                )
                // Healthy: 0 to 2; a struggling committee: tens.
                .buckets(vec![0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 16.0, 32.0, 64.0]),
            )?,
            certification_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "dagstream_observer_certification_seconds",
                    "Block time from a checkpoint's closing commit to its certificate",
                )
                .buckets(latency_buckets()?),
            )?,
            randomness_rounds: IntCounter::new(
                "dagstream_observer_randomness_rounds_total",
                "Randomness rounds generated by persisted commits",
            )?,
            randomness_forged_partials: IntCounter::new(
                "dagstream_observer_randomness_forged_partials_total",
                "Randomness partials whose signatures did not verify",
            )?,
            epoch: IntGauge::new(
                "dagstream_observer_epoch",
                "The epoch of the committee the observer trusts now",
            )?,
            epoch_change_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "dagstream_observer_epoch_change_seconds",
                    "From a verified hand-off to the next epoch's first verified block",
                )
                .buckets(latency_buckets()?),
            )?,
            future_epoch_blocks: IntCounter::new(
                "dagstream_observer_future_epoch_blocks_total",
                "Block-stream blocks dropped past an epoch end the chain had not reached",
            )?,
            stale_epoch_blocks: IntCounter::new(
                "dagstream_observer_stale_epoch_blocks_total",
                "Block-stream blocks of an epoch the observer had left, dropped",
            )?,
            archive: ArchiveMetrics::unregistered()?,
        };
        // Known labels exist from the start, at zero.
        for reason in ["failed", "faulty", "degraded"] {
            metrics.session_ends.with_label_values(&[reason]);
        }
        for error in crate::error::INTEGRITY_ERROR_NAMES {
            metrics.faults.with_label_values(&[error]);
        }
        for outcome in ["counted", "early", "ignored", "other_summary", "forged"] {
            metrics.checkpoint_signatures.with_label_values(&[outcome]);
        }
        Ok(metrics)
    }

    /// Counts what became of checkpoint signatures.
    pub(crate) fn signatures(&self, outcomes: &[Outcome]) {
        for outcome in outcomes {
            let label = match outcome {
                Outcome::Counted => "counted",
                Outcome::Early => "early",
                Outcome::Ignored => "ignored",
                Outcome::OtherSummary => "other_summary",
                Outcome::Forged => "forged",
            };
            self.checkpoint_signatures.with_label_values(&[label]).inc();
        }
    }

    /// Observes newly certified checkpoints.
    pub(crate) fn certified(&self, certified: &[Certified], highest: Option<u64>) {
        // Latency is that of checkpoints certified by their own quorum:
        // the others were certified later than their signatures allowed,
        // since nothing asked for them sooner.
        for done in certified.iter().filter(|c| c.certificate.is_some()) {
            if let (Some(rounds), Some(ms)) = (done.rounds, done.ms) {
                self.certification_rounds.observe(rounds as f64);
                self.certification_seconds.observe(ms as f64 / 1_000.0);
            }
        }
        if let Some(highest) = highest {
            self.highest_certified_checkpoint.set(highest as i64);
        }
    }

    pub(crate) fn set_mode(&self, mode: Mode, paused: bool) {
        self.mode.set(match mode {
            Mode::BlocksOnly => 0,
            Mode::CommitsOnly => 1,
            Mode::Overlap => 2,
        });
        self.paused.set(paused as i64);
    }
}

/// The `q` quantile (0 to 1) of `histogram`, as the upper bound of the
/// bucket it falls in (`None`: no sample yet). Exact for the certification
/// rounds, whose buckets are whole rounds up to 4.
pub fn quantile(histogram: &Histogram, q: f64) -> Option<f64> {
    use prometheus::core::Metric;
    let metric = histogram.metric();
    let histogram = metric.get_histogram();
    let total = histogram.get_sample_count();
    if total == 0 {
        return None;
    }
    let rank = (q * total as f64).ceil().max(1.0) as u64;
    histogram
        .get_bucket()
        .iter()
        .find(|bucket| bucket.cumulative_count() >= rank)
        .map_or(Some(f64::INFINITY), |bucket| Some(bucket.upper_bound()))
}

/// Latency buckets: 50 µs doubling to about 6.5 s, so that sub-millisecond
/// steps and multi-second stalls both resolve.
fn latency_buckets() -> prometheus::Result<Vec<f64>> {
    exponential_buckets(0.000_05, 2.0, 18)
}

/// When each commit not yet delivered was verified, for
/// [`ObserverMetrics::verify_to_deliver`]. Free of I/O.
#[derive(Debug, Default)]
pub(crate) struct VerifyStamps {
    /// In index order, each index once.
    stamps: VecDeque<(CommitIndex, Instant)>,
}

impl VerifyStamps {
    /// Most commits stamped and not yet delivered. The node takes no input
    /// while `output_queue_len` persisted commits wait for the consumer,
    /// so this is rarely reached; past it the oldest stamps go, and their
    /// commits are not measured.
    const MAX: usize = 4_096;

    /// Stamps commits verified at `at`. Commits already stamped (the two
    /// streams overlap) keep their first stamp.
    pub(crate) fn record(&mut self, indices: impl IntoIterator<Item = CommitIndex>, at: Instant) {
        for index in indices {
            if self.stamps.back().is_none_or(|(last, _)| index > *last) {
                self.stamps.push_back((index, at));
            }
        }
        while self.stamps.len() > Self::MAX {
            self.stamps.pop_front();
        }
    }

    /// When commit `index`, now being delivered, was verified. Commits are
    /// delivered in order, so older stamps are dropped.
    pub(crate) fn take(&mut self, index: CommitIndex) -> Option<Instant> {
        while self.stamps.front().is_some_and(|(i, _)| *i < index) {
            self.stamps.pop_front();
        }
        match self.stamps.front() {
            Some(&(i, at)) if i == index => {
                self.stamps.pop_front();
                Some(at)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn quantiles_are_read_from_the_buckets() {
        let metrics = ObserverMetrics::unregistered().unwrap();
        let rounds = &metrics.certification_rounds;
        assert_eq!(quantile(rounds, 0.5), None);
        for value in [1.0, 1.0, 1.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0, 2.0] {
            rounds.observe(value);
        }
        assert_eq!(quantile(rounds, 0.5), Some(1.0));
        assert_eq!(quantile(rounds, 0.8), Some(1.0));
        assert_eq!(quantile(rounds, 0.99), Some(2.0));
        rounds.observe(500.0);
        assert_eq!(quantile(rounds, 1.0), Some(f64::INFINITY));
    }

    #[test]
    fn stamps_keep_the_first_verification_and_stay_bounded() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_millis(1);
        let mut stamps = VerifyStamps::default();
        stamps.record([1, 2, 3], t0);
        // The other stream verifies 2 and 3 again, then 4.
        stamps.record([2, 3, 4], t1);
        assert_eq!(stamps.take(2), Some(t0), "1 was never delivered: dropped");
        assert_eq!(stamps.take(3), Some(t0));
        assert_eq!(stamps.take(4), Some(t1));
        assert_eq!(stamps.take(5), None);

        let many = VerifyStamps::MAX as u64 + 10;
        stamps.record(10..10 + many, t0);
        assert_eq!(stamps.stamps.len(), VerifyStamps::MAX);
        assert_eq!(stamps.take(10), None, "the oldest stamps went");
        assert_eq!(stamps.take(20), Some(t0));
    }
}
