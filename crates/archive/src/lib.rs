//! dagstream's history archive: what observers have verified, in object
//! storage, for new observers to bootstrap from without loading a
//! validator with old history.
//!
//! # Data flow
//! Writing: an observer with `--archive URL` runs an [`Archiver`] beside
//! its node. It reads the node's store through the node's relay source
//! ([`dagstream_publisher::StoreSource`]): checkpoints up to the highest
//! certified, their commits and blocks (wire bytes), the blocks that
//! certify each bundle's last commit, and the epochs' hand-offs. The
//! [`BundleBuilder`] packs them into bundles of whole checkpoints, each
//! exactly what a commit stream would send; the archiver compresses them,
//! uploads a few at once, and advances the watermark in order.
//!
//! Reading: an observer with `--bootstrap-from URL` opens an
//! [`ArchiveReader`], checks the manifest, and fetches the bundles after
//! its own last commit in order, a few at once. Each bundle's batch then
//! goes through the observer's verification exactly as a validator's
//! would: the archive is untrusted.
//!
//! # Layout
//! - [`objects`]: the object store behind a URL (`file://`, `s3://`).
//! - [`layout`]: names and small objects (manifest, lease, watermark).
//! - `records`: reading and writing those small objects.
//! - [`bundle`]: the bundle, built from a store, encoded and decoded.
//! - [`pool`]: buffers for decompressed bundles, reused.
//! - [`writer`]: the [`Archiver`].
//! - [`reader`]: the [`ArchiveReader`].
//! - [`metrics`], [`error`].
//!
//! The format is specified in `docs/archive.md`.

pub mod bundle;
pub mod error;
pub mod layout;
pub mod metrics;
pub mod objects;
pub mod pool;
pub mod reader;
mod records;
pub mod writer;

pub use bundle::BundleBuilder;
pub use error::{ArchiveError, Result};
pub use layout::{Manifest, Watermark};
pub use metrics::ArchiveMetrics;
pub use objects::Objects;
pub use reader::{ArchiveReader, Fetched};
pub use writer::{writer_id, ArchiveConfig, ArchiveProgress, Archiver};
