//! The archive's Prometheus metrics, registered on a registry passed in.

use prometheus::{IntCounter, IntGauge, Opts, Registry};

#[derive(Clone, Debug)]
pub struct ArchiveMetrics {
    /// The watermark: the highest checkpoint archived with all before it.
    pub archived_checkpoint: IntGauge,
    pub archived_commit: IntGauge,
    pub bundles_uploaded: IntCounter,
    /// Compressed bytes uploaded.
    pub bytes_uploaded: IntCounter,
    /// Failed requests to the object store (each retried).
    pub upload_failures: IntCounter,
    /// Commits a bootstrap took from the archive and persisted.
    pub bootstrapped_commits: IntCounter,
}

impl ArchiveMetrics {
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let metrics = Self::unregistered()?;
        registry.register(Box::new(metrics.archived_checkpoint.clone()))?;
        registry.register(Box::new(metrics.archived_commit.clone()))?;
        registry.register(Box::new(metrics.bundles_uploaded.clone()))?;
        registry.register(Box::new(metrics.bytes_uploaded.clone()))?;
        registry.register(Box::new(metrics.upload_failures.clone()))?;
        registry.register(Box::new(metrics.bootstrapped_commits.clone()))?;
        Ok(metrics)
    }

    /// Metrics that no registry exports (tests, embedders without one).
    pub fn unregistered() -> prometheus::Result<Self> {
        Ok(ArchiveMetrics {
            archived_checkpoint: IntGauge::with_opts(Opts::new(
                "dagstream_archive_checkpoint",
                "The archive's watermark: every checkpoint up to it is archived",
            ))?,
            archived_commit: IntGauge::with_opts(Opts::new(
                "dagstream_archive_commit",
                "The last commit under the archive's watermark",
            ))?,
            bundles_uploaded: IntCounter::with_opts(Opts::new(
                "dagstream_archive_bundles_uploaded_total",
                "Bundles stored in the archive",
            ))?,
            bytes_uploaded: IntCounter::with_opts(Opts::new(
                "dagstream_archive_bytes_uploaded_total",
                "Compressed bytes of bundles stored in the archive",
            ))?,
            upload_failures: IntCounter::with_opts(Opts::new(
                "dagstream_archive_request_failures_total",
                "Requests to the archive's object store that failed (and were retried)",
            ))?,
            bootstrapped_commits: IntCounter::with_opts(Opts::new(
                "dagstream_archive_bootstrapped_commits_total",
                "Commits taken from an archive at bootstrap, verified and persisted",
            ))?,
        })
    }
}
