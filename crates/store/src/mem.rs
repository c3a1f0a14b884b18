//! [`MemStore`]: a [`Store`] in memory, for tests and simulations.

use crate::{PruneStats, Result, Store, WriteBatch};
use bytes::Bytes;
use dagstream_types::{BlockRef, CommitIndex, Round, TrustedCommit};
use std::collections::BTreeMap;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// A [`Store`] of ordered maps behind one lock. Nothing survives the process.
///
/// A write validates the whole batch before changing anything and holds the
/// write lock while applying it, so readers see whole batches only.
#[derive(Debug, Default)]
pub struct MemStore {
    inner: RwLock<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    blocks: BTreeMap<BlockRef, Bytes>,
    commits: BTreeMap<CommitIndex, TrustedCommit>,
    meta: BTreeMap<String, Bytes>,
    /// Highest commit index ever written; pruning keeps it.
    last_commit_index: CommitIndex,
}

impl MemStore {
    pub fn new() -> Self {
        Self::default()
    }

    // A panic while a lock is held poisons it. Writes validate before they
    // change anything and inserting into a map cannot leave it half-updated,
    // so the data behind a poisoned lock is still whole: keep serving it.
    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_lock(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl Store for MemStore {
    fn write(&self, batch: WriteBatch) -> Result<()> {
        let mut inner = self.write_lock();
        let last = batch.check_commit_sequence(inner.last_commit_index)?;
        for block in batch.blocks() {
            inner
                .blocks
                .entry(block.reference())
                .or_insert_with(|| block.serialized().clone());
        }
        for commit in batch.commits() {
            inner.commits.insert(commit.index(), commit.clone());
        }
        for (key, value) in batch.meta() {
            inner.meta.insert(key.clone(), value.clone());
        }
        inner.last_commit_index = last;
        Ok(())
    }

    fn read_block(&self, block: &BlockRef) -> Result<Option<Bytes>> {
        Ok(self.read().blocks.get(block).cloned())
    }

    fn contains_block(&self, block: &BlockRef) -> Result<bool> {
        Ok(self.read().blocks.contains_key(block))
    }

    fn scan_blocks(
        &self,
        from: BlockRef,
        to_round: Round,
        limit: usize,
    ) -> Result<Vec<(BlockRef, Bytes)>> {
        if from.round > to_round {
            return Ok(Vec::new());
        }
        let end = BlockRef::round_end(to_round);
        Ok(self
            .read()
            .blocks
            .range(from..=end)
            .take(limit)
            .map(|(reference, bytes)| (*reference, bytes.clone()))
            .collect())
    }

    fn highest_block_round(&self) -> Result<Option<Round>> {
        Ok(self.read().blocks.last_key_value().map(|(r, _)| r.round))
    }

    fn read_commit(&self, index: CommitIndex) -> Result<Option<TrustedCommit>> {
        Ok(self.read().commits.get(&index).cloned())
    }

    fn scan_commits(&self, from: CommitIndex, limit: usize) -> Result<Vec<TrustedCommit>> {
        Ok(self
            .read()
            .commits
            .range(from..)
            .take(limit)
            .map(|(_, commit)| commit.clone())
            .collect())
    }

    fn last_commit(&self) -> Result<Option<TrustedCommit>> {
        Ok(self.read().commits.last_key_value().map(|(_, c)| c.clone()))
    }

    fn last_commit_index(&self) -> Result<CommitIndex> {
        Ok(self.read().last_commit_index)
    }

    fn commit_range(&self) -> Result<Option<(CommitIndex, CommitIndex)>> {
        let inner = self.read();
        Ok(inner
            .commits
            .first_key_value()
            .zip(inner.commits.last_key_value())
            .map(|((first, _), (last, _))| (*first, *last)))
    }

    fn read_meta(&self, key: &str) -> Result<Option<Bytes>> {
        Ok(self.read().meta.get(key).cloned())
    }

    fn prune(&self, below_commit: CommitIndex, below_round: Round) -> Result<PruneStats> {
        let mut inner = self.write_lock();
        let kept_commits = inner.commits.split_off(&below_commit);
        let pruned_commits = std::mem::replace(&mut inner.commits, kept_commits);
        let kept_blocks = inner.blocks.split_off(&BlockRef::round_start(below_round));
        let pruned_blocks = std::mem::replace(&mut inner.blocks, kept_blocks);
        let (first, bound) = (
            crate::randomness_key(0),
            crate::randomness_key(below_commit),
        );
        inner
            .meta
            .retain(|key, _| !(first.as_str()..bound.as_str()).contains(&key.as_str()));
        Ok(PruneStats {
            commits: pruned_commits.len() as u64,
            blocks: pruned_blocks.len() as u64,
        })
    }
}
