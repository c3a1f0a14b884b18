//! The dagstream gRPC protocol, generated from
//! `proto/dagstream/v1/streaming.proto`, and the history archive's objects,
//! from `proto/dagstream/v1/archive.proto` (`docs/archive.md`).
//!
//! Two bidirectional streams: `BlockStreamService.StreamBlocks` (blocks, in
//! real time) and `CommitStreamService.StreamCommits` (committed sub-DAGs,
//! for catching up). The subscriber sends Start and Stop commands; the
//! publisher answers with batches. Every `bytes` field is a
//! [`bytes::Bytes`](prost::bytes::Bytes). Semantics, errors and limits are in
//! `docs/protocol.md`.

pub mod codec;

/// Package `dagstream.v1`: messages, clients (`*_client`) and servers
/// (`*_server`).
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/v1/dagstream.v1.rs"));
}

/// The design document's definitions, without dagstream's extensions: what a
/// third-party client generated from the design looks like. Used by
/// interoperability tests.
#[doc(hidden)]
pub mod design {
    include!(concat!(env!("OUT_DIR"), "/design/dagstream.v1.rs"));
}

/// The largest gRPC message either side encodes or decodes: 64 MiB.
///
/// A response is normally capped at the publisher's `max_batch_bytes`
/// (4 MiB by default), but one item larger than that goes alone, and a
/// commit carries its certifier blocks besides. With blocks of at most 2 MiB
/// (`BlockLimits::max_block_bytes`), 64 MiB leaves room for a large sub-DAG
/// and a quorum of certifiers while still bounding what one message can make
/// a peer allocate.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
