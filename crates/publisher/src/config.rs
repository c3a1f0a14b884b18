//! The publisher's configuration.

use crate::error::{PublisherError, Result};
use crate::offload::Offload;
use crate::security::TlsConfig;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// Every tunable of the publisher, with the reason for each default.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PublisherConfig {
    /// How many recent rounds a block-stream Start can reach back. A
    /// subscriber further behind starts at the window's start: catching up
    /// on older history is the commit stream's job. 500 rounds is under a
    /// minute of blocks, and bounds the store scan one Start can cause.
    pub block_backlog_rounds: u64,
    /// Most bytes of blocks in one response (design open question 3). 4 MiB
    /// amortizes per-message overhead at catch-up speed while bounding what
    /// one response holds in memory on both sides. A single item larger
    /// than this goes alone.
    pub max_batch_bytes: usize,
    /// How far past the highest commit a commit-stream Start may point
    /// before it is refused as invalid. An index just ahead of the tip
    /// waits; 100,000 commits (about two hours) past it is a client bug.
    pub max_future_commits: u64,
    /// A subscriber whose stream does not drain for this long is
    /// disconnected with `RESOURCE_EXHAUSTED`, freeing its memory. 30 s
    /// rides out a GC pause or a congested link.
    pub slow_subscriber_timeout_ms: u64,
    /// An empty response with the highest commit index is sent on a
    /// stopped or idle stream this often, so subscribers detect stalls and
    /// keep their lag current. 1 s is well under the subscriber's 5 s stall
    /// timeout.
    pub heartbeat_interval_ms: u64,
    /// HTTP/2 keepalive ping interval: finds dead connections that TCP
    /// would keep for minutes.
    pub keepalive_interval_ms: u64,
    /// How long a keepalive ping may go unanswered before the connection is
    /// closed.
    pub keepalive_timeout_ms: u64,
    /// Most concurrent streams per service. Each stream costs a task, a
    /// queue and its reads of the store.
    pub max_subscribers: usize,
    /// Sustained Start/Stop commands per second per stream. A subscriber's
    /// state machine sends a few per minute; a client toggling in a loop
    /// must not make the publisher re-read its store in a loop.
    pub max_commands_per_second: u32,
    /// Commands a stream may send in a burst above the sustained rate.
    pub command_burst: u32,
    /// Responses queued per stream before its task waits for the
    /// subscriber. 8 keeps the pipe full without holding much memory per
    /// stream (at most 8 batches).
    pub stream_queue_len: usize,
    /// Commit certificates kept in memory for reuse by other subscribers.
    /// 4,096 covers the batches of many subscribers catching up together.
    pub certificate_cache_len: usize,
    /// How many rounds after a commit's leader the publisher searches for
    /// the votes that certify it. Votes follow the decision by one round,
    /// and a decision follows its leader by a few; 1,000 rounds bounds the
    /// search on a chain where they never came.
    pub certificate_search_rounds: u64,
    /// A file of the bearer tokens subscribers must send, one per line
    /// (`docs/security.md`). Absent: anyone who can connect may subscribe.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_tokens_path: Option<PathBuf>,
    /// TLS on the listener, and mutual TLS with `client_ca_path`. Absent:
    /// plaintext, for loopback and trusted networks only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
    /// The archive (`docs/archive.md`) that holds the history this node no
    /// longer keeps, as a URL for `dagstream observer --bootstrap-from`. A
    /// subscriber that asks for pruned commits is told where to find them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history_archive: Option<String>,
    /// Where batches are read from the store: the blocking pool, or inline
    /// for a deterministic simulation. Not a file setting.
    #[serde(skip)]
    pub offload: Offload,
}

impl Default for PublisherConfig {
    fn default() -> Self {
        PublisherConfig {
            block_backlog_rounds: 500,
            max_batch_bytes: 4 * 1024 * 1024,
            max_future_commits: 100_000,
            slow_subscriber_timeout_ms: 30_000,
            heartbeat_interval_ms: 1_000,
            keepalive_interval_ms: 10_000,
            keepalive_timeout_ms: 20_000,
            max_subscribers: 100,
            max_commands_per_second: 10,
            command_burst: 20,
            stream_queue_len: 8,
            certificate_cache_len: 4_096,
            certificate_search_rounds: 1_000,
            auth_tokens_path: None,
            tls: None,
            history_archive: None,
            offload: Offload::default(),
        }
    }
}

impl PublisherConfig {
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("block_backlog_rounds", self.block_backlog_rounds),
            ("max_batch_bytes", self.max_batch_bytes as u64),
            (
                "slow_subscriber_timeout_ms",
                self.slow_subscriber_timeout_ms,
            ),
            ("heartbeat_interval_ms", self.heartbeat_interval_ms),
            ("keepalive_interval_ms", self.keepalive_interval_ms),
            ("keepalive_timeout_ms", self.keepalive_timeout_ms),
            ("max_subscribers", self.max_subscribers as u64),
            (
                "max_commands_per_second",
                self.max_commands_per_second as u64,
            ),
            ("command_burst", self.command_burst as u64),
            ("stream_queue_len", self.stream_queue_len as u64),
            ("certificate_cache_len", self.certificate_cache_len as u64),
            ("certificate_search_rounds", self.certificate_search_rounds),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(PublisherError::InvalidConfig {
                    field,
                    reason: "must be positive".into(),
                });
            }
        }
        if self.max_batch_bytes > dagstream_proto::MAX_MESSAGE_BYTES / 2 {
            return Err(PublisherError::InvalidConfig {
                field: "max_batch_bytes",
                reason: format!(
                    "{} is over half the gRPC message limit of {}",
                    self.max_batch_bytes,
                    dagstream_proto::MAX_MESSAGE_BYTES
                ),
            });
        }
        Ok(())
    }

    pub(crate) fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.heartbeat_interval_ms)
    }

    pub(crate) fn slow_subscriber_timeout(&self) -> Duration {
        Duration::from_millis(self.slow_subscriber_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A change of default shows up here in review.
    #[test]
    fn defaults_snapshot() {
        let text = serde_json::to_string(&PublisherConfig::default()).unwrap();
        assert_eq!(
            text,
            r#"{"block_backlog_rounds":500,"max_batch_bytes":4194304,"max_future_commits":100000,"slow_subscriber_timeout_ms":30000,"heartbeat_interval_ms":1000,"keepalive_interval_ms":10000,"keepalive_timeout_ms":20000,"max_subscribers":100,"max_commands_per_second":10,"command_burst":20,"stream_queue_len":8,"certificate_cache_len":4096,"certificate_search_rounds":1000}"#
        );
        PublisherConfig::default().validate().unwrap();
    }

    #[test]
    fn invalid_values_name_the_field() {
        let config = PublisherConfig {
            heartbeat_interval_ms: 0,
            ..PublisherConfig::default()
        };
        assert!(matches!(
            config.validate(),
            Err(PublisherError::InvalidConfig {
                field: "heartbeat_interval_ms",
                ..
            })
        ));
        let config = PublisherConfig {
            max_batch_bytes: 1 << 30,
            ..PublisherConfig::default()
        };
        assert!(matches!(
            config.validate(),
            Err(PublisherError::InvalidConfig {
                field: "max_batch_bytes",
                ..
            })
        ));
    }
}
