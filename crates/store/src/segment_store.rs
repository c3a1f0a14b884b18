//! [`SegmentStore`]: the on-disk [`Store`] built for how nodes write blocks.
//!
//! Nodes write large, immutable block bytes in round order and read them
//! back by range. A B-tree of values (as in [`RedbStore`](crate::RedbStore))
//! writes each block's pages again on every change near it; here block bytes
//! go to append-only segment files (`segments`) at the speed of
//! the disk, and redb keeps only a small index.
//!
//! # Layout of the directory
//! - `segments/`: the segment files.
//! - `index.redb`, with the tables:
//!   - `block_index`: block key (as in `redb_tables`) → location
//!     (segment ‖ offset ‖ length);
//!   - `segments`: segment number → highest round of a block in it, to
//!     know which segments pruning empties;
//!   - `commits`, `meta` and `state` as in `redb_tables`; `state`
//!     also holds `log_end`, the newest segment and the end of its
//!     acknowledged bytes.
//!
//! # Durability and recovery
//! A write appends the new blocks to the newest segment (around the page
//! cache where the file system allows it) and fsyncs it, then
//! commits one redb transaction with their locations, the commits, the
//! metadata and the new `log_end`. The index never points at bytes that are
//! not durable, and a batch is visible when, and only when, its transaction
//! is. On open, bytes past `log_end` (a torn or unacknowledged append) are
//! cut off, and segment files the index does not know of (a crash during
//! rotation or pruning) are deleted.
//!
//! Block bytes are content-addressed: every read checks them against the
//! digest in their key, so a damaged segment is reported as
//! [`StoreError::Corrupt`], never served.

use crate::redb_tables::{
    self, db_error, decode_u64, encode_block_key, get_u64, read_table, Commit, RawTable, STATE,
};
use crate::segments::{self, Appender, Location, Readers};
use crate::{PruneStats, Result, Store, StoreError, WriteBatch};
use ::redb::{Database, ReadableTable, TableDefinition, WriteTransaction};
use bytes::Bytes;
use dagstream_types::{BlockRef, CommitIndex, Digest, Round, TrustedCommit, VerifiedBlock};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

const BLOCK_INDEX: RawTable = TableDefinition::new("block_index");
const SEGMENTS: RawTable = TableDefinition::new("segments");

/// One-phase commits for the index (see `redb_tables::begin_write`): its
/// pages hold locations and digests this node computed, and commits whose
/// bytes are fixed by digests, so no peer can put the arbitrary bytes the
/// attack on one-phase commit needs into them. It spares one fsync per
/// write, about a tenth of the write time for 1 MB batches
/// (`bench_store`).
const COMMIT: Commit = Commit::OnePhase;

/// `state` key of the newest segment and the end of its acknowledged bytes:
/// segment (BE u64) ‖ end (BE u64).
const LOG_END_KEY: &[u8] = b"log_end";

/// The layout this build reads and writes. Bump it when the layout changes,
/// so that an older build refuses a newer store instead of misreading it.
/// 2: blocks carry system messages (checkpoint signatures), and nodes keep
/// checkpoint state in the metadata.
const FORMAT_VERSION: u64 = 2;

/// A scan reads blocks that lie next to each other in a segment with one
/// read of at most this many bytes. The blocks it returns share that read's
/// buffer, so a caller that keeps one block keeps up to this much alive.
const MAX_READ_RUN_BYTES: u64 = 1 << 20;

/// Settings of a [`SegmentStore`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentOptions {
    /// A new segment starts before a write that would take the newest one
    /// past this size.
    pub segment_bytes: u64,
    /// Memory redb may use to cache index pages.
    pub index_cache_bytes: usize,
    /// Verify the checksum of every index page when opening (see
    /// [`RedbOptions`](crate::RedbOptions)).
    pub check_integrity_on_open: bool,
    /// Skip that check when the index is larger than this: the check reads
    /// the whole file, and a start must not take minutes. `u64::MAX`:
    /// always check, as `dagstream store repair` does.
    pub max_checked_index_bytes: u64,
}

impl Default for SegmentOptions {
    fn default() -> Self {
        SegmentOptions {
            // Segments are what pruning deletes: smaller ones free space
            // sooner, larger ones mean fewer files. At mainnet load (about
            // 7 MB/s of blocks) 128 MiB is a segment every 20 s, and a
            // terabyte of history is about 8,000 files.
            segment_bytes: 128 << 20,
            // The index holds 64 bytes per block and the commits (a few KB
            // each); the pages read again are those of recent rounds.
            index_cache_bytes: 64 << 20,
            // On: a plain open trusts the file, and redb panics on pages
            // damaged outside it (a test wrote random pages into an index:
            // `inspect` panicked, a node went on writing). The check reads
            // the whole index, about 1.6 ms per MB on this machine
            // (`docs/benchmarks.md`): the index is small next to the
            // segments, whose blocks are checked against their digests on
            // every read instead.
            check_integrity_on_open: true,
            // 4 GiB is about 6.5 s of checking (`docs/benchmarks.md`), and
            // some hours of history at the mainnet profile, whose index
            // grows by 10 to 20 GB a day while nothing prunes it. Past it a
            // start skips the check; a suspected disk fault calls for
            // `dagstream store repair`, which checks whatever the size.
            max_checked_index_bytes: 4 << 30,
        }
    }
}

/// A [`Store`] of append-only segment files indexed by redb; see the
/// [module docs](self).
pub struct SegmentStore {
    index: Database,
    dir: PathBuf,
    segments_dir: PathBuf,
    /// Held by writes and prunes: one writer at a time, as in redb.
    appender: Mutex<Appender>,
    readers: Readers,
}

impl SegmentStore {
    /// Opens the store in directory `dir` with default [`SegmentOptions`],
    /// creating it if missing.
    pub fn open(dir: &Path) -> Result<SegmentStore> {
        Self::open_with(dir, &SegmentOptions::default())
    }

    /// Opens the store in directory `dir`, creating it if missing, and
    /// repairs what a crash left (see the [module docs](self)).
    ///
    /// Fails if another process has the store open.
    pub fn open_with(dir: &Path, options: &SegmentOptions) -> Result<SegmentStore> {
        let segments_dir = dir.join("segments");
        redb_tables::create_dir(&segments_dir)?;
        let index_path = dir.join("index.redb");
        let index_bytes = std::fs::metadata(&index_path).map_or(0, |m| m.len());
        let index = redb_tables::open_database(
            &index_path,
            options.index_cache_bytes,
            options.check_integrity_on_open && index_bytes <= options.max_checked_index_bytes,
        )?;
        redb_tables::init(&index, &[BLOCK_INDEX, SEGMENTS], FORMAT_VERSION, COMMIT)?;

        let state = read_table(&index, STATE)?;
        let log_end = state
            .get(LOG_END_KEY)
            .map_err(db_error("read"))?
            .map(|v| decode_log_end(v.value()))
            .transpose()?;
        let indexed = read_table(&index, SEGMENTS)?
            .iter()
            .map_err(db_error("read"))?
            .map(|entry| {
                let (key, _) = entry.map_err(db_error("read"))?;
                decode_u64(key.value(), "segment number")
            })
            .collect::<Result<BTreeSet<u64>>>()?;
        let appender = Appender::recover(&segments_dir, options.segment_bytes, log_end, &indexed)?;
        Ok(SegmentStore {
            index,
            dir: dir.to_path_buf(),
            readers: Readers::new(&segments_dir),
            segments_dir,
            appender: Mutex::new(appender),
        })
    }

    /// The store's directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    // A panic while writing leaves the appender at a position no index
    // entry is past (it only advances after a durable append), so it is
    // still usable after a poisoned lock.
    fn lock_appender(&self) -> MutexGuard<'_, Appender> {
        self.appender.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends the blocks the index does not have yet and records them in
    /// `txn`.
    fn write_blocks(
        &self,
        txn: &WriteTransaction,
        appender: &mut Appender,
        blocks: &[VerifiedBlock],
    ) -> Result<()> {
        let mut index = txn
            .open_table(BLOCK_INDEX)
            .map_err(db_error("open table"))?;
        let mut seen = HashSet::with_capacity(blocks.len());
        let mut new = Vec::with_capacity(blocks.len());
        for block in blocks {
            let key = encode_block_key(&block.reference());
            // Present already, in the store or earlier in the batch: leave it.
            if seen.insert(key)
                && index
                    .get(key.as_slice())
                    .map_err(db_error("read"))?
                    .is_none()
            {
                new.push((key, block));
            }
        }
        if new.is_empty() {
            return Ok(());
        }
        let bytes: Vec<&Bytes> = new.iter().map(|(_, b)| b.serialized()).collect();
        let locations = appender.append(&bytes)?;

        let mut highest: BTreeMap<u64, Round> = BTreeMap::new();
        for ((key, block), location) in new.iter().zip(&locations) {
            index
                .insert(key.as_slice(), location.encode().as_slice())
                .map_err(db_error("write"))?;
            let round = highest.entry(location.segment).or_default();
            *round = (*round).max(block.round());
        }
        let mut segments = txn.open_table(SEGMENTS).map_err(db_error("open table"))?;
        for (segment, round) in highest {
            let key = segment.to_be_bytes();
            let known = get_u64(&segments, &key, "segment round")?.unwrap_or(0);
            segments
                .insert(key.as_slice(), round.max(known).to_be_bytes().as_slice())
                .map_err(db_error("write"))?;
        }
        let mut state = txn.open_table(STATE).map_err(db_error("open table"))?;
        state
            .insert(LOG_END_KEY, encode_log_end(appender.position()).as_slice())
            .map_err(db_error("write"))?;
        Ok(())
    }

    /// Reads the blocks at `entries`, which are in the order to return them,
    /// one read per run of neighbours in a segment, and checks each against
    /// its digest.
    fn read_located(&self, entries: &[(BlockRef, Location)]) -> Result<Vec<(BlockRef, Bytes)>> {
        let mut out = Vec::with_capacity(entries.len());
        let mut rest = entries;
        while let Some(&(_, first)) = rest.first() {
            let mut end = first.end();
            let run = 1 + rest[1..]
                .iter()
                .take_while(|(_, l)| {
                    let next = l.segment == first.segment
                        && l.offset == end
                        && l.end() - first.offset <= MAX_READ_RUN_BYTES;
                    if next {
                        end = l.end();
                    }
                    next
                })
                .count();
            let bytes =
                self.readers
                    .read(first.segment, first.offset, (end - first.offset) as usize)?;
            for (block, location) in &rest[..run] {
                let start = (location.offset - first.offset) as usize;
                let block_bytes = bytes.slice(start..start + location.len as usize);
                check_digest(block, location, &block_bytes)?;
                out.push((*block, block_bytes));
            }
            rest = &rest[run..];
        }
        Ok(out)
    }
}

impl fmt::Debug for SegmentStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SegmentStore")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Store for SegmentStore {
    fn write(&self, batch: WriteBatch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut appender = self.lock_appender();
        let txn = redb_tables::begin_write(&self.index, COMMIT)?;
        // Checked before appending anything: a rejected batch leaves no
        // trace, not even dead space in a segment.
        let sequence = redb_tables::check_commit_sequence(&txn, &batch)?;
        self.write_blocks(&txn, &mut appender, batch.blocks())?;
        redb_tables::write_commits_and_meta(&txn, &batch, sequence)?;
        txn.commit().map_err(db_error("commit"))
    }

    fn read_block(&self, block: &BlockRef) -> Result<Option<Bytes>> {
        let table = read_table(&self.index, BLOCK_INDEX)?;
        let Some(location) = redb_tables::get_block(&table, block, Location::decode)? else {
            return Ok(None);
        };
        let mut blocks = self.read_located(&[(*block, location)])?;
        Ok(blocks.pop().map(|(_, bytes)| bytes))
    }

    fn read_blocks(&self, blocks: &[BlockRef]) -> Result<Vec<Option<Bytes>>> {
        let table = read_table(&self.index, BLOCK_INDEX)?;
        // (position in `blocks`, ref, location) of the blocks held, in file
        // order, so that the blocks of one write come back in one read.
        let mut found = Vec::with_capacity(blocks.len());
        for (position, block) in blocks.iter().enumerate() {
            if let Some(location) = redb_tables::get_block(&table, block, Location::decode)? {
                found.push((position, *block, location));
            }
        }
        found.sort_by_key(|(_, _, l)| (l.segment, l.offset));
        let entries: Vec<(BlockRef, Location)> = found.iter().map(|(_, b, l)| (*b, *l)).collect();
        let mut out = vec![None; blocks.len()];
        for ((position, _, _), (_, bytes)) in found.iter().zip(self.read_located(&entries)?) {
            out[*position] = Some(bytes);
        }
        Ok(out)
    }

    fn contains_block(&self, block: &BlockRef) -> Result<bool> {
        let table = read_table(&self.index, BLOCK_INDEX)?;
        Ok(redb_tables::get_block(&table, block, |_| Ok(()))?.is_some())
    }

    fn scan_blocks(
        &self,
        from: BlockRef,
        to_round: Round,
        limit: usize,
    ) -> Result<Vec<(BlockRef, Bytes)>> {
        let entries = redb_tables::scan_block_table(
            &self.index,
            BLOCK_INDEX,
            from,
            to_round,
            limit,
            Location::decode,
        )?;
        self.read_located(&entries)
    }

    fn highest_block_round(&self) -> Result<Option<Round>> {
        redb_tables::highest_block_round(&self.index, BLOCK_INDEX)
    }

    fn read_commit(&self, index: CommitIndex) -> Result<Option<TrustedCommit>> {
        redb_tables::read_commit(&self.index, index)
    }

    fn scan_commits(&self, from: CommitIndex, limit: usize) -> Result<Vec<TrustedCommit>> {
        redb_tables::scan_commits(&self.index, from, limit)
    }

    fn last_commit(&self) -> Result<Option<TrustedCommit>> {
        redb_tables::last_commit(&self.index)
    }

    fn last_commit_index(&self) -> Result<CommitIndex> {
        redb_tables::last_commit_index(&self.index)
    }

    fn commit_range(&self) -> Result<Option<(CommitIndex, CommitIndex)>> {
        redb_tables::commit_range(&self.index)
    }

    fn read_meta(&self, key: &str) -> Result<Option<Bytes>> {
        redb_tables::read_meta(&self.index, key)
    }

    fn prune(&self, below_commit: CommitIndex, below_round: Round) -> Result<PruneStats> {
        let appender = self.lock_appender();
        let (newest, _) = appender.position();
        let txn = redb_tables::begin_write(&self.index, COMMIT)?;
        let (stats, emptied) = {
            let commits = redb_tables::prune_commits(&txn, below_commit)?;
            let mut index = txn
                .open_table(BLOCK_INDEX)
                .map_err(db_error("open table"))?;
            let bound = encode_block_key(&BlockRef::round_start(below_round));
            let blocks = redb_tables::drain_below(&mut index, &bound).map_err(db_error("prune"))?;
            // A segment whose every block is now pruned can go, except the
            // newest, which is still being written.
            let mut segments = txn.open_table(SEGMENTS).map_err(db_error("open table"))?;
            let mut emptied = Vec::new();
            for entry in segments.iter().map_err(db_error("read"))? {
                let (key, value) = entry.map_err(db_error("read"))?;
                let segment = decode_u64(key.value(), "segment number")?;
                let highest = decode_u64(value.value(), "segment round")?;
                if highest < below_round && segment != newest {
                    emptied.push(segment);
                }
            }
            for segment in &emptied {
                segments
                    .remove(segment.to_be_bytes().as_slice())
                    .map_err(db_error("prune"))?;
            }
            (PruneStats { commits, blocks }, emptied)
        };
        if stats == PruneStats::default() && emptied.is_empty() {
            // Nothing to delete: spare the fsyncs.
            txn.abort().map_err(db_error("abort"))?;
            return Ok(stats);
        }
        txn.commit().map_err(db_error("commit"))?;
        // Once the index no longer knows them; a crash before this point
        // leaves files that the next open deletes.
        self.readers.forget(&emptied);
        segments::remove(&self.segments_dir, emptied)?;
        Ok(stats)
    }
}

fn check_digest(block: &BlockRef, location: &Location, bytes: &[u8]) -> Result<()> {
    if Digest::of(bytes) == block.digest {
        return Ok(());
    }
    Err(StoreError::Corrupt {
        what: "block",
        reason: format!(
            "the {} bytes of block {block:?} at offset {} of segment {} do not match its digest",
            location.len, location.offset, location.segment
        ),
    })
}

fn encode_log_end((segment, end): (u64, u64)) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&segment.to_be_bytes());
    out[8..].copy_from_slice(&end.to_be_bytes());
    out
}

fn decode_log_end(bytes: &[u8]) -> Result<(u64, u64)> {
    if bytes.len() != 16 {
        return Err(StoreError::Corrupt {
            what: "log end",
            reason: format!("{} bytes, expected 16", bytes.len()),
        });
    }
    let (segment, end) = bytes.split_at(8);
    Ok((decode_u64(segment, "log end")?, decode_u64(end, "log end")?))
}
