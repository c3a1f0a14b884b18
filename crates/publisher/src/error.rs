//! The one error type of this crate.

use dagstream_store::StoreError;
use dagstream_types::{CommitIndex, Epoch, TypesError};

pub type Result<T, E = PublisherError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum PublisherError {
    #[error("invalid publisher config: {field} {reason}")]
    InvalidConfig { field: &'static str, reason: String },
    #[error("commit {index} is below the highest commit but missing from the source")]
    MissingCommit { index: CommitIndex },
    #[error(
        "commit {index} is no longer retained; the lowest available commit is {lowest}{}",
        archive_hint(archive.as_deref())
    )]
    Pruned {
        index: CommitIndex,
        lowest: CommitIndex,
        /// Where the pruned history is, if the node knows.
        archive: Option<String>,
    },
    #[error("block {block} of commit {index} is missing from the source")]
    MissingBlock { index: CommitIndex, block: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored data is malformed: {0}")]
    Decode(#[from] TypesError),
    #[error("cannot serve: {reason}")]
    Serve { reason: String },
    #[error("{}: {reason}", path.display())]
    Security {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("cannot make certificates: {reason}")]
    Pki { reason: String },
    #[error("the stored hand-off of epoch {epoch} is corrupt: {reason}")]
    CorruptEpochs { epoch: Epoch, reason: String },
    #[error("epoch {epoch} has ended but its hand-off is not in the source")]
    MissingHandOff { epoch: Epoch },
}

impl PublisherError {
    /// A short, static name for each kind of error: a metric label.
    pub fn name(&self) -> &'static str {
        match self {
            PublisherError::InvalidConfig { .. } => "invalid_config",
            PublisherError::MissingCommit { .. } => "missing_commit",
            PublisherError::Pruned { .. } => "pruned",
            PublisherError::MissingBlock { .. } => "missing_block",
            PublisherError::Store(err) => err.name(),
            PublisherError::Decode(err) => err.name(),
            PublisherError::Serve { .. } => "serve",
            PublisherError::Security { .. } => "security",
            PublisherError::Pki { .. } => "pki",
            PublisherError::CorruptEpochs { .. } => "corrupt_epochs",
            PublisherError::MissingHandOff { .. } => "missing_hand_off",
        }
    }
}

fn archive_hint(archive: Option<&str>) -> String {
    archive.map_or_else(String::new, |url| {
        format!(
            "; earlier history is in the archive {url} (dagstream observer --bootstrap-from {url})"
        )
    })
}

impl From<PublisherError> for tonic::Status {
    fn from(err: PublisherError) -> Self {
        match err {
            PublisherError::Pruned { .. } => tonic::Status::out_of_range(err.to_string()),
            _ => tonic::Status::internal(err.to_string()),
        }
    }
}
