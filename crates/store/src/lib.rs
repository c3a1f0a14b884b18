//! dagstream persistent storage: blocks, commits and metadata.
//!
//! A node keeps what consensus produced here: the blocks of the DAG, the
//! sequence of commits, and a few metadata values (progress markers and the
//! like). [`Store`] is the interface; [`MemStore`] keeps everything in memory
//! (tests, simulations); [`SegmentStore`] keeps block bytes in append-only
//! segment files indexed by [redb], the layout nodes run on; [`RedbStore`]
//! keeps everything in one redb file. Both survive crashes.
//!
//! # Layout
//! - [`batch`]: [`WriteBatch`], the unit of writing.
//! - [`mem`]: [`MemStore`], ordered maps behind a lock.
//! - [`segment_store`]: [`SegmentStore`], the on-disk store nodes use, over
//!   `segments`, its append-only files of block bytes.
//! - [`redb_store`]: [`RedbStore`], everything in one redb file.
//! - `redb_tables`: the commit, metadata and state tables and the key
//!   encodings both on-disk stores share.
//! - [`recovery`]: what a node reads back to rebuild its consensus core.
//! - [`error`]: [`StoreError`], one variant per way a store operation fails.
//!
//! # Data flow
//! A producer (the consensus core, or an observer following a validator)
//! collects the blocks, commits and metadata of one step in a [`WriteBatch`]
//! and hands it to [`Store::write`], which applies all of it atomically and
//! durably, or none of it. The store enforces the commit sequence: every
//! commit is written exactly once, in index order, without gaps.
//!
//! Readers look blocks up by [`BlockRef`] or scan them in `(round, author,
//! digest)` order with [`Store::scan_blocks`], and read commits by index with
//! [`Store::read_commit`] and [`Store::scan_commits`]. Blocks are stored and
//! returned as their exact wire bytes, never re-encoded: they can be sent on
//! as they are, or turned back into a block with
//! [`VerifiedBlock::decode_trusted`](dagstream_types::VerifiedBlock::decode_trusted).
//! [`Store::prune`] drops old commits and rounds.
//!
//! ```
//! use dagstream_store::{MemStore, Store, WriteBatch};
//! use dagstream_types::{BlockRef, Commit, Digest, TrustedCommit};
//!
//! let store = MemStore::new();
//! let leader = BlockRef { round: 1, author: 0, digest: Digest::ZERO };
//! let commit = TrustedCommit::new(Commit {
//!     index: 1,
//!     previous_digest: Digest::ZERO,
//!     timestamp_ms: 0,
//!     leader,
//!     blocks: vec![leader],
//! });
//! let mut batch = WriteBatch::new();
//! batch.add_commit(commit.clone()).put_meta("progress", &b"1"[..]);
//! store.write(batch).unwrap();
//! assert_eq!(store.last_commit().unwrap(), Some(commit));
//! ```

pub mod batch;
pub mod error;
pub mod mem;
pub mod recovery;
pub mod redb_store;
mod redb_tables;
pub mod segment_store;
mod segments;

pub use batch::WriteBatch;

/// Meta key of the highest certified checkpoint's sequence (LE u64), kept
/// by every node that certifies checkpoints (the simulated committee, an
/// observer) and read by the publisher, which reports it to subscribers.
pub const HIGHEST_CERTIFIED_CHECKPOINT_KEY: &str = "checkpoints/highest_certified";

/// Meta key of the randomness rounds that commit `index` generated (BCS of
/// a `Vec<RandomnessOutput>`, see `dagstream_types::randomness`), written
/// with the commit when it generated any. Validators and observers write
/// it; publishers read it for the commit stream.
pub fn randomness_key(index: CommitIndex) -> String {
    format!("randomness/{index:020}")
}
/// Meta key of closed checkpoint `sequence`'s summary (BCS of a
/// `dagstream_types::CheckpointSummary`), kept by an observer: zero-padded,
/// so that keys sort by sequence.
pub fn checkpoint_summary_key(sequence: u64) -> String {
    format!("checkpoint/{sequence:020}")
}

/// Meta key of checkpoint `sequence`'s certificate (BCS of a
/// `dagstream_types::CertifiedCheckpoint`), kept by an observer for each
/// checkpoint certified on its own.
pub fn checkpoint_certificate_key(sequence: u64) -> String {
    format!("certificate/{sequence:020}")
}

/// Meta key of the certified hand-off from epoch `epoch` to the next (BCS
/// of a `dagstream_types::EpochChange`), written with the round (a
/// validator) or the commits (an observer) that end the epoch, before
/// anything of the next epoch. Publishers read it to hand subscribers over.
pub fn epoch_change_key(epoch: Epoch) -> String {
    format!("{EPOCH_CHANGE_PREFIX}{epoch:020}")
}

/// The prefix of every [`epoch_change_key`]: a scan of it lists the
/// hand-offs in epoch order.
pub const EPOCH_CHANGE_PREFIX: &str = "epochs/";

/// The id kept under meta `key`: made up (128 random bits, hex) and
/// stored the first time, read back ever after. A node's writer ids (its
/// archive's, its sink's) are the same across restarts, and another data
/// dir has others.
pub fn kept_id(store: &dyn Store, key: &str) -> Result<String> {
    if let Some(id) = store.read_meta(key)? {
        return Ok(String::from_utf8_lossy(&id).into_owned());
    }
    let id = hex::encode(rand::random::<[u8; 16]>());
    let mut batch = WriteBatch::new();
    batch.put_meta(key, Bytes::from(id.clone()));
    store.write(batch)?;
    Ok(id)
}

pub use error::{Result, StoreError};
pub use mem::MemStore;
pub use redb_store::{RedbOptions, RedbStore};
pub use segment_store::{SegmentOptions, SegmentStore};

use bytes::Bytes;
use dagstream_types::{BlockRef, CommitIndex, Epoch, Round, TrustedCommit};

/// Storage for blocks, commits and metadata.
///
/// Every method may be called from any thread; writes are serialized, and a
/// reader sees each write entirely or not at all.
pub trait Store: Send + Sync + 'static {
    /// Applies the whole batch atomically and durably: when this returns `Ok`,
    /// all of it survives a crash; if it fails or the process dies, none of it
    /// is visible.
    ///
    /// Blocks already present are left as they are. The batch's commits must
    /// be exactly `last + 1, last + 2, ...` where `last` is
    /// [`Store::last_commit_index`]; otherwise the whole batch is rejected with
    /// [`StoreError::NonContiguousCommit`]. An empty batch does nothing.
    fn write(&self, batch: WriteBatch) -> Result<()>;

    /// The exact wire bytes of a block.
    fn read_block(&self, block: &BlockRef) -> Result<Option<Bytes>>;

    /// The bytes of each of `blocks`, in their order (`None` for a block not
    /// held): what a commit names, read at once. Stores that can read
    /// neighbouring blocks together override it.
    fn read_blocks(&self, blocks: &[BlockRef]) -> Result<Vec<Option<Bytes>>> {
        blocks.iter().map(|b| self.read_block(b)).collect()
    }

    fn contains_block(&self, block: &BlockRef) -> Result<bool>;

    /// Blocks with ref `>= from`, in `(round, author, digest)` order, up to and
    /// including round `to_round`, at most `limit` of them.
    fn scan_blocks(
        &self,
        from: BlockRef,
        to_round: Round,
        limit: usize,
    ) -> Result<Vec<(BlockRef, Bytes)>>;

    /// The highest round of a retained block, `None` when there is none.
    fn highest_block_round(&self) -> Result<Option<Round>>;

    fn read_commit(&self, index: CommitIndex) -> Result<Option<TrustedCommit>>;

    /// Retained commits with index `>= from`, ascending, at most `limit`.
    fn scan_commits(&self, from: CommitIndex, limit: usize) -> Result<Vec<TrustedCommit>>;

    /// The retained commit with the highest index.
    fn last_commit(&self) -> Result<Option<TrustedCommit>>;

    /// The highest commit index ever written, 0 for a fresh store. Pruning
    /// does not lower it: the next batch's first commit must be this + 1.
    fn last_commit_index(&self) -> Result<CommitIndex>;

    /// `(lowest, highest)` retained commit index, `None` when no commit is
    /// retained.
    fn commit_range(&self) -> Result<Option<(CommitIndex, CommitIndex)>>;

    fn read_meta(&self, key: &str) -> Result<Option<Bytes>>;

    /// Retention: deletes, atomically and durably, the commits with index
    /// `< below_commit` (with their [`randomness_key`] entries) and the
    /// blocks with round `< below_round`.
    fn prune(&self, below_commit: CommitIndex, below_round: Round) -> Result<PruneStats>;
}

/// What one [`Store::prune`] deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PruneStats {
    pub commits: u64,
    pub blocks: u64,
}
