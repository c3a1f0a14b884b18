//! The publisher: the validator side of dagstream's two streams, for many
//! subscribers at once.
//!
//! It serves `BlockStreamService.StreamBlocks` (blocks in real time) and
//! `CommitStreamService.StreamCommits` (certified commits, for catching up)
//! from any [`ConsensusSource`]: a validator's store, an observer relaying
//! what it verified, or a real consensus engine. The subscriber is in
//! control: it sends Start and Stop, and the publisher answers with batches
//! whose size adapts to how far behind the subscriber is. The protocol is
//! specified in `docs/protocol.md`.
//!
//! # Layout
//! - [`source`]: the [`ConsensusSource`] seam, and [`StoreSource`], its
//!   implementation over a [`Store`](dagstream_store::Store) with a shared
//!   in-memory cache of the live tail; [`epochs`]: the committee of each
//!   epoch and the hand-off that ended it, which the streams send before
//!   anything of the next epoch.
//! - [`certifier`]: [`Certifier`], which commits are certified by a quorum of
//!   votes, and the blocks that show it.
//! - `context`: what one publisher's services and stream tasks share (source,
//!   config, metrics, certifier, shutdown signal, admission).
//! - [`block_stream`] and [`commit_stream`]: what each stream does with a
//!   Start (its cursor) and how it builds its next batch.
//! - [`batching`]: the adaptive batch size, the byte cap and the command
//!   rate limit, as pure functions.
//! - `session`: the one loop every stream runs in its own task (commands,
//!   rate limit, batches, heartbeats, shutdown), its bounded response
//!   queue, slow-subscriber detection and error delivery.
//! - `end_reason`: why a stream ended, a metric label.
//! - [`server`]: [`Publisher`], the gRPC services, limits and shutdown, and
//!   [`PublisherHandle`], which owns its tasks and servers.
//! - [`metrics`]: the Prometheus metrics, [`PublisherMetrics`].
//! - [`security`]: TLS on the listener ([`TlsConfig`]) and bearer
//!   [`Tokens`], checked before a request reaches anything else; [`pki`]:
//!   a throwaway CA and certificates for local testing.
//! - [`config`]: [`PublisherConfig`]; `error`: [`PublisherError`];
//!   [`offload`]: where synchronous work runs ([`Offload`]).
//!
//! Files import only from layers below them, so the import graph has no
//! cycle:
//! ```text
//! server
//!   ─▶ block_stream, commit_stream
//!        ─▶ session ─▶ context ─▶ certifier ─▶ source ─▶ epochs
//!                              ─▶ metrics ─▶ end_reason
//!                              ─▶ batching, config ─▶ security ─▶ error
//!                                           └─▶ offload
//! ```
//!
//! # Data flow
//! ```text
//! node ─batch─▶ StoreSource::write ─store, then feed─▶ Certifier (votes)
//!                              │                          │ highest certified
//!                              ▼                          ▼
//!              block stream task            commit stream task
//!   (store backlog, then feed; per-author    (commits in order, blocks by ref,
//!    highest round filters duplicates)        certificate of the last one)
//!                              │                          │
//!                              ▼                          ▼
//!                 bounded queue per stream ─▶ tonic ─▶ subscriber
//! ```
//! Blocks travel as the `Bytes` they were stored as: one copy in memory
//! serves every subscriber, and none is ever decoded to be sent.

pub mod batching;
pub mod block_stream;
pub mod certifier;
pub mod commit_stream;
pub mod config;
mod context;
mod end_reason;
pub mod epochs;
mod error;
pub mod metrics;
pub mod offload;
pub mod pki;
pub mod security;
pub mod server;
mod session;
pub mod source;

pub use certifier::{Certificate, Certifier};
pub use config::PublisherConfig;
pub use error::{PublisherError, Result};
pub use metrics::PublisherMetrics;
pub use offload::Offload;
pub use security::{TlsConfig, Tokens};
pub use server::{Publisher, PublisherHandle};
pub use source::{Accepted, ConsensusSource, StoreSource};
