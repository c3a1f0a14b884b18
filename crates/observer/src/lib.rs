//! The observer: follows one or more publishers, verifies everything it
//! receives, and hands its consumer one gap-free, exactly-once commit
//! sequence.
//!
//! # Layout
//! - [`state_machine`]: the design's subscriber-controlled modes
//!   (BlocksOnly, CommitsOnly, Overlap, paused), free of I/O.
//! - [`checkpoint`]: deterministic grouping of commits into checkpoints.
//! - [`node`]: the observer itself ([`node::start`]): connections,
//!   failover, the block and commit paths, the sequencer, persistence and
//!   delivery to the consumer.
//! - [`metrics`]: [`ObserverMetrics`], on a registry passed in.
//! - [`verify`]: commit-stream batches checked against the observer's own
//!   chain and the certifiers' quorum, free of I/O.
//!
//! # Data flow
//! ```text
//! upstream ─block stream──▶ verify each block (parallel, off the runtime)
//!          │                  ─▶ DagConsensus (the validators' committer) ─┐
//!          └commit stream─▶ verify_commit_batch (own chain + quorum) ──────┤
//!                                                                          ▼
//!   SubscriberStateMachine ◀─ lag, queue ─ sequencer: next ─▶ Store (atomic)
//!     (Start/Stop commands)                 repeat ─▶ digests must match
//!                                                          │
//!                          consumer ◀─ exactly once ───────┤
//!                          StoreSource (relay) ◀───────────┘
//! ```

pub mod checkpoint;
mod error;
pub mod metrics;
pub mod node;
pub mod state_machine;
#[cfg(test)]
mod state_machine_tests;
pub mod verify;
#[cfg(test)]
mod verify_tests;

pub use error::{ObserverError, Result};
pub use metrics::ObserverMetrics;
pub use node::{start, start_with_metrics, ObserverConfig, ObserverHandle, ObserverStatus};
pub use state_machine::{Command, Mode, Observation, SubscriberConfig, SubscriberStateMachine};
