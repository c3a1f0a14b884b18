//! The redb tables both on-disk stores share: commits, metadata and the
//! store's own state, plus the key encodings and the decoding of what is
//! read back.
//!
//! `RedbStore` keeps its blocks in redb too;
//! `SegmentStore` keeps only their locations there.
//! Everything else is written and read by the functions here, inside the
//! caller's transaction, so that a batch stays one atomic redb commit.
//!
//! Every table maps bytes to bytes, so that each decode of data read from the
//! file is done here and fails with [`StoreError::Corrupt`] instead of
//! panicking inside a typed redb decode (redb's `&str` and integer types
//! assume their bytes are well formed).

use crate::{Result, StoreError, WriteBatch};
use ::redb::{
    Builder, Database, DatabaseError, Durability, ReadOnlyTable, ReadableDatabase, ReadableTable,
    StorageError, Table, TableDefinition, WriteTransaction,
};
use bytes::Bytes;
use dagstream_types::{BlockRef, CommitIndex, Digest, Round, TrustedCommit};
use std::fmt;
use std::path::Path;

pub(crate) type RawTable = TableDefinition<'static, &'static [u8], &'static [u8]>;
pub(crate) type RawReadTable = ReadOnlyTable<&'static [u8], &'static [u8]>;

/// Commit index (big-endian u64) → `Commit` BCS bytes.
pub(crate) const COMMITS: RawTable = TableDefinition::new("commits");
/// UTF-8 key → value.
pub(crate) const META: RawTable = TableDefinition::new("meta");
/// The store's own bookkeeping: the format version, the highest commit index
/// ever written, and whatever else a store keeps about itself.
pub(crate) const STATE: RawTable = TableDefinition::new("state");

/// `state` key of the layout version, written when the file is created.
pub(crate) const FORMAT_VERSION_KEY: &[u8] = b"format_version";
/// `state` key of the highest commit index ever written, kept across pruning
/// so that the commit sequence continues where it was.
pub(crate) const LAST_COMMIT_INDEX_KEY: &[u8] = b"last_commit_index";

/// Length of a block key: round (8) ‖ author (4) ‖ digest (32).
pub(crate) const BLOCK_KEY_LEN: usize = 8 + 4 + 32;

/// Opens or creates the database at `path`, creating its parent directories.
pub(crate) fn open_database(
    path: &Path,
    cache_size_bytes: usize,
    check_integrity_on_open: bool,
) -> Result<Database> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir(parent)?;
    }
    Builder::new()
        .set_cache_size(cache_size_bytes)
        .set_check_integrity_on_open(check_integrity_on_open)
        .create(path)
        .map_err(|err| match err {
            DatabaseError::DatabaseAlreadyOpen => StoreError::InUse {
                path: path.display().to_string(),
            },
            DatabaseError::Storage(StorageError::Corrupted(reason)) => StoreError::Damaged {
                path: path.display().to_string(),
                reason,
            },
            other => db_error("open")(other),
        })
}

pub(crate) fn create_dir(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).map_err(|err| StoreError::Io {
        operation: "create directory",
        path: path.display().to_string(),
        reason: err.to_string(),
    })
}

/// Creates `tables` (and the shared ones) in a new file and records
/// `format_version`, or checks the version of an existing file.
pub(crate) fn init(
    db: &Database,
    tables: &[RawTable],
    format_version: u64,
    commit: Commit,
) -> Result<()> {
    let txn = begin_write(db, commit)?;
    let existing = {
        // Opening a table in a write transaction creates it.
        for table in tables.iter().chain(&[COMMITS, META]) {
            txn.open_table(*table).map_err(db_error("open table"))?;
        }
        let mut state = txn.open_table(STATE).map_err(db_error("open table"))?;
        let existing = get_u64(&state, FORMAT_VERSION_KEY, "format version")?;
        if existing.is_none() {
            state
                .insert(FORMAT_VERSION_KEY, format_version.to_be_bytes().as_slice())
                .map_err(db_error("write"))?;
        }
        existing
    };
    match existing {
        None => txn.commit().map_err(db_error("commit")),
        Some(version) if version == format_version => txn.abort().map_err(db_error("abort")),
        Some(found) => Err(StoreError::OtherFormat {
            found,
            expected: format_version,
        }),
    }
}

/// Whether a store's commits take two phases (see [`begin_write`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Commit {
    OnePhase,
    TwoPhase,
}

/// A write transaction that is durable once committed.
///
/// With one-phase commit, redb trusts a commit slot whose checksum matches.
/// Its docs describe a theoretical attack on that: someone who can put
/// arbitrary bytes into a transaction, control the order in which pages
/// reach the disk and crash the process during the fsync could make a
/// partial transaction look committed. Two phases cost one more fsync per
/// write and rule it out; a store whose pages hold peer-chosen bytes (block
/// bytes) uses them.
pub(crate) fn begin_write(db: &Database, commit: Commit) -> Result<WriteTransaction> {
    let mut txn = db.begin_write().map_err(db_error("begin write"))?;
    // Immediate is redb's default; set it anyway, since `Store::write`
    // promises it.
    txn.set_durability(Durability::Immediate)
        .map_err(db_error("set durability"))?;
    txn.set_two_phase_commit(commit == Commit::TwoPhase);
    Ok(txn)
}

pub(crate) fn read_table(db: &Database, definition: RawTable) -> Result<RawReadTable> {
    let txn = db.begin_read().map_err(db_error("begin read"))?;
    txn.open_table(definition).map_err(db_error("open table"))
}

/// The commit sequence of a batch about to be written in `txn`: the highest
/// index before it and after it. Fails, before anything is written, when the
/// batch does not continue the sequence.
pub(crate) fn check_commit_sequence(
    txn: &WriteTransaction,
    batch: &WriteBatch,
) -> Result<(CommitIndex, CommitIndex)> {
    let state = txn.open_table(STATE).map_err(db_error("open table"))?;
    let last = get_u64(&state, LAST_COMMIT_INDEX_KEY, "last commit index")?.unwrap_or(0);
    Ok((last, batch.check_commit_sequence(last)?))
}

/// Writes the batch's commits and metadata in `txn`; `sequence` is what
/// [`check_commit_sequence`] returned for it.
pub(crate) fn write_commits_and_meta(
    txn: &WriteTransaction,
    batch: &WriteBatch,
    (last, new_last): (CommitIndex, CommitIndex),
) -> Result<()> {
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
        let mut state = txn.open_table(STATE).map_err(db_error("open table"))?;
        state
            .insert(LAST_COMMIT_INDEX_KEY, new_last.to_be_bytes().as_slice())
            .map_err(db_error("write"))?;
    }
    let mut meta = txn.open_table(META).map_err(db_error("open table"))?;
    for (key, value) in batch.meta() {
        meta.insert(key.as_bytes(), value.as_ref())
            .map_err(db_error("write"))?;
    }
    Ok(())
}

/// Deletes the commits with index `< below_commit` in `txn`, and their
/// randomness (`randomness_key`). Returns how many commits.
pub(crate) fn prune_commits(txn: &WriteTransaction, below_commit: CommitIndex) -> Result<u64> {
    let mut commits = txn.open_table(COMMITS).map_err(db_error("open table"))?;
    let pruned =
        drain_below(&mut commits, &below_commit.to_be_bytes()).map_err(db_error("prune"))?;
    let mut meta = txn.open_table(META).map_err(db_error("open table"))?;
    // The keys are zero-padded: their byte order is the commits' order.
    let (first, bound) = (
        crate::randomness_key(0),
        crate::randomness_key(below_commit),
    );
    for entry in meta
        .extract_from_if(first.as_bytes()..bound.as_bytes(), |_, _| true)
        .map_err(db_error("prune"))?
    {
        entry.map_err(db_error("prune"))?;
    }
    Ok(pruned)
}

pub(crate) fn read_commit(db: &Database, index: CommitIndex) -> Result<Option<TrustedCommit>> {
    let table = read_table(db, COMMITS)?;
    let key = index.to_be_bytes();
    let value = table.get(key.as_slice()).map_err(db_error("read"))?;
    value.map(|v| decode_commit(&key, v.value())).transpose()
}

pub(crate) fn scan_commits(
    db: &Database,
    from: CommitIndex,
    limit: usize,
) -> Result<Vec<TrustedCommit>> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let start = from.to_be_bytes();
    let table = read_table(db, COMMITS)?;
    let range = table.range(start.as_slice()..).map_err(db_error("read"))?;
    range
        .take(limit)
        .map(|entry| {
            let (key, value) = entry.map_err(db_error("read"))?;
            decode_commit(key.value(), value.value())
        })
        .collect()
}

pub(crate) fn last_commit(db: &Database) -> Result<Option<TrustedCommit>> {
    let table = read_table(db, COMMITS)?;
    let last = table.last().map_err(db_error("read"))?;
    last.map(|(key, value)| decode_commit(key.value(), value.value()))
        .transpose()
}

pub(crate) fn last_commit_index(db: &Database) -> Result<CommitIndex> {
    let table = read_table(db, STATE)?;
    Ok(get_u64(&table, LAST_COMMIT_INDEX_KEY, "last commit index")?.unwrap_or(0))
}

pub(crate) fn commit_range(db: &Database) -> Result<Option<(CommitIndex, CommitIndex)>> {
    let table = read_table(db, COMMITS)?;
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

pub(crate) fn read_meta(db: &Database, key: &str) -> Result<Option<Bytes>> {
    let table = read_table(db, META)?;
    let value = table.get(key.as_bytes()).map_err(db_error("read"))?;
    Ok(value.map(|v| Bytes::copy_from_slice(v.value())))
}

/// The value under `block` in a table keyed by block key (`blocks` of
/// `RedbStore`, `block_index` of `SegmentStore`), decoded by `decode`.
pub(crate) fn get_block<T>(
    table: &RawReadTable,
    block: &BlockRef,
    decode: impl Fn(&[u8]) -> Result<T>,
) -> Result<Option<T>> {
    let value = table
        .get(encode_block_key(block).as_slice())
        .map_err(db_error("read"))?;
    value.map(|v| decode(v.value())).transpose()
}

/// The entries of a block-keyed table with ref `>= from`, up to and
/// including round `to_round`, at most `limit`, in key order, values
/// decoded by `decode`.
pub(crate) fn scan_block_table<T>(
    db: &Database,
    definition: RawTable,
    from: BlockRef,
    to_round: Round,
    limit: usize,
    decode: impl Fn(&[u8]) -> Result<T>,
) -> Result<Vec<(BlockRef, T)>> {
    if from.round > to_round || limit == 0 {
        return Ok(Vec::new());
    }
    let start = encode_block_key(&from);
    let end = encode_block_key(&BlockRef::round_end(to_round));
    let table = read_table(db, definition)?;
    let range = table
        .range(start.as_slice()..=end.as_slice())
        .map_err(db_error("read"))?;
    range
        .take(limit)
        .map(|entry| {
            let (key, value) = entry.map_err(db_error("read"))?;
            Ok((decode_block_key(key.value())?, decode(value.value())?))
        })
        .collect()
}

/// The highest round of a key in a block-keyed table.
pub(crate) fn highest_block_round(db: &Database, definition: RawTable) -> Result<Option<Round>> {
    let table = read_table(db, definition)?;
    let last = table.last().map_err(db_error("read"))?;
    last.map(|(key, _)| decode_block_key(key.value()).map(|r| r.round))
        .transpose()
}

/// Deletes every entry with key `< bound`, returning how many there were.
pub(crate) fn drain_below(
    table: &mut Table<'_, &'static [u8], &'static [u8]>,
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
pub(crate) fn db_error<E: fmt::Display>(operation: &'static str) -> impl Fn(E) -> StoreError {
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

pub(crate) fn decode_u64(bytes: &[u8], what: &'static str) -> Result<u64> {
    let bytes: [u8; 8] = bytes.try_into().map_err(|_| StoreError::Corrupt {
        what,
        reason: format!("{} bytes, expected 8", bytes.len()),
    })?;
    Ok(u64::from_be_bytes(bytes))
}

/// Reads a big-endian u64 from a bytes → bytes table.
pub(crate) fn get_u64(
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
}
