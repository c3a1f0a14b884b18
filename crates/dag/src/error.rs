//! The one error type of this crate.

use dagstream_types::BlockRef;

pub type Result<T, E = DagError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum DagError {
    /// More blocks wait for missing ancestors than the configured bound. The
    /// sender is sending blocks whose history it never delivers.
    #[error("{limit} blocks already wait for missing ancestors; refusing {block:?}")]
    TooManyPendingBlocks { limit: usize, block: BlockRef },
    /// A block above the GC round that a commit needs is not in the DAG. The
    /// DAG accepts blocks only after their ancestors, so this means the state
    /// was restored without the blocks it needs.
    #[error("block {block:?} is needed to linearize a commit but is not in the DAG")]
    MissingBlock { block: BlockRef },
    /// Recovery was given blocks whose ancestors above the GC round it was
    /// not given: the stored DAG is incomplete.
    #[error("recovered DAG is incomplete: {missing_ancestors_of} blocks lack ancestors")]
    IncompleteRecovery { missing_ancestors_of: usize },
}

impl DagError {
    /// A short, static name for each kind of error: a metric label.
    pub fn name(&self) -> &'static str {
        match self {
            DagError::TooManyPendingBlocks { .. } => "too_many_pending_blocks",
            DagError::MissingBlock { .. } => "missing_block",
            DagError::IncompleteRecovery { .. } => "incomplete_recovery",
        }
    }
}
