//! The sink's Prometheus metrics.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

#[derive(Clone, Debug)]
pub struct SinkMetrics {
    /// The last commit the log has acknowledged.
    pub commit: IntGauge,
    /// Persisted commits the log does not have yet.
    pub lag: IntGauge,
    /// Commits appended (acknowledged by the log).
    pub appended: IntCounter,
    /// Failed appends and reads, by kind.
    pub errors: IntCounterVec,
}

impl SinkMetrics {
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let metrics = SinkMetrics {
            commit: IntGauge::new(
                "dagstream_sink_commit",
                "Last commit the sink's log acknowledged",
            )?,
            lag: IntGauge::new(
                "dagstream_sink_lag_commits",
                "Persisted commits the sink's log does not have yet",
            )?,
            appended: IntCounter::new(
                "dagstream_sink_appended_total",
                "Commits appended to the sink's log",
            )?,
            errors: IntCounterVec::new(
                Opts::new(
                    "dagstream_sink_errors_total",
                    "Failed sink appends and reads, by kind",
                ),
                &["kind"],
            )?,
        };
        registry.register(Box::new(metrics.commit.clone()))?;
        registry.register(Box::new(metrics.lag.clone()))?;
        registry.register(Box::new(metrics.appended.clone()))?;
        registry.register(Box::new(metrics.errors.clone()))?;
        Ok(metrics)
    }

    /// Metrics registered nowhere (tests, embedders that do not scrape).
    pub fn unregistered() -> Self {
        SinkMetrics::new(&Registry::new()).expect("fresh registry")
    }
}
