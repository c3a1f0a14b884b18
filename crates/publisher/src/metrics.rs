//! The publisher's Prometheus metrics, registered on a registry passed in.

use crate::end_reason::EndReason;
use prometheus::{
    exponential_buckets, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

/// Service label values.
pub const BLOCKS: &str = "blocks";
pub const COMMITS: &str = "commits";

#[derive(Clone)]
pub struct PublisherMetrics {
    /// Open streams, by service.
    pub active_streams: IntGaugeVec,
    /// Blocks sent on block streams.
    pub blocks_sent: IntCounterVec,
    /// Commits sent on commit streams.
    pub commits_sent: IntCounterVec,
    /// Payload bytes sent (blocks, including those of sub-DAGs and
    /// certificates), by service.
    pub bytes_sent: IntCounterVec,
    /// Items per non-empty response, by service.
    pub batch_size: HistogramVec,
    /// Streams ended, by service and reason.
    pub disconnects: IntCounterVec,
    /// Start and Stop commands processed, by service and command.
    pub commands: IntCounterVec,
    /// Items the subscriber is behind, by service and subscriber.
    pub subscriber_lag: IntGaugeVec,
    /// Highest commit certified by a quorum of votes.
    pub highest_certified_commit: IntGauge,
    /// Live latency inside the publisher, by service: from a live item
    /// being ready (a block accepted, a commit certified) to the response
    /// that carries it being queued for the subscriber.
    pub accept_to_queue: HistogramVec,
    /// From a response being queued to tonic taking it to encode and write
    /// to the connection, by service: the wait for the subscriber's
    /// HTTP/2 window and the queue ahead of it.
    pub queue_to_send: HistogramVec,
}

/// Latency buckets: 50 µs doubling to about 6.5 s, so that sub-millisecond
/// live latency and multi-second stalls both resolve.
pub(crate) fn latency_buckets() -> prometheus::Result<Vec<f64>> {
    exponential_buckets(0.000_05, 2.0, 18)
}

impl PublisherMetrics {
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let metrics = PublisherMetrics {
            active_streams: IntGaugeVec::new(
                Opts::new("dagstream_publisher_active_streams", "Open streams"),
                &["service"],
            )?,
            blocks_sent: IntCounterVec::new(
                Opts::new("dagstream_publisher_blocks_sent_total", "Blocks sent"),
                &["service"],
            )?,
            commits_sent: IntCounterVec::new(
                Opts::new("dagstream_publisher_commits_sent_total", "Commits sent"),
                &["service"],
            )?,
            bytes_sent: IntCounterVec::new(
                Opts::new("dagstream_publisher_bytes_sent_total", "Block bytes sent"),
                &["service"],
            )?,
            batch_size: HistogramVec::new(
                HistogramOpts::new("dagstream_publisher_batch_size", "Items per response")
                    .buckets(exponential_buckets(1.0, 2.0, 8)?),
                &["service"],
            )?,
            disconnects: IntCounterVec::new(
                Opts::new("dagstream_publisher_disconnects_total", "Streams ended"),
                &["service", "reason"],
            )?,
            commands: IntCounterVec::new(
                Opts::new("dagstream_publisher_commands_total", "Commands processed"),
                &["service", "command"],
            )?,
            subscriber_lag: IntGaugeVec::new(
                Opts::new(
                    "dagstream_publisher_subscriber_lag",
                    "Items a subscriber is behind",
                ),
                &["service", "subscriber"],
            )?,
            highest_certified_commit: IntGauge::new(
                "dagstream_publisher_highest_certified_commit",
                "Highest commit certified by a quorum of votes",
            )?,
            accept_to_queue: HistogramVec::new(
                HistogramOpts::new(
                    "dagstream_publisher_accept_to_queue_seconds",
                    "From a live block accepted (or commit certified) to its response queued",
                )
                .buckets(latency_buckets()?),
                &["service"],
            )?,
            queue_to_send: HistogramVec::new(
                HistogramOpts::new(
                    "dagstream_publisher_queue_to_send_seconds",
                    "From a response queued to tonic taking it to write to the connection",
                )
                .buckets(latency_buckets()?),
                &["service"],
            )?,
        };
        // Every known label combination exists from the start, at zero, so
        // that dashboards and alerts see a series before the first event.
        for service in [BLOCKS, COMMITS] {
            metrics.active_streams.with_label_values(&[service]);
            metrics.blocks_sent.with_label_values(&[service]);
            metrics.commits_sent.with_label_values(&[service]);
            metrics.bytes_sent.with_label_values(&[service]);
            metrics.batch_size.with_label_values(&[service]);
            metrics.accept_to_queue.with_label_values(&[service]);
            metrics.queue_to_send.with_label_values(&[service]);
            let reasons = EndReason::ALL.map(|r| r.name());
            for reason in reasons.iter().chain(&["max_subscribers"]) {
                metrics.disconnects.with_label_values(&[service, reason]);
            }
            for command in ["start", "stop", "none"] {
                metrics.commands.with_label_values(&[service, command]);
            }
        }
        registry.register(Box::new(metrics.active_streams.clone()))?;
        registry.register(Box::new(metrics.blocks_sent.clone()))?;
        registry.register(Box::new(metrics.commits_sent.clone()))?;
        registry.register(Box::new(metrics.bytes_sent.clone()))?;
        registry.register(Box::new(metrics.batch_size.clone()))?;
        registry.register(Box::new(metrics.disconnects.clone()))?;
        registry.register(Box::new(metrics.commands.clone()))?;
        registry.register(Box::new(metrics.subscriber_lag.clone()))?;
        registry.register(Box::new(metrics.highest_certified_commit.clone()))?;
        registry.register(Box::new(metrics.accept_to_queue.clone()))?;
        registry.register(Box::new(metrics.queue_to_send.clone()))?;
        Ok(metrics)
    }
}
