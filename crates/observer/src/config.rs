//! [`ObserverConfig`]: everything tunable about an observer, each default
//! with its reason.

use crate::state_machine::SubscriberConfig;
use crate::{ObserverError, Result};
use dagstream_publisher::Offload;
use dagstream_types::{BlockLimits, Digest, Epoch};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::str::FromStr;

/// Everything tunable about an observer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObserverConfig {
    /// The design's thresholds.
    pub subscriber: SubscriberConfig,
    /// An upstream that sends nothing, not even a heartbeat, for this long
    /// is abandoned. 5 s is five missed heartbeats.
    pub stall_timeout_ms: u64,
    /// Received blocks held before the reader stops reading (and the
    /// publisher's flow control takes over). Twice the pause threshold, so
    /// that a pause takes effect well before the queue is full.
    pub block_queue_capacity: usize,
    /// Persisted commits not yet taken by the consumer before the observer
    /// stops processing input. 256 commits keep a consumer busy for seconds
    /// while bounding memory.
    pub output_queue_len: usize,
    /// Reconnections tried at once after a failure, before backing off.
    /// Three ride out a restart of the upstream or a dropped connection
    /// without delay, and then stop hammering one that is down.
    pub immediate_retries: u32,
    /// First backoff delay; it doubles on each failure. 100 ms is about a
    /// round: a reconnect costs the upstream little at that rate.
    pub backoff_initial_ms: u64,
    /// Longest backoff delay. 10 s keeps a recovered upstream found within
    /// seconds, while a fleet of observers polls a dead one rarely.
    pub backoff_max_ms: u64,
    /// How long an upstream that sent unverifiable data is avoided. A
    /// minute: long enough not to loop on a Byzantine upstream, short
    /// enough to retry one whose fault was transient (a corrupted disk
    /// that an operator fixed).
    pub faulty_cooldown_ms: u64,
    /// Limits on received blocks; the defaults are the wire format's.
    pub block_limits: BlockLimits,
    /// In CommitsOnly, a lag that has not improved for this long means the
    /// observer cannot keep up with this upstream: disconnect, back off,
    /// try the next one (the design's graceful degradation). 30 s rides
    /// out a burst.
    pub degrade_after_ms: u64,
    /// How often every upstream is probed for its highest commit and
    /// round trip, when there are several. 2 s notices an upstream that
    /// falls behind within a few dozen commits, at one unary call per
    /// upstream over a kept connection.
    pub probe_interval_ms: u64,
    /// Leave the active upstream when another one is this many commits
    /// ahead of it. 50 commits are a few seconds: more than probe noise,
    /// less than a real fall-behind.
    pub max_upstream_lag: u64,
    /// A file whose first line is the bearer token sent to upstreams that
    /// require one (`docs/security.md`). Absent: no token is sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_token_path: Option<PathBuf>,
    /// TLS towards `https://` upstreams; `http://` ones are plaintext.
    #[serde(skip_serializing_if = "UpstreamTls::is_unset")]
    pub tls: UpstreamTls,
    /// Checkpoints pinned by the operator (`docs/observer.md`, *Epochs*):
    /// the hand-off of each named epoch must be certified over exactly
    /// that final checkpoint. None by default: genesis alone is trusted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub waypoints: Vec<Waypoint>,
    /// The history archive (`docs/archive.md`): where this observer
    /// uploads what it certifies, and where it bootstraps from.
    pub archive: ArchiveSettings,
    /// Where blocks and commit batches are verified and batches written:
    /// the blocking pool, or inline for a deterministic simulation. Not a
    /// file setting.
    #[serde(skip)]
    pub offload: Offload,
}

/// The history archive (`[observer.archive]`, `docs/archive.md`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArchiveSettings {
    /// Upload every certified checkpoint to this archive (`file:///path`
    /// or `s3://bucket/prefix`, configured by the standard AWS variables).
    /// Absent: no upload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Bundles uploaded at once, each held in memory until stored. Four
    /// keep a link to a nearby object store busy, at under 100 MB.
    pub max_uploads: usize,
    /// A bundle ends at the first checkpoint boundary past this many bytes
    /// of blocks. 16 MiB: a request's overhead is small against its
    /// transfer.
    pub bundle_bytes: usize,
    /// Start from this archive: take the history after the store's last
    /// commit from it, verified as if a validator sent it, before
    /// following the upstreams. Absent: the upstreams only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bootstrap_from: Option<String>,
    /// Bundles fetched at once while bootstrapping, each up to 64 MiB
    /// decoded: four hide a fetch's latency behind the verification of
    /// the bundle before.
    pub bootstrap_fetches: usize,
}

impl Default for ArchiveSettings {
    fn default() -> Self {
        ArchiveSettings {
            url: None,
            max_uploads: 4,
            bundle_bytes: 16 << 20,
            bootstrap_from: None,
            bootstrap_fetches: 4,
        }
    }
}

/// Most uploads or fetches at once: each holds a bundle in memory.
const MAX_ARCHIVE_CONCURRENCY: usize = 64;
/// The smallest bundle target: below a few KiB, a bundle's certifying
/// blocks outweigh its commits.
const MIN_BUNDLE_BYTES: usize = 4 << 10;

/// A checkpoint pinned by the operator: the epoch it ends, and its
/// summary's digest (`dagstream inspect --epochs` prints both on a node
/// that already follows the chain). Written `EPOCH:DIGEST` on the command
/// line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Waypoint {
    /// The epoch whose final checkpoint this is.
    pub epoch: Epoch,
    /// The digest of that final checkpoint's summary.
    pub checkpoint_digest: Digest,
}

impl FromStr for Waypoint {
    type Err = ObserverError;

    fn from_str(text: &str) -> Result<Waypoint> {
        let invalid = |reason: String| ObserverError::InvalidConfig {
            field: "waypoints",
            reason,
        };
        let (epoch, digest) = text
            .split_once(':')
            .ok_or_else(|| invalid(format!("{text:?} is not EPOCH:DIGEST")))?;
        Ok(Waypoint {
            epoch: epoch
                .parse()
                .map_err(|err| invalid(format!("epoch {epoch:?}: {err}")))?,
            checkpoint_digest: digest
                .parse()
                .map_err(|err| invalid(format!("digest {digest:?}: {err}")))?,
        })
    }
}

/// TLS towards `https://` upstreams (`[observer.tls]`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamTls {
    /// PEM CA certificates to trust; absent: the system's roots.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_path: Option<PathBuf>,
    /// The PEM certificate presented to upstreams that require mutual TLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_cert_path: Option<PathBuf>,
    /// The PEM private key of that certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_key_path: Option<PathBuf>,
}

impl UpstreamTls {
    /// Nothing set: the system's roots, no client certificate.
    pub fn is_unset(&self) -> bool {
        *self == UpstreamTls::default()
    }
}

impl Default for ObserverConfig {
    fn default() -> Self {
        ObserverConfig {
            subscriber: SubscriberConfig::default(),
            stall_timeout_ms: 5_000,
            block_queue_capacity: 1_000,
            output_queue_len: 256,
            immediate_retries: 3,
            backoff_initial_ms: 100,
            backoff_max_ms: 10_000,
            faulty_cooldown_ms: 60_000,
            block_limits: BlockLimits::default(),
            degrade_after_ms: 30_000,
            probe_interval_ms: 2_000,
            max_upstream_lag: 50,
            auth_token_path: None,
            tls: UpstreamTls::default(),
            waypoints: Vec::new(),
            archive: ArchiveSettings::default(),
            offload: Offload::default(),
        }
    }
}

impl ObserverConfig {
    /// Checks that the config can work. An error names the offending field.
    pub fn validate(&self) -> Result<()> {
        self.subscriber.validate()?;
        let invalid = |field: &'static str, reason: String| {
            Err(ObserverError::InvalidConfig { field, reason })
        };
        if self.block_queue_capacity <= self.subscriber.pause_blocks_queue_size {
            return invalid(
                "block_queue_capacity",
                format!(
                    "{} must exceed subscriber.pause_blocks_queue_size ({})",
                    self.block_queue_capacity, self.subscriber.pause_blocks_queue_size
                ),
            );
        }
        let positive = [
            ("output_queue_len", self.output_queue_len as u64),
            ("stall_timeout_ms", self.stall_timeout_ms),
            ("degrade_after_ms", self.degrade_after_ms),
            ("probe_interval_ms", self.probe_interval_ms),
            ("backoff_initial_ms", self.backoff_initial_ms),
        ];
        for (field, value) in positive {
            if value == 0 {
                return invalid(field, "must be positive".into());
            }
        }
        let archive = &self.archive;
        for (field, value) in [
            ("archive.max_uploads", archive.max_uploads),
            ("archive.bootstrap_fetches", archive.bootstrap_fetches),
        ] {
            if !(1..=MAX_ARCHIVE_CONCURRENCY).contains(&value) {
                return invalid(
                    field,
                    format!("{value} is not between 1 and {MAX_ARCHIVE_CONCURRENCY}"),
                );
            }
        }
        let bundle_bytes = MIN_BUNDLE_BYTES..=dagstream_proto::MAX_MESSAGE_BYTES / 2;
        if !bundle_bytes.contains(&archive.bundle_bytes) {
            return invalid(
                "archive.bundle_bytes",
                format!(
                    "{} is not between {} and {} (a bundle may pass it by one checkpoint)",
                    archive.bundle_bytes,
                    bundle_bytes.start(),
                    bundle_bytes.end()
                ),
            );
        }
        if self.backoff_max_ms < self.backoff_initial_ms {
            return invalid(
                "backoff_max_ms",
                format!(
                    "{} is below backoff_initial_ms ({})",
                    self.backoff_max_ms, self.backoff_initial_ms
                ),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A change of default shows up here in review.
    #[test]
    fn defaults_snapshot() {
        let text = serde_json::to_string(&ObserverConfig::default()).unwrap();
        assert_eq!(
            text,
            concat!(
                r#"{"subscriber":{"start_commit_sync_lag":50,"resume_blocks_lag":10,"#,
                r#""stop_commit_sync_lag":0,"pause_blocks_queue_size":500,"#,
                r#""resume_blocks_queue_size":50,"evaluation_interval_ms":100},"#,
                r#""stall_timeout_ms":5000,"block_queue_capacity":1000,"output_queue_len":256,"#,
                r#""immediate_retries":3,"#,
                r#""backoff_initial_ms":100,"backoff_max_ms":10000,"faulty_cooldown_ms":60000,"#,
                r#""block_limits":{"max_transactions_per_block":10000,"max_block_bytes":2097152,"#,
                r#""max_system_messages_per_block":256},"#,
                r#""degrade_after_ms":30000,"#,
                r#""probe_interval_ms":2000,"max_upstream_lag":50,"#,
                r#""archive":{"max_uploads":4,"bundle_bytes":16777216,"bootstrap_fetches":4}}"#
            )
        );
        ObserverConfig::default().validate().unwrap();
    }

    #[test]
    fn config_needs_room_above_the_pause_threshold() {
        let config = ObserverConfig {
            block_queue_capacity: 500,
            ..ObserverConfig::default()
        };
        assert!(matches!(
            config.validate(),
            Err(ObserverError::InvalidConfig {
                field: "block_queue_capacity",
                ..
            })
        ));
    }

    #[test]
    fn invalid_values_name_the_field() {
        let cases = [
            (
                ObserverConfig {
                    output_queue_len: 0,
                    ..ObserverConfig::default()
                },
                "output_queue_len",
            ),
            (
                ObserverConfig {
                    probe_interval_ms: 0,
                    ..ObserverConfig::default()
                },
                "probe_interval_ms",
            ),
            (
                ObserverConfig {
                    backoff_max_ms: 10,
                    ..ObserverConfig::default()
                },
                "backoff_max_ms",
            ),
            (
                ObserverConfig {
                    subscriber: SubscriberConfig {
                        evaluation_interval_ms: 0,
                        ..SubscriberConfig::default()
                    },
                    ..ObserverConfig::default()
                },
                "subscriber.evaluation_interval_ms",
            ),
        ];
        for (config, expected) in cases {
            match config.validate() {
                Err(ObserverError::InvalidConfig { field, .. }) => assert_eq!(field, expected),
                other => panic!("{expected}: {other:?}"),
            }
        }
    }
}
