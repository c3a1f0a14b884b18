//! The observer's Prometheus metrics, registered on a registry passed in.

use crate::Mode;
use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

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
    /// Sessions ended, by reason (`failed`, `faulty`, `degraded`).
    pub session_ends: IntCounterVec,
    /// Unverifiable data received, by error name.
    pub faults: IntCounterVec,
    /// Commits persisted.
    pub commits_persisted: IntCounter,
    /// Blocks verified from the block stream.
    pub blocks_verified: IntCounter,
}

impl ObserverMetrics {
    /// Metrics registered on `registry`.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let metrics = Self::unregistered()?;
        registry.register(Box::new(metrics.highest_commit.clone()))?;
        registry.register(Box::new(metrics.upstream_highest_commit.clone()))?;
        registry.register(Box::new(metrics.commit_lag.clone()))?;
        registry.register(Box::new(metrics.mode.clone()))?;
        registry.register(Box::new(metrics.paused.clone()))?;
        registry.register(Box::new(metrics.connections.clone()))?;
        registry.register(Box::new(metrics.session_ends.clone()))?;
        registry.register(Box::new(metrics.faults.clone()))?;
        registry.register(Box::new(metrics.commits_persisted.clone()))?;
        registry.register(Box::new(metrics.blocks_verified.clone()))?;
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
        };
        // Known labels exist from the start, at zero.
        for reason in ["failed", "faulty", "degraded"] {
            metrics.session_ends.with_label_values(&[reason]);
        }
        for error in crate::error::INTEGRITY_ERROR_NAMES {
            metrics.faults.with_label_values(&[error]);
        }
        Ok(metrics)
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
