//! [`RedbStore`]: the on-disk [`Store`], one [redb] file.
//!
//! # Tables
//! - `blocks`: block key → exact `SignedBlock` bytes. The key is round
//!   (big-endian u64) ‖ author (big-endian u32) ‖ digest (32 bytes), so that
//!   byte order is `(round, author, digest)` order.
//! - `commits`, `meta` and `state`: as described in `redb_tables`.

use crate::redb_tables::{self, db_error, encode_block_key, read_table, Commit, RawTable};
use crate::{PruneStats, Result, Store, WriteBatch};
use ::redb::{Database, ReadableTable, TableDefinition};
use bytes::Bytes;
use dagstream_types::{BlockRef, CommitIndex, Round, TrustedCommit};
use std::fmt;
use std::path::{Path, PathBuf};

const BLOCKS: RawTable = TableDefinition::new("blocks");

/// Block bytes are chosen by peers, so commits take two phases (see
/// `redb_tables::begin_write`).
const COMMIT: Commit = Commit::TwoPhase;

/// The table layout this build reads and writes. Bump it when the layout
/// changes, so that an older build refuses a newer file instead of misreading
/// it. 2: blocks carry system messages (checkpoint signatures), and nodes
/// keep checkpoint state in the metadata.
const FORMAT_VERSION: u64 = 2;

/// Settings of a [`RedbStore`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedbOptions {
    /// Memory redb may use to cache pages.
    pub cache_size_bytes: usize,
    /// Verify the checksum of every page when opening, so that a file damaged
    /// outside of redb's control is refused with an error instead of being
    /// trusted.
    pub check_integrity_on_open: bool,
}

impl Default for RedbOptions {
    fn default() -> Self {
        RedbOptions {
            // redb's own default is 1 GiB, sized for a process that is mostly
            // a database. A node also runs consensus and serves streams; the
            // pages it reads again are those of the latest rounds and commits
            // (what followers catch up on), which fit in far less. Colder
            // reads still hit the OS page cache.
            cache_size_bytes: 256 << 20,
            // The check reads the whole file, which makes opening a large
            // store slow. redb recovers from crashes on its own (the crash
            // test exercises it); turn this on after a suspected disk fault.
            check_integrity_on_open: false,
        }
    }
}

/// A [`Store`] in one redb database file.
///
/// Each [`Store::write`] and [`Store::prune`] is one redb write transaction
/// committed with [`Durability::Immediate`](::redb::Durability::Immediate)
/// (fsync before returning) and two-phase commit. redb serializes write
/// transactions, and readers see a snapshot of the last committed one.
pub struct RedbStore {
    db: Database,
    path: PathBuf,
}

impl RedbStore {
    /// Opens the store at `path` with default [`RedbOptions`], creating the
    /// file and its parent directories if missing.
    pub fn open(path: &Path) -> Result<RedbStore> {
        Self::open_with(path, &RedbOptions::default())
    }

    /// Opens the store at `path`, creating the file and its parent
    /// directories if missing.
    ///
    /// Fails if another process has the file open.
    pub fn open_with(path: &Path, options: &RedbOptions) -> Result<RedbStore> {
        let db = redb_tables::open_database(
            path,
            options.cache_size_bytes,
            options.check_integrity_on_open,
        )?;
        redb_tables::init(&db, &[BLOCKS], FORMAT_VERSION, COMMIT)?;
        Ok(RedbStore {
            db,
            path: path.to_path_buf(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Store for RedbStore {
    fn write(&self, batch: WriteBatch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let txn = redb_tables::begin_write(&self.db, COMMIT)?;
        // On error the transaction is dropped, which aborts it: nothing of
        // the batch is written.
        let sequence = redb_tables::check_commit_sequence(&txn, &batch)?;
        {
            let mut blocks = txn.open_table(BLOCKS).map_err(db_error("open table"))?;
            for block in batch.blocks() {
                let key = encode_block_key(&block.reference());
                // Present already: leave it, and spare rewriting its pages.
                if blocks
                    .get(key.as_slice())
                    .map_err(db_error("read"))?
                    .is_none()
                {
                    blocks
                        .insert(key.as_slice(), block.serialized().as_ref())
                        .map_err(db_error("write"))?;
                }
            }
        }
        redb_tables::write_commits_and_meta(&txn, &batch, sequence)?;
        txn.commit().map_err(db_error("commit"))
    }

    fn read_block(&self, block: &BlockRef) -> Result<Option<Bytes>> {
        let table = read_table(&self.db, BLOCKS)?;
        redb_tables::get_block(&table, block, |v| Ok(Bytes::copy_from_slice(v)))
    }

    fn contains_block(&self, block: &BlockRef) -> Result<bool> {
        let table = read_table(&self.db, BLOCKS)?;
        Ok(redb_tables::get_block(&table, block, |_| Ok(()))?.is_some())
    }

    fn scan_blocks(
        &self,
        from: BlockRef,
        to_round: Round,
        limit: usize,
    ) -> Result<Vec<(BlockRef, Bytes)>> {
        redb_tables::scan_block_table(&self.db, BLOCKS, from, to_round, limit, |v| {
            Ok(Bytes::copy_from_slice(v))
        })
    }

    fn highest_block_round(&self) -> Result<Option<Round>> {
        redb_tables::highest_block_round(&self.db, BLOCKS)
    }

    fn read_commit(&self, index: CommitIndex) -> Result<Option<TrustedCommit>> {
        redb_tables::read_commit(&self.db, index)
    }

    fn scan_commits(&self, from: CommitIndex, limit: usize) -> Result<Vec<TrustedCommit>> {
        redb_tables::scan_commits(&self.db, from, limit)
    }

    fn last_commit(&self) -> Result<Option<TrustedCommit>> {
        redb_tables::last_commit(&self.db)
    }

    fn last_commit_index(&self) -> Result<CommitIndex> {
        redb_tables::last_commit_index(&self.db)
    }

    fn commit_range(&self) -> Result<Option<(CommitIndex, CommitIndex)>> {
        redb_tables::commit_range(&self.db)
    }

    fn read_meta(&self, key: &str) -> Result<Option<Bytes>> {
        redb_tables::read_meta(&self.db, key)
    }

    fn prune(&self, below_commit: CommitIndex, below_round: Round) -> Result<PruneStats> {
        let txn = redb_tables::begin_write(&self.db, COMMIT)?;
        let stats = {
            let commits = redb_tables::prune_commits(&txn, below_commit)?;
            let mut blocks = txn.open_table(BLOCKS).map_err(db_error("open table"))?;
            let blocks_bound = encode_block_key(&BlockRef::round_start(below_round));
            let blocks =
                redb_tables::drain_below(&mut blocks, &blocks_bound).map_err(db_error("prune"))?;
            PruneStats { commits, blocks }
        };
        if stats == PruneStats::default() {
            // Nothing to delete: spare the fsyncs.
            txn.abort().map_err(db_error("abort"))?;
        } else {
            txn.commit().map_err(db_error("commit"))?;
        }
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redb_tables::{COMMITS, FORMAT_VERSION_KEY, LAST_COMMIT_INDEX_KEY, STATE};
    use crate::StoreError;
    use dagstream_types::Digest;

    /// Writes raw bytes into a table of a closed store, behind its back.
    fn tamper(path: &Path, table: RawTable, key: &[u8], value: &[u8]) {
        let db = Database::create(path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(table).unwrap().insert(key, value).unwrap();
        txn.commit().unwrap();
    }

    #[test]
    fn malformed_stored_data_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        drop(RedbStore::open(&path).unwrap());
        tamper(&path, COMMITS, &1u64.to_be_bytes(), b"not a commit");
        tamper(&path, COMMITS, &[1, 2, 3], b"short key");
        tamper(&path, BLOCKS, b"short", b"block");
        tamper(&path, STATE, LAST_COMMIT_INDEX_KEY, b"bad");

        let store = RedbStore::open(&path).unwrap();
        let corrupt = |what: &str, err: StoreError| {
            assert!(
                matches!(&err, StoreError::Corrupt { what: w, .. } if *w == what),
                "{err}"
            );
        };
        corrupt("commit", store.read_commit(1).unwrap_err());
        corrupt("commit", store.scan_commits(0, 10).unwrap_err());
        // The short key sorts after every 8-byte key of a small index.
        corrupt("commit key", store.scan_commits(2, 10).unwrap_err());
        corrupt("commit key", store.last_commit().unwrap_err());
        corrupt("commit key", store.commit_range().unwrap_err());
        let all_rounds = store.scan_blocks(BlockRef::round_start(0), u64::MAX, 10);
        corrupt("block key", all_rounds.unwrap_err());
        corrupt("block key", store.highest_block_round().unwrap_err());
        corrupt("last commit index", store.last_commit_index().unwrap_err());
        corrupt(
            "last commit index",
            store.write(commit_batch(1)).unwrap_err(),
        );
    }

    #[test]
    fn commit_under_the_wrong_index_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        drop(RedbStore::open(&path).unwrap());
        let commit = commit_batch(2).commits()[0].clone();
        tamper(&path, COMMITS, &1u64.to_be_bytes(), commit.serialized());
        let store = RedbStore::open(&path).unwrap();
        assert!(matches!(
            store.last_commit().unwrap_err(),
            StoreError::Corrupt { what: "commit", .. }
        ));
    }

    #[test]
    fn another_format_is_refused() {
        for found in [FORMAT_VERSION - 1, FORMAT_VERSION + 1] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("store.redb");
            drop(RedbStore::open(&path).unwrap());
            tamper(&path, STATE, FORMAT_VERSION_KEY, &found.to_be_bytes());
            let err = RedbStore::open(&path).unwrap_err();
            assert_eq!(
                err,
                StoreError::OtherFormat {
                    found,
                    expected: FORMAT_VERSION
                }
            );
        }
    }

    fn commit_batch(index: CommitIndex) -> WriteBatch {
        let leader = BlockRef::round_start(index);
        let mut batch = WriteBatch::new();
        batch.add_commit(TrustedCommit::new(dagstream_types::Commit {
            index,
            previous_digest: Digest::ZERO,
            timestamp_ms: 0,
            leader,
            blocks: vec![leader],
        }));
        batch
    }
}
