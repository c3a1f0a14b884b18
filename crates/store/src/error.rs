//! The one error type of this crate.

use dagstream_types::CommitIndex;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Everything that can go wrong when reading or writing a store.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The database engine failed: I/O, a lock held by another process, or
    /// corruption the engine itself detected.
    #[error("database {operation} failed: {reason}")]
    Database {
        operation: &'static str,
        reason: String,
    },
    /// A file system operation around the database failed.
    #[error("cannot {operation} {path}: {reason}")]
    Io {
        operation: &'static str,
        path: String,
        reason: String,
    },
    /// Bytes read back from the store do not decode: the file was damaged or
    /// written by something else.
    #[error("corrupt {what} in store: {reason}")]
    Corrupt { what: &'static str, reason: String },
    /// Another process has the store open: a node runs on its data dir.
    #[error("{path} is in use by another process: is a node running on this data dir?")]
    InUse { path: String },
    /// The integrity check on open found pages that do not match their
    /// checksums: the file was damaged outside the store. Nothing is read
    /// from it, nor written to it.
    #[error("{path} is damaged ({reason}): the store refuses to use it")]
    Damaged { path: String, reason: String },
    /// The store was written by a build of another format: nothing is read
    /// from it, nor written to it.
    #[error("the store has format {found}, and this build reads format {expected}")]
    OtherFormat { found: u64, expected: u64 },
    /// A batch's commits do not continue the commit sequence. The whole batch
    /// was rejected.
    #[error("commit {got} does not continue the commit sequence, expected commit {expected}")]
    NonContiguousCommit {
        expected: CommitIndex,
        got: CommitIndex,
    },
}

impl StoreError {
    /// A short, static name for each kind of error: a metric label.
    pub fn name(&self) -> &'static str {
        match self {
            StoreError::Database { .. } => "database",
            StoreError::Io { .. } => "io",
            StoreError::Corrupt { .. } => "corrupt",
            StoreError::InUse { .. } => "in_use",
            StoreError::Damaged { .. } => "damaged",
            StoreError::OtherFormat { .. } => "other_format",
            StoreError::NonContiguousCommit { .. } => "non_contiguous_commit",
        }
    }
}
