//! [`WriteBatch`]: everything one [`Store::write`](crate::Store::write) applies
//! atomically.

use crate::{Result, StoreError};
use bytes::Bytes;
use dagstream_types::{CommitIndex, TrustedCommit, VerifiedBlock};
use std::fmt;

/// Blocks, commits and metadata to be written together, all or nothing.
///
/// Blocks are kept as the [`VerifiedBlock`]s given (cheap to clone: they
/// share their bytes), and stored as their exact wire bytes; a writer can
/// announce what a batch made durable from the batch itself. Commits must
/// continue the store's commit sequence (see
/// [`Store::write`](crate::Store::write)).
#[derive(Clone, Default)]
pub struct WriteBatch {
    blocks: Vec<VerifiedBlock>,
    commits: Vec<TrustedCommit>,
    meta: Vec<(String, Bytes)>,
}

impl WriteBatch {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a block, stored as its exact `SignedBlock` bytes under its ref.
    pub fn add_block(&mut self, block: &VerifiedBlock) -> &mut Self {
        self.blocks.push(block.clone());
        self
    }

    /// Adds the next commit. Commits of one batch must be in index order.
    pub fn add_commit(&mut self, commit: TrustedCommit) -> &mut Self {
        self.commits.push(commit);
        self
    }

    /// Sets a metadata value. A later value for the same key, in this batch or
    /// a later one, replaces it.
    pub fn put_meta(&mut self, key: impl Into<String>, value: impl Into<Bytes>) -> &mut Self {
        self.meta.push((key.into(), value.into()));
        self
    }

    /// Appends everything of `later` after what this batch holds, as if it
    /// had been added here: writing the result is writing both, in order,
    /// atomically. A writer uses it to make several batches durable at once.
    pub fn append(&mut self, later: WriteBatch) -> &mut Self {
        self.blocks.extend(later.blocks);
        self.commits.extend(later.commits);
        self.meta.extend(later.meta);
        self
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty() && self.commits.is_empty() && self.meta.is_empty()
    }

    /// The blocks, in insertion order.
    pub fn blocks(&self) -> &[VerifiedBlock] {
        &self.blocks
    }

    /// The commits, in insertion order.
    pub fn commits(&self) -> &[TrustedCommit] {
        &self.commits
    }

    /// The metadata writes, in insertion order.
    pub fn meta(&self) -> &[(String, Bytes)] {
        &self.meta
    }

    /// Checks that the commits are exactly `last + 1, last + 2, ...`, where
    /// `last` is the highest commit index the store ever accepted, and returns
    /// the highest index after this batch.
    ///
    /// For [`Store`](crate::Store) implementations: call it before writing
    /// anything of the batch.
    pub fn check_commit_sequence(&self, last: CommitIndex) -> Result<CommitIndex> {
        self.commits.iter().try_fold(last, |last, commit| {
            // An index of u64::MAX cannot be followed; the sequence cannot
            // realistically get there, but saturating keeps this panic-free.
            let expected = last.saturating_add(1);
            if commit.index() == expected && expected != last {
                Ok(expected)
            } else {
                Err(StoreError::NonContiguousCommit {
                    expected,
                    got: commit.index(),
                })
            }
        })
    }
}

impl fmt::Debug for WriteBatch {
    /// Counts and commit indexes: the block bytes would drown everything else.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteBatch")
            .field("blocks", &self.blocks.len())
            .field(
                "commits",
                &self.commits.iter().map(|c| c.index()).collect::<Vec<_>>(),
            )
            .field(
                "meta",
                &self
                    .meta
                    .iter()
                    .map(|(k, _)| k.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}
