//! [`HookedStore`]: a [`MemStore`] whose calls a test can watch or hold.

use bytes::Bytes;
use dagstream_store::{MemStore, PruneStats, Result, Store, StoreError, WriteBatch};
use dagstream_types::{BlockRef, CommitIndex, Round, TrustedCommit};

/// What a test does at some of a [`HookedStore`]'s calls. Each defaults to
/// nothing.
pub trait StoreHooks: Send + Sync + 'static {
    /// Before a write is applied: a test may block here to hold writes.
    fn before_write(&self) {}
    /// Whether `batch` is applied: `false` fails the write, as a disk
    /// gone (or a process killed) at that point would leave it.
    fn accept(&self, _batch: &WriteBatch) -> bool {
        true
    }
    /// At each read of block bytes (`read_block`, and each `scan_blocks`).
    fn on_block_read(&self) {}
}

/// A [`MemStore`] that calls `hooks`, and otherwise answers as it does.
#[derive(Default)]
pub struct HookedStore<H> {
    pub inner: MemStore,
    pub hooks: H,
}

impl<H> HookedStore<H> {
    pub fn new(hooks: H) -> Self {
        HookedStore {
            inner: MemStore::new(),
            hooks,
        }
    }
}

impl<H: StoreHooks> Store for HookedStore<H> {
    fn write(&self, batch: WriteBatch) -> Result<()> {
        self.hooks.before_write();
        if !self.hooks.accept(&batch) {
            return Err(StoreError::Io {
                operation: "write",
                path: "hooked store".into(),
                reason: "the test cut writes off here".into(),
            });
        }
        self.inner.write(batch)
    }
    fn read_block(&self, block: &BlockRef) -> Result<Option<Bytes>> {
        self.hooks.on_block_read();
        self.inner.read_block(block)
    }
    fn contains_block(&self, block: &BlockRef) -> Result<bool> {
        self.inner.contains_block(block)
    }
    fn scan_blocks(
        &self,
        from: BlockRef,
        to_round: Round,
        limit: usize,
    ) -> Result<Vec<(BlockRef, Bytes)>> {
        self.hooks.on_block_read();
        self.inner.scan_blocks(from, to_round, limit)
    }
    fn highest_block_round(&self) -> Result<Option<Round>> {
        self.inner.highest_block_round()
    }
    fn read_commit(&self, index: CommitIndex) -> Result<Option<TrustedCommit>> {
        self.inner.read_commit(index)
    }
    fn scan_commits(&self, from: CommitIndex, limit: usize) -> Result<Vec<TrustedCommit>> {
        self.inner.scan_commits(from, limit)
    }
    fn last_commit(&self) -> Result<Option<TrustedCommit>> {
        self.inner.last_commit()
    }
    fn last_commit_index(&self) -> Result<CommitIndex> {
        self.inner.last_commit_index()
    }
    fn commit_range(&self) -> Result<Option<(CommitIndex, CommitIndex)>> {
        self.inner.commit_range()
    }
    fn read_meta(&self, key: &str) -> Result<Option<Bytes>> {
        self.inner.read_meta(key)
    }
    fn prune(&self, below_commit: CommitIndex, below_round: Round) -> Result<PruneStats> {
        self.inner.prune(below_commit, below_round)
    }
}

/// Damages a file as a disk fault or a stray write would: deterministic
/// noise over every other 4 KiB page after the first. Returns the number of
/// pages of the file.
pub fn damage_pages(file: &std::path::Path) -> u64 {
    use std::os::unix::fs::FileExt;
    let pages = std::fs::metadata(file).expect("the file exists").len() / 4096;
    let handle = std::fs::OpenOptions::new()
        .write(true)
        .open(file)
        .expect("the file opens for writing");
    for page in (1..pages).step_by(2) {
        let noise: Vec<u8> = (0..4096u64)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8 ^ page as u8)
            .collect();
        handle
            .write_all_at(&noise, page * 4096)
            .expect("the page is written");
    }
    pages
}
