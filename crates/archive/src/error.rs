//! [`ArchiveError`]: one variant per way an archive operation fails, each
//! naming the archive object it concerns.

use dagstream_types::{CommitIndex, Digest};

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The archive URL cannot be used.
    #[error("archive URL {url}: {reason}")]
    Url { url: String, reason: String },

    /// The object store refused or failed an operation on an object.
    #[error("archive object {object}: {source}")]
    Store {
        object: String,
        #[source]
        source: object_store::Error,
    },

    /// The archive holds another chain's history.
    #[error("archive {archive} holds the chain {archived}, not ours ({ours})")]
    WrongChain {
        archive: String,
        archived: String,
        ours: Digest,
    },

    /// The archive was written in a format this build does not read.
    #[error("archive {archive} has format {format} version {version}; this build reads version {supported}")]
    UnknownFormat {
        archive: String,
        format: String,
        version: u32,
        supported: u32,
    },

    /// An object's bytes do not decode: damaged in storage or in transit.
    #[error("archive object {object} is damaged: {reason}")]
    Damaged { object: String, reason: String },

    /// An object the archive's own index names is not there.
    #[error("archive object {object} is missing")]
    Missing { object: String },

    /// An object is larger than any this format writes.
    #[error("archive object {object} is {size} bytes or more, above the limit of {max}")]
    TooLarge {
        object: String,
        size: usize,
        max: usize,
    },

    /// Another writer holds the archive: two must never interleave.
    #[error(
        "archive {archive} is written by another observer (writer {holder}, this one is {ours}); \
         stop it, or if it is gone for good, delete {archive}/writer.json"
    )]
    OtherWriter {
        archive: String,
        holder: String,
        ours: String,
    },

    /// The archive's watermark is past what this observer holds: it was
    /// written from a longer chain, or from another data dir.
    #[error(
        "archive {archive} is archived to commit {archived}, past this observer's commit \
         {local}; it cannot continue it"
    )]
    AheadOfStore {
        archive: String,
        archived: CommitIndex,
        local: CommitIndex,
    },

    /// Reading what to archive from the node's store failed.
    #[error("reading the chain to archive: {0}")]
    Source(#[from] dagstream_publisher::PublisherError),

    /// Reading the node's store failed.
    #[error("reading the chain to archive: {0}")]
    LocalStore(#[from] dagstream_store::StoreError),

    /// What the node's store holds does not decode.
    #[error("reading the chain to archive: {0}")]
    Types(#[from] dagstream_types::TypesError),
}

pub type Result<T, E = ArchiveError> = std::result::Result<T, E>;

impl ArchiveError {
    /// Whether trying again later may succeed: any failure of the object
    /// store but those of this build's own requests. An outage, a 5xx, a
    /// bucket not created yet, or credentials not yet granted are retried
    /// (with backoff, the failure shown in the status meanwhile).
    pub fn is_transient(&self) -> bool {
        match self {
            ArchiveError::Store { source, .. } => !matches!(
                source,
                object_store::Error::NotImplemented { .. }
                    | object_store::Error::NotSupported { .. }
                    | object_store::Error::InvalidPath { .. }
                    | object_store::Error::UnknownConfigurationKey { .. }
            ),
            _ => false,
        }
    }
}
