//! [`RedbStore`]: the on-disk [`Store`], one [redb] file.
//!
//! # Tables
//! Every table maps bytes to bytes, so that each decode of data read from the
//! file is done here and fails with [`StoreError::Corrupt`] instead of
//! panicking inside a typed redb decode (redb's `&str` and integer types
//! assume their bytes are well formed).
//!
//! - `blocks`: block key → exact `SignedBlock` bytes. The key is round
//!   (big-endian u64) ‖ author (big-endian u32) ‖ digest (32 bytes), so that
//!   byte order is `(round, author, digest)` order.
//! - `commits`: commit index (big-endian u64) → `Commit` BCS bytes.
//! - `meta`: UTF-8 key → value.
//! - `state`: the store's own bookkeeping: the format version and the highest
//!   commit index ever written.

use crate::{PruneStats, Result, Store, StoreError, WriteBatch};
use ::redb::{
    Builder, Database, Durability, ReadOnlyTable, ReadableDatabase, ReadableTable, TableDefinition,
    WriteTransaction,
};
use bytes::Bytes;
use dagstream_types::{BlockRef, CommitIndex, Digest, Round, TrustedCommit};
use std::fmt;
use std::path::{Path, PathBuf};

type RawTable = TableDefinition<'static, &'static [u8], &'static [u8]>;
type RawReadTable = ReadOnlyTable<&'static [u8], &'static [u8]>;

const BLOCKS: RawTable = TableDefinition::new("blocks");
const COMMITS: RawTable = TableDefinition::new("commits");
const META: RawTable = TableDefinition::new("meta");
const STATE: RawTable = TableDefinition::new("state");

/// `state` key of the layout version, written when the file is created.
const FORMAT_VERSION_KEY: &[u8] = b"format_version";
/// `state` key of the highest commit index ever written, kept across pruning
/// so that the commit sequence continues where it was.
const LAST_COMMIT_INDEX_KEY: &[u8] = b"last_commit_index";
/// The table layout this build reads and writes. Bump it when the layout
/// changes, so that an older build refuses a newer file instead of misreading
/// it.
const FORMAT_VERSION: u64 = 1;

/// Length of a block key: round (8) ‖ author (4) ‖ digest (32).
const BLOCK_KEY_LEN: usize = 8 + 4 + 32;

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
/// committed with [`Durability::Immediate`] (fsync before returning) and
/// two-phase commit. redb serializes write transactions, and readers see a
/// snapshot of the last committed one.
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
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|err| StoreError::Io {
                operation: "create directory",
                path: parent.display().to_string(),
                reason: err.to_string(),
            })?;
        }
        let db = Builder::new()
            .set_cache_size(options.cache_size_bytes)
            .set_check_integrity_on_open(options.check_integrity_on_open)
            .create(path)
            .map_err(db_error("open"))?;
        let store = RedbStore {
            db,
            path: path.to_path_buf(),
        };
        store.init()?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates the tables of a new file, or checks the format of an existing
    /// one.
    fn init(&self) -> Result<()> {
        let txn = self.begin_write()?;
        let existing = {
            // Opening a table in a write transaction creates it.
            for table in [BLOCKS, COMMITS, META] {
                txn.open_table(table).map_err(db_error("open table"))?;
            }
            let mut state = txn.open_table(STATE).map_err(db_error("open table"))?;
            let existing = get_u64(&state, FORMAT_VERSION_KEY, "format version")?;
            if existing.is_none() {
                state
                    .insert(FORMAT_VERSION_KEY, FORMAT_VERSION.to_be_bytes().as_slice())
                    .map_err(db_error("write"))?;
            }
            existing
        };
        match existing {
            None => txn.commit().map_err(db_error("commit")),
            Some(FORMAT_VERSION) => txn.abort().map_err(db_error("abort")),
            Some(other) => Err(StoreError::Corrupt {
                what: "format version",
                reason: format!("the file has format {other}, this build reads {FORMAT_VERSION}"),
            }),
        }
    }

    /// A write transaction that is durable once committed.
    fn begin_write(&self) -> Result<WriteTransaction> {
        let mut txn = self.db.begin_write().map_err(db_error("begin write"))?;
        // Immediate is redb's default; set it anyway, since `write` promises it.
        txn.set_durability(Durability::Immediate)
            .map_err(db_error("set durability"))?;
        // Block bytes come from peers. With one-phase commit, a writer that
        // controls part of the data and can crash the node at the right moment
        // could, in theory, make a partial transaction look committed (see
        // `WriteTransaction::set_two_phase_commit`); two phases cost one more
        // fsync per write and rule it out.
        txn.set_two_phase_commit(true);
        Ok(txn)
    }

    fn read_table(&self, definition: RawTable) -> Result<RawReadTable> {
        let txn = self.db.begin_read().map_err(db_error("begin read"))?;
        txn.open_table(definition).map_err(db_error("open table"))
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
        let txn = self.begin_write()?;
        {
            let mut state = txn.open_table(STATE).map_err(db_error("open table"))?;
            let last = get_u64(&state, LAST_COMMIT_INDEX_KEY, "last commit index")?.unwrap_or(0);
            // On error the transaction is dropped, which aborts it: nothing of
            // the batch is written.
            let new_last = batch.check_commit_sequence(last)?;

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

            let mut commits = txn.open_table(COMMITS).map_err(db_error("open table"))?;
            for commit in batch.commits() {
                commits
                    .insert(
                        commit.index().to_be_bytes().as_slice(),
                        commit.serialized().as_ref(),
                    )
                    .map_err(db_error("write"))?;
            }
            if new_last != last {
                state
                    .insert(LAST_COMMIT_INDEX_KEY, new_last.to_be_bytes().as_slice())
                    .map_err(db_error("write"))?;
            }

            let mut meta = txn.open_table(META).map_err(db_error("open table"))?;
            for (key, value) in batch.meta() {
                meta.insert(key.as_bytes(), value.as_ref())
                    .map_err(db_error("write"))?;
            }
        }
        txn.commit().map_err(db_error("commit"))
    }

    fn read_block(&self, block: &BlockRef) -> Result<Option<Bytes>> {
        let table = self.read_table(BLOCKS)?;
        let value = table
            .get(encode_block_key(block).as_slice())
            .map_err(db_error("read"))?;
        Ok(value.map(|v| Bytes::copy_from_slice(v.value())))
    }

    fn contains_block(&self, block: &BlockRef) -> Result<bool> {
        let table = self.read_table(BLOCKS)?;
        let value = table
            .get(encode_block_key(block).as_slice())
            .map_err(db_error("read"))?;
        Ok(value.is_some())
    }

    fn scan_blocks(
        &self,
        from: BlockRef,
        to_round: Round,
        limit: usize,
    ) -> Result<Vec<(BlockRef, Bytes)>> {
        if from.round > to_round || limit == 0 {
            return Ok(Vec::new());
        }
        let start = encode_block_key(&from);
        let end = encode_block_key(&BlockRef::round_end(to_round));
        let table = self.read_table(BLOCKS)?;
        let range = table
            .range(start.as_slice()..=end.as_slice())
            .map_err(db_error("read"))?;
        range
            .take(limit)
            .map(|entry| {
                let (key, value) = entry.map_err(db_error("read"))?;
                Ok((
                    decode_block_key(key.value())?,
                    Bytes::copy_from_slice(value.value()),
                ))
            })
            .collect()
    }

    fn highest_block_round(&self) -> Result<Option<Round>> {
        let table = self.read_table(BLOCKS)?;
        let last = table.last().map_err(db_error("read"))?;
        last.map(|(key, _)| decode_block_key(key.value()).map(|r| r.round))
            .transpose()
    }

    fn read_commit(&self, index: CommitIndex) -> Result<Option<TrustedCommit>> {
        let table = self.read_table(COMMITS)?;
        let key = index.to_be_bytes();
        let value = table.get(key.as_slice()).map_err(db_error("read"))?;
        value.map(|v| decode_commit(&key, v.value())).transpose()
    }

    fn scan_commits(&self, from: CommitIndex, limit: usize) -> Result<Vec<TrustedCommit>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let start = from.to_be_bytes();
        let table = self.read_table(COMMITS)?;
        let range = table.range(start.as_slice()..).map_err(db_error("read"))?;
        range
            .take(limit)
            .map(|entry| {
                let (key, value) = entry.map_err(db_error("read"))?;
                decode_commit(key.value(), value.value())
            })
            .collect()
    }

    fn last_commit(&self) -> Result<Option<TrustedCommit>> {
        let table = self.read_table(COMMITS)?;
        let last = table.last().map_err(db_error("read"))?;
        last.map(|(key, value)| decode_commit(key.value(), value.value()))
            .transpose()
    }

    fn last_commit_index(&self) -> Result<CommitIndex> {
        let table = self.read_table(STATE)?;
        Ok(get_u64(&table, LAST_COMMIT_INDEX_KEY, "last commit index")?.unwrap_or(0))
    }

    fn commit_range(&self) -> Result<Option<(CommitIndex, CommitIndex)>> {
        let table = self.read_table(COMMITS)?;
        let first = table.first().map_err(db_error("read"))?;
        let first = first
            .map(|(key, _)| decode_u64(key.value(), "commit key"))
            .transpose()?;
        let last = table.last().map_err(db_error("read"))?;
        let last = last
            .map(|(key, _)| decode_u64(key.value(), "commit key"))
            .transpose()?;
        Ok(first.zip(last))
    }

    fn read_meta(&self, key: &str) -> Result<Option<Bytes>> {
        let table = self.read_table(META)?;
        let value = table.get(key.as_bytes()).map_err(db_error("read"))?;
        Ok(value.map(|v| Bytes::copy_from_slice(v.value())))
    }

    fn prune(&self, below_commit: CommitIndex, below_round: Round) -> Result<PruneStats> {
        let txn = self.begin_write()?;
        let stats = {
            let mut commits = txn.open_table(COMMITS).map_err(db_error("open table"))?;
            let commits_bound = below_commit.to_be_bytes();
            let pruned_commits =
                drain_below(&mut commits, &commits_bound).map_err(db_error("prune"))?;
            let mut blocks = txn.open_table(BLOCKS).map_err(db_error("open table"))?;
            let blocks_bound = encode_block_key(&BlockRef::round_start(below_round));
            let pruned_blocks =
                drain_below(&mut blocks, &blocks_bound).map_err(db_error("prune"))?;
            PruneStats {
                commits: pruned_commits,
                blocks: pruned_blocks,
            }
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

/// Deletes every entry with key `< bound`, returning how many there were.
fn drain_below(
    table: &mut ::redb::Table<'_, &'static [u8], &'static [u8]>,
    bound: &[u8],
) -> std::result::Result<u64, ::redb::StorageError> {
    let mut count = 0;
    // extract_from_if removes the entries the iterator yields.
    for entry in table.extract_from_if(..bound, |_, _| true)? {
        entry?;
        count += 1;
    }
    Ok(count)
}

/// Maps any redb error to [`StoreError::Database`].
fn db_error<E: fmt::Display>(operation: &'static str) -> impl Fn(E) -> StoreError {
    move |err| StoreError::Database {
        operation,
        reason: err.to_string(),
    }
}

/// The key of a block: round (BE) ‖ author (BE) ‖ digest, so that byte order is
/// `(round, author, digest)` order.
pub(crate) fn encode_block_key(block: &BlockRef) -> [u8; BLOCK_KEY_LEN] {
    let mut key = [0u8; BLOCK_KEY_LEN];
    key[..8].copy_from_slice(&block.round.to_be_bytes());
    key[8..12].copy_from_slice(&block.author.to_be_bytes());
    key[12..].copy_from_slice(block.digest.as_bytes());
    key
}

pub(crate) fn decode_block_key(key: &[u8]) -> Result<BlockRef> {
    let key: &[u8; BLOCK_KEY_LEN] = key.try_into().map_err(|_| StoreError::Corrupt {
        what: "block key",
        reason: format!("{} bytes, expected {BLOCK_KEY_LEN}", key.len()),
    })?;
    let (round, rest) = key.split_at(8);
    let (author, digest) = rest.split_at(4);
    // The lengths are fixed by the array type, so these conversions cannot
    // fail; map them anyway rather than unwrap.
    let corrupt = |_| StoreError::Corrupt {
        what: "block key",
        reason: "bad field length".to_string(),
    };
    Ok(BlockRef {
        round: u64::from_be_bytes(round.try_into().map_err(corrupt)?),
        author: u32::from_be_bytes(author.try_into().map_err(corrupt)?),
        digest: Digest(digest.try_into().map_err(corrupt)?),
    })
}

fn decode_u64(bytes: &[u8], what: &'static str) -> Result<u64> {
    let bytes: [u8; 8] = bytes.try_into().map_err(|_| StoreError::Corrupt {
        what,
        reason: format!("{} bytes, expected 8", bytes.len()),
    })?;
    Ok(u64::from_be_bytes(bytes))
}

/// Reads a big-endian u64 from a bytes → bytes table.
fn get_u64(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    key: &[u8],
    what: &'static str,
) -> Result<Option<u64>> {
    let value = table.get(key).map_err(db_error("read"))?;
    value.map(|v| decode_u64(v.value(), what)).transpose()
}

/// Decodes a stored commit and checks it is stored under its own index.
fn decode_commit(key: &[u8], value: &[u8]) -> Result<TrustedCommit> {
    let index = decode_u64(key, "commit key")?;
    let commit = TrustedCommit::decode(Bytes::copy_from_slice(value)).map_err(|err| {
        StoreError::Corrupt {
            what: "commit",
            reason: format!("commit {index}: {err}"),
        }
    })?;
    if commit.index() != index {
        return Err(StoreError::Corrupt {
            what: "commit",
            reason: format!("commit {} stored under index {index}", commit.index()),
        });
    }
    Ok(commit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn block_ref() -> impl Strategy<Value = BlockRef> {
        (any::<u64>(), any::<u32>(), any::<[u8; 32]>()).prop_map(|(round, author, digest)| {
            BlockRef {
                round,
                author,
                digest: Digest(digest),
            }
        })
    }

    proptest! {
        #[test]
        fn block_key_round_trips_and_keeps_order(a in block_ref(), b in block_ref()) {
            let (ka, kb) = (encode_block_key(&a), encode_block_key(&b));
            prop_assert_eq!(decode_block_key(&ka).unwrap(), a);
            prop_assert_eq!(ka.cmp(&kb), a.cmp(&b));
        }
    }

    #[test]
    fn block_key_of_wrong_length_is_corrupt() {
        let err = decode_block_key(&[0; 43]).unwrap_err();
        assert_eq!(err.name(), "corrupt");
    }

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
    fn newer_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        drop(RedbStore::open(&path).unwrap());
        tamper(&path, STATE, FORMAT_VERSION_KEY, &2u64.to_be_bytes());
        let err = RedbStore::open(&path).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Corrupt {
                    what: "format version",
                    ..
                }
            ),
            "{err}"
        );
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
