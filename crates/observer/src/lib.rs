//! The observer: follows one or more publishers, verifies everything it
//! receives, and hands its consumer one gap-free, exactly-once commit
//! sequence.
//!
//! # Layout, in the order a block travels
//! - [`upstream`]: [`upstream::selection`] picks the upstream to follow
//!   (probes, backoff, cool-down of a faulty one);
//!   [`upstream::connection`], the only file that speaks gRPC, opens both
//!   streams, reads them into bounded queues and sends commands;
//!   [`upstream::credentials`] holds TLS and the token, and
//!   [`upstream::transport`] how connections are made (TCP, or the
//!   embedder's [`Connector`], for [`start_with_transport`]).
//! - [`state_machine`]: the design's subscriber-controlled modes
//!   (BlocksOnly, CommitsOnly, Overlap, paused) and graceful degradation,
//!   free of I/O: the commands that `connection` sends.
//! - [`verify`]: every received block in full, in parallel; commit-stream
//!   batches against the observer's own chain and the certifiers' quorum.
//! - [`derive`](mod@derive): commits derived from verified blocks by the
//!   validators' own consensus core.
//! - [`sequencer`]: the one place commits enter the chain, from either
//!   path: the next ones become one atomic write batch, checkpoint keys
//!   included; a repeat must match what was persisted.
//! - [`randomness`](mod@randomness): partials from the blocks of either
//!   stream, rounds placed at commits by the chain's tally, signatures
//!   interpolated (or received and verified); owned by the sequencer.
//! - `persist`: each batch written on the blocking pool while the node
//!   verifies the next, one write in flight.
//! - [`checkpoint`]: the stored form of checkpoints (their grouping is the
//!   chain's `CheckpointBuilder`) and certificates.
//! - [`certify`]: checkpoint signatures collected from the blocks of
//!   either stream, free of I/O, until 2f+1 stake signs the summary the
//!   sequencer formed; certificates go with the next write.
//! - [`delivery`]: persisted commits to the consumer, in order, each once,
//!   each with its checkpoint ([`DeliveredSubDag`]).
//! - `node`: the loop that wires the stages, one task owning all state,
//!   and switches them all to the next committee at each verified epoch
//!   hand-off (`node/epoch.rs`, see `docs/observer.md`, *Epochs*), and
//!   first takes an archive's history with `--bootstrap-from`, each bundle
//!   through the commit-batch path (`node/bootstrap.rs`);
//!   [`handle`]: [`start`] it and hold its [`ObserverHandle`], with the
//!   archive writer (`dagstream_archive::Archiver`, `--archive`) beside it
//!   when configured.
//! - [`config`], [`status`], [`metrics`]: [`ObserverConfig`],
//!   [`ObserverStatus`] and [`ObserverMetrics`].
//!
//! # Data flow
//! ```text
//! selection ─▶ connection ─block stream──▶ verify_blocks ─▶ derive ──────────┐
//!                  ▲      └commit stream─▶ verify_commit_batch ─────────────┤
//!                  │ Start/Stop          (blocks of both ─▶ certify ◀─ closed)│
//!                  │                                            │certificates ▼
//!   state_machine ◀┴─ lag, queue length ─────────────── sequencer ─▶ persist: one atomic
//!                                                                     write in flight
//!                                                                     (StoreSource: store,
//!                                                                      then relay feed)
//!                                  consumer ◀─ delivery ◀── durable ────────┘
//! ```
//!
//! Across an epoch: the sequencer places the epoch's last commit; a
//! hand-off from either stream is verified with the committee trusted so
//! far and written in one batch after it; then derive, sequencer, certify
//! and verification go on with the next committee.

pub mod certify;
#[cfg(test)]
mod certify_tests;
pub mod checkpoint;
pub mod config;
pub mod delivery;
pub mod derive;
mod error;
pub mod handle;
pub mod metrics;
mod node;
mod persist;
pub mod randomness;
#[cfg(test)]
mod randomness_tests;
pub mod sequencer;
#[cfg(test)]
mod sequencer_tests;
pub mod state_machine;
#[cfg(test)]
mod state_machine_tests;
pub mod status;
pub mod upstream;
pub mod verify;
#[cfg(test)]
mod verify_tests;

pub use config::{ArchiveSettings, ObserverConfig, UpstreamTls, Waypoint};
pub use dagstream_publisher::Offload;
pub use delivery::DeliveredSubDag;
pub use error::{ObserverError, Result};
pub use handle::{start, start_with_metrics, start_with_transport, ObserverHandle};
pub use metrics::ObserverMetrics;
pub use state_machine::{Command, Mode, Observation, SubscriberConfig, SubscriberStateMachine};
pub use status::ObserverStatus;
pub use upstream::connection::{CONNECTION_WINDOW_BYTES, STREAM_WINDOW_BYTES};
pub use upstream::{Connector, Credentials, Transport};
