//! Storage-engine candidates for dagstream's block store, measured against raw
//! sequential file writes on the same disk in the same process run.
//!
//! # What it measures
//! One workload, shaped like the node's writes, stored by each candidate:
//!
//! - 400 batches written one after another. Each batch is durable (fsync'ed)
//!   before the next one starts, and its parts are written atomically.
//! - A batch is 10 blocks of 100 KiB of incompressible pseudo-random bytes,
//!   each under a 44-byte key `round (u64 BE) ‖ author (u32 BE) ‖
//!   blake3(value)`, where round is the batch number and author is 0..9; plus
//!   one 1 KiB commit under `batch number (u64 BE)` in a second table, and a
//!   `"progress" → batch number (u64 BE)` entry in a third.
//! - Then a full range scan over the blocks in key order (scan MB/s), and
//!   1,000 point reads of distinct random blocks by key (reads/s).
//!
//! Candidates:
//!
//! - `raw`: the baseline. One file; each batch's concatenated `key ‖ value`
//!   bytes are appended with one `write_all` and then `sync_data()`. The scan
//!   reads the file back sequentially; point reads are `pread`s at the known
//!   offsets of the values.
//! - `fjall`: an LSM tree with key-value separation (blob files) on the block
//!   keyspace, one `WriteBatch` across the three keyspaces per batch,
//!   committed with `PersistMode::SyncAll`. Two variants: `fjall-lz4` keeps
//!   fjall's default LZ4 for the journal and blob files, `fjall-nocomp` turns
//!   compression off (the values are incompressible, so LZ4 only costs CPU).
//! - `redb`: the engine of `dagstream_store::RedbStore`, configured as
//!   `dagstream_store::RedbStore` is: one write transaction per batch,
//!   `Durability::Immediate`, two-phase commit on, 256 MiB page cache.
//!
//! # How it measures
//! - All data is generated before any timing (deterministic xorshift64*), and
//!   kept in memory, so the timed loops only call the engine.
//! - Write MB/s = logical bytes (every key and value of every batch; the raw
//!   file holds exactly these bytes) / time from the first write to the return
//!   of the last durable commit. fjall goes on flushing its memtables to blob
//!   files in the background after that; the time to finish that work
//!   ("drain") and the bytes the process wrote to the disk (from
//!   `/proc/self/io`, which counts background threads too) are reported
//!   separately.
//! - Reads are cold: before the scan and again before the point reads, the
//!   store is closed, its files are evicted from the OS page cache
//!   (`posix_fadvise(DONTNEED)` on its own files only, so other work on the
//!   machine is not disturbed), and it is reopened, so neither the page cache
//!   nor the engine's own cache holds data from earlier phases. Every value
//!   read is compared with the bytes that were written.
//! - Scan MB/s counts the key and value bytes of the 4,000 blocks. The raw
//!   scan also has to read past the commit and meta records in its file (about
//!   1% more bytes), which is charged to its time.
//! - The size on disk is the space allocated to the store's directory after
//!   the writes, the drain and closing the store (what `du -s` reports).
//! - Commit latencies are kept per batch; the report counts the batches slower
//!   than 50 ms, to show stalls that an average hides.
//! - Each round runs every candidate in a fresh directory under
//!   `./tmp-bench` (not `/tmp`, which may be a RAM disk; the point is the
//!   same disk as the project) and deletes it after. The order of the
//!   candidates rotates from round to round so that none always goes first.
//!   Every round gets its own tables; a last table gives the median of each
//!   figure over the rounds.
//!
//! # Limits
//! - One machine, one disk, one run of a few rounds: a comparison, not a
//!   capacity figure. Other processes on the machine (a compile, say) show up
//!   as noise; run it on an otherwise idle machine when the numbers matter.
//! - 400 MB of data fits in memory many times over; the cold-read setup makes
//!   the reads hit the disk, but the engines' indexes are small enough to be
//!   cached after the first few reads.
//! - "Cold" means not in this kernel's page cache (the block-layer read
//!   counters confirm the bytes were read). On a virtual machine the host may
//!   still cache the virtual disk, so read figures can exceed what the
//!   physical disk does.
//! - Only the write pattern above is measured: no pruning, no overwrites, no
//!   concurrent readers during writes.
//!
//! # Running
//! ```sh
//! cd bench/store-candidates
//! cargo build --release
//! target/release/store-candidates --rounds 3 --dir ./tmp-bench
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Number of batches written.
const BATCHES: u64 = 400;
/// Blocks in one batch, one per author.
const BLOCKS_PER_BATCH: u32 = 10;
/// Size of one block value: 100 KiB.
const BLOCK_SIZE: usize = 100 * 1024;
/// Length of a block key: round (8) ‖ author (4) ‖ blake3 digest (32).
const BLOCK_KEY_LEN: usize = 8 + 4 + 32;
/// Size of one commit value: 1 KiB.
const COMMIT_SIZE: usize = 1024;
/// Point reads in the random-read phase.
const POINT_READS: usize = 1_000;
/// Key of the meta entry written in every batch.
const META_KEY: &[u8] = b"progress";
/// Page cache given to redb (dagstream's `RedbOptions` default) and block
/// cache given to fjall, so that neither gets more memory than the other.
const ENGINE_CACHE_BYTES: usize = 256 << 20;
/// A batch commit slower than this is counted as a stall in the report.
const SLOW_BATCH_MS: u64 = 50;
/// Seed of the data generator; any fixed value makes runs comparable.
const SEED: u64 = 0x5eed_da65_7ea3_0001;

// ---------------------------------------------------------------------------
// Workload
// ---------------------------------------------------------------------------

/// A record of a batch: byte ranges of its key and value inside
/// [`Batch::bytes`].
#[derive(Clone, Debug)]
struct Record {
    key: std::ops::Range<usize>,
    value: std::ops::Range<usize>,
}

/// One batch, laid out exactly as the raw baseline writes it: every record's
/// `key ‖ value`, blocks first, then the commit, then the meta entry. The
/// engines insert slices of the same buffer, so all candidates store the same
/// bytes.
struct Batch {
    bytes: Vec<u8>,
    blocks: Vec<Record>,
    commit: Record,
    meta: Record,
}

impl Batch {
    fn key(&self, record: &Record) -> &[u8] {
        &self.bytes[record.key.clone()]
    }

    fn value(&self, record: &Record) -> &[u8] {
        &self.bytes[record.value.clone()]
    }
}

/// Where a block is, for the read phases.
#[derive(Clone, Copy, Debug)]
struct BlockId {
    batch: usize,
    index: usize,
}

struct Workload {
    batches: Vec<Batch>,
    /// Offset of each batch in the raw file (the sum of the lengths of the
    /// batches before it).
    raw_offsets: Vec<u64>,
    /// Every block in key order. Keys sort by round, then author, and round =
    /// batch number, author = index in the batch, so this is also write order.
    blocks_in_key_order: Vec<BlockId>,
    /// The blocks of the point-read phase: distinct, in random order.
    point_reads: Vec<BlockId>,
}

impl Workload {
    fn generate() -> Workload {
        let mut rng = XorShift64Star(SEED);
        let mut batches = Vec::with_capacity(BATCHES as usize);
        for round in 0..BATCHES {
            let mut bytes = Vec::with_capacity(
                BLOCKS_PER_BATCH as usize * (BLOCK_KEY_LEN + BLOCK_SIZE) + 64 + COMMIT_SIZE,
            );
            let push = |bytes: &mut Vec<u8>, key: &[u8], value: &[u8]| {
                let key_start = bytes.len();
                bytes.extend_from_slice(key);
                let value_start = bytes.len();
                bytes.extend_from_slice(value);
                Record {
                    key: key_start..value_start,
                    value: value_start..bytes.len(),
                }
            };
            let mut value = vec![0u8; BLOCK_SIZE];
            let mut blocks = Vec::with_capacity(BLOCKS_PER_BATCH as usize);
            for author in 0..BLOCKS_PER_BATCH {
                rng.fill(&mut value);
                // The real blake3 digest of the value, as in dagstream's
                // block keys. (Round and author are unique per block here, so
                // the digest never decides the order; it makes the keys as
                // long and as random as real ones.)
                let digest = blake3::hash(&value);
                let mut key = Vec::with_capacity(BLOCK_KEY_LEN);
                key.extend_from_slice(&round.to_be_bytes());
                key.extend_from_slice(&author.to_be_bytes());
                key.extend_from_slice(digest.as_bytes());
                blocks.push(push(&mut bytes, &key, &value));
            }
            let mut commit_value = vec![0u8; COMMIT_SIZE];
            rng.fill(&mut commit_value);
            let commit = push(&mut bytes, &round.to_be_bytes(), &commit_value);
            let meta = push(&mut bytes, META_KEY, &round.to_be_bytes());
            batches.push(Batch {
                bytes,
                blocks,
                commit,
                meta,
            });
        }

        let mut raw_offsets = Vec::with_capacity(batches.len());
        let mut offset = 0u64;
        for batch in &batches {
            raw_offsets.push(offset);
            offset += batch.bytes.len() as u64;
        }

        let blocks_in_key_order: Vec<BlockId> = (0..batches.len())
            .flat_map(|batch| {
                (0..BLOCKS_PER_BATCH as usize).map(move |index| BlockId { batch, index })
            })
            .collect();

        // A partial Fisher-Yates shuffle: the first POINT_READS entries are a
        // uniform sample without repetition.
        let mut shuffled = blocks_in_key_order.clone();
        for i in 0..POINT_READS {
            let j = i + (rng.next() % (shuffled.len() - i) as u64) as usize;
            shuffled.swap(i, j);
        }
        shuffled.truncate(POINT_READS);

        Workload {
            batches,
            raw_offsets,
            blocks_in_key_order,
            point_reads: shuffled,
        }
    }

    fn block(&self, id: BlockId) -> (&[u8], &[u8]) {
        let batch = &self.batches[id.batch];
        let record = &batch.blocks[id.index];
        (batch.key(record), batch.value(record))
    }

    /// All bytes written: every key and value (= the raw file's length).
    fn logical_bytes(&self) -> u64 {
        self.batches.iter().map(|b| b.bytes.len() as u64).sum()
    }

    /// Key and value bytes of all blocks: what the scan delivers.
    fn block_bytes(&self) -> u64 {
        self.blocks_in_key_order
            .iter()
            .map(|&id| {
                let (key, value) = self.block(id);
                (key.len() + value.len()) as u64
            })
            .sum()
    }
}

/// xorshift64* (Vigna): fast, deterministic, and its output does not compress,
/// which is all the data needs to be.
struct XorShift64Star(u64);

impl XorShift64Star {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let word = self.next().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
}

// ---------------------------------------------------------------------------
// Candidates
// ---------------------------------------------------------------------------

/// What the benchmark needs from a candidate store. One value is one open
/// store; dropping it closes the store.
trait Store {
    /// Writes one batch atomically and durably.
    fn write_batch(&mut self, batch: &Batch) -> Result<()>;

    /// Waits for background work started by the writes (fjall's memtable
    /// flushes and compactions), so that the store is at rest on disk.
    fn drain(&mut self) -> Result<()> {
        Ok(())
    }

    /// One line of engine-specific facts after the writes, if any.
    fn describe(&self) -> Option<String> {
        None
    }

    /// Visits every block, in key order.
    fn scan_blocks(
        &mut self,
        workload: &Workload,
        visit: &mut dyn FnMut(&[u8], &[u8]),
    ) -> Result<()>;

    /// Reads one block by key and hands its value to `visit`.
    fn get_block(
        &mut self,
        workload: &Workload,
        id: BlockId,
        visit: &mut dyn FnMut(&[u8]),
    ) -> Result<()>;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Candidate {
    Raw,
    FjallLz4,
    FjallNoCompression,
    Redb,
}

impl Candidate {
    const ALL: [Candidate; 4] = [
        Candidate::Raw,
        Candidate::FjallLz4,
        Candidate::FjallNoCompression,
        Candidate::Redb,
    ];

    fn name(self) -> &'static str {
        match self {
            Candidate::Raw => "raw",
            Candidate::FjallLz4 => "fjall-lz4",
            Candidate::FjallNoCompression => "fjall-nocomp",
            Candidate::Redb => "redb",
        }
    }

    /// Opens the store in `dir`, creating it if it does not exist.
    fn open(self, dir: &Path) -> Result<Box<dyn Store>> {
        fs::create_dir_all(dir)?;
        Ok(match self {
            Candidate::Raw => Box::new(RawStore::open(dir)?),
            Candidate::FjallLz4 => Box::new(FjallStore::open(dir, fjall::CompressionType::Lz4)?),
            Candidate::FjallNoCompression => {
                Box::new(FjallStore::open(dir, fjall::CompressionType::None)?)
            }
            Candidate::Redb => Box::new(RedbStore::open(dir)?),
        })
    }
}

// --- raw file ---------------------------------------------------------------

/// The baseline: one append-only file.
struct RawStore {
    file: File,
    /// Reused read buffer, so reads do not allocate.
    buf: Vec<u8>,
}

impl RawStore {
    fn open(dir: &Path) -> Result<RawStore> {
        let path = dir.join("blocks.raw");
        let existed = path.exists();
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&path)?;
        if !existed {
            // Make the new file's directory entry durable once, outside any
            // timing, as a real append-only log would when it is created.
            File::open(dir)?.sync_all()?;
        }
        Ok(RawStore {
            file,
            buf: Vec::new(),
        })
    }
}

impl Store for RawStore {
    fn write_batch(&mut self, batch: &Batch) -> Result<()> {
        self.file.write_all(&batch.bytes)?;
        // fdatasync: the file grows, so this also persists its new length.
        self.file.sync_data()?;
        Ok(())
    }

    fn scan_blocks(
        &mut self,
        workload: &Workload,
        visit: &mut dyn FnMut(&[u8], &[u8]),
    ) -> Result<()> {
        // The file has no index: its layout is known from the workload, so
        // read it front to back, one batch per read, and hand out the block
        // records. (The commit and meta records are read too, and skipped.)
        for (batch, &offset) in workload.batches.iter().zip(&workload.raw_offsets) {
            self.buf.resize(batch.bytes.len(), 0);
            // pread at the explicit offset: the handle is in append mode.
            self.file.read_exact_at(&mut self.buf, offset)?;
            for record in &batch.blocks {
                visit(
                    &self.buf[record.key.clone()],
                    &self.buf[record.value.clone()],
                );
            }
        }
        Ok(())
    }

    fn get_block(
        &mut self,
        workload: &Workload,
        id: BlockId,
        visit: &mut dyn FnMut(&[u8]),
    ) -> Result<()> {
        let record = &workload.batches[id.batch].blocks[id.index];
        let offset = workload.raw_offsets[id.batch] + record.value.start as u64;
        self.buf.resize(record.value.len(), 0);
        self.file.read_exact_at(&mut self.buf, offset)?;
        visit(&self.buf);
        Ok(())
    }
}

// --- fjall ------------------------------------------------------------------

struct FjallStore {
    db: fjall::Database,
    blocks: fjall::Keyspace,
    commits: fjall::Keyspace,
    meta: fjall::Keyspace,
    /// Most sealed (full, not yet flushed) block memtables seen when a batch
    /// starts. fjall halts writes while there are 4 or more, so this tells a
    /// write stall from plain I/O contention with the background flushes.
    max_sealed_memtables: usize,
}

impl FjallStore {
    fn open(dir: &Path, compression: fjall::CompressionType) -> Result<FjallStore> {
        let db = fjall::Database::builder(dir)
            .cache_size(ENGINE_CACHE_BYTES as u64)
            // Values of 4 KiB and more are compressed in the journal
            // (default LZ4); the fjall-nocomp variant turns that off too.
            .journal_compression(compression)
            .open()?;
        // Key-value separation: values of at least `separation_threshold`
        // (default 1 KiB) go to blob files and the LSM tree only holds keys
        // and pointers, so compactions do not rewrite the 100 KiB values.
        // Everything else is fjall's default: 64 MiB blob files, 64 MiB
        // memtables, leveled compaction, min(cores, 4) = 2 worker threads.
        let blocks = db.keyspace("blocks", || {
            fjall::KeyspaceCreateOptions::default().with_kv_separation(Some(
                fjall::KvSeparationOptions::default().compression(compression),
            ))
        })?;
        // Commits (1 KiB) and meta stay inline: they are small, and a scan of
        // commits should not chase pointers.
        let commits = db.keyspace("commits", fjall::KeyspaceCreateOptions::default)?;
        let meta = db.keyspace("meta", fjall::KeyspaceCreateOptions::default)?;
        Ok(FjallStore {
            db,
            blocks,
            commits,
            meta,
            max_sealed_memtables: 0,
        })
    }

    fn keyspaces(&self) -> [&fjall::Keyspace; 3] {
        [&self.blocks, &self.commits, &self.meta]
    }
}

impl Store for FjallStore {
    fn write_batch(&mut self, batch: &Batch) -> Result<()> {
        self.max_sealed_memtables = self
            .max_sealed_memtables
            .max(self.blocks.sealed_memtable_count());
        let mut wb = self
            .db
            .batch()
            // fsync the journal before `commit` returns. (`SyncData` would be
            // enough on ext4; `SyncAll` is what the brief asks for and the
            // journal file grows anyway, so both update metadata.)
            .durability(Some(fjall::PersistMode::SyncAll));
        for record in &batch.blocks {
            wb.insert(&self.blocks, batch.key(record), batch.value(record));
        }
        wb.insert(
            &self.commits,
            batch.key(&batch.commit),
            batch.value(&batch.commit),
        );
        wb.insert(&self.meta, batch.key(&batch.meta), batch.value(&batch.meta));
        wb.commit()?;
        Ok(())
    }

    fn drain(&mut self) -> Result<()> {
        // Flush whatever is still in memtables into tables and blob files, so
        // that the reads go to disk and reopening does not replay the journal.
        // `rotate_memtable_and_wait`, `outstanding_flushes` and
        // `active_compactions` are `#[doc(hidden)]` in fjall 3.1 (used by its
        // own tests); there is no public "wait until idle".
        for keyspace in self.keyspaces() {
            keyspace.rotate_memtable_and_wait()?;
        }
        // Then let compactions triggered by those flushes finish. Require a
        // few idle polls in a row, since a finished flush can enqueue a
        // compaction a moment later.
        let mut idle_polls = 0;
        while idle_polls < 5 {
            if self.db.outstanding_flushes() == 0 && self.db.active_compactions() == 0 {
                idle_polls += 1;
            } else {
                idle_polls = 0;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.db.persist(fjall::PersistMode::SyncAll)?;
        Ok(())
    }

    fn describe(&self) -> Option<String> {
        Some(format!(
            "blocks: {} blob files, {} tables ({} in L0), at most {} sealed memtables \
             when a batch started; {} compactions took {:.2} s; {} journal(s)",
            self.blocks.blob_file_count(),
            self.blocks.table_count(),
            self.blocks.l0_table_count(),
            self.max_sealed_memtables,
            self.db.compactions_completed(),
            self.db.time_compacting().as_secs_f64(),
            self.db.journal_count(),
        ))
    }

    fn scan_blocks(&mut self, _: &Workload, visit: &mut dyn FnMut(&[u8], &[u8])) -> Result<()> {
        for guard in self.blocks.range::<&[u8], _>(..) {
            let (key, value) = guard.into_inner()?;
            visit(&key, &value);
        }
        Ok(())
    }

    fn get_block(
        &mut self,
        workload: &Workload,
        id: BlockId,
        visit: &mut dyn FnMut(&[u8]),
    ) -> Result<()> {
        let (key, _) = workload.block(id);
        let value = self.blocks.get(key)?.ok_or("fjall: block not found")?;
        visit(&value);
        Ok(())
    }
}

// --- redb -------------------------------------------------------------------

type RawTable = redb::TableDefinition<'static, &'static [u8], &'static [u8]>;
const REDB_BLOCKS: RawTable = redb::TableDefinition::new("blocks");
const REDB_COMMITS: RawTable = redb::TableDefinition::new("commits");
const REDB_META: RawTable = redb::TableDefinition::new("meta");

struct RedbStore {
    db: redb::Database,
}

impl RedbStore {
    fn open(dir: &Path) -> Result<RedbStore> {
        let db = redb::Builder::new()
            .set_cache_size(ENGINE_CACHE_BYTES)
            .create(dir.join("store.redb"))?;
        Ok(RedbStore { db })
    }
}

impl Store for RedbStore {
    fn write_batch(&mut self, batch: &Batch) -> Result<()> {
        let mut txn = self.db.begin_write()?;
        // Both as in dagstream's RedbStore: fsync before `commit` returns,
        // and two-phase commit (one more fsync per commit).
        txn.set_durability(redb::Durability::Immediate)?;
        txn.set_two_phase_commit(true);
        {
            let mut blocks = txn.open_table(REDB_BLOCKS)?;
            for record in &batch.blocks {
                blocks.insert(batch.key(record), batch.value(record))?;
            }
            txn.open_table(REDB_COMMITS)?
                .insert(batch.key(&batch.commit), batch.value(&batch.commit))?;
            txn.open_table(REDB_META)?
                .insert(batch.key(&batch.meta), batch.value(&batch.meta))?;
        }
        txn.commit()?;
        Ok(())
    }

    fn scan_blocks(&mut self, _: &Workload, visit: &mut dyn FnMut(&[u8], &[u8])) -> Result<()> {
        use redb::ReadableDatabase;
        let txn = self.db.begin_read()?;
        let table = txn.open_table(REDB_BLOCKS)?;
        for entry in table.range::<&[u8]>(..)? {
            let (key, value) = entry?;
            visit(key.value(), value.value());
        }
        Ok(())
    }

    fn get_block(
        &mut self,
        workload: &Workload,
        id: BlockId,
        visit: &mut dyn FnMut(&[u8]),
    ) -> Result<()> {
        use redb::ReadableDatabase;
        // One read transaction per get, as a server answering independent
        // requests would do; its cost is small next to a 100 KiB read.
        let (key, _) = workload.block(id);
        let txn = self.db.begin_read()?;
        let table = txn.open_table(REDB_BLOCKS)?;
        let value = table.get(key)?.ok_or("redb: block not found")?;
        visit(value.value());
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Measurement helpers
// ---------------------------------------------------------------------------

/// This process's storage I/O counters from `/proc/self/io`: bytes it caused
/// to be read from or written to the block layer, all threads included
/// (fjall's background flushes run on its own threads).
#[derive(Clone, Copy, Debug, Default)]
struct IoCounters {
    read_bytes: u64,
    write_bytes: u64,
}

impl IoCounters {
    fn now() -> Result<IoCounters> {
        let text = fs::read_to_string("/proc/self/io")?;
        let mut counters = IoCounters::default();
        for line in text.lines() {
            if let Some((name, value)) = line.split_once(':') {
                let value: u64 = value.trim().parse()?;
                match name {
                    "read_bytes" => counters.read_bytes = value,
                    "write_bytes" => counters.write_bytes = value,
                    _ => {}
                }
            }
        }
        Ok(counters)
    }

    fn since(self, earlier: IoCounters) -> IoCounters {
        IoCounters {
            read_bytes: self.read_bytes - earlier.read_bytes,
            write_bytes: self.write_bytes - earlier.write_bytes,
        }
    }
}

/// Every regular file under `dir`.
fn files_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                files.push(entry.path());
            }
        }
    }
    Ok(files)
}

/// Space allocated to the files under `dir`, in bytes: what `du -s` reports
/// (allocated blocks, not apparent length), minus the directories themselves.
fn disk_usage(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for file in files_under(dir)? {
        total += fs::metadata(file)?.blocks() * 512;
    }
    Ok(total)
}

/// Drops the page-cache pages of every file under `dir`, so that the next
/// reads come from the disk. Pages must be clean to be dropped, so each file
/// is fsync'ed first. Only these files are touched (unlike writing to
/// `/proc/sys/vm/drop_caches`, which would also slow down anything else
/// running on the machine).
fn evict_from_page_cache(dir: &Path) -> Result<()> {
    for path in files_under(dir)? {
        let file = File::open(&path)?;
        file.sync_all()?;
        // SAFETY: a plain syscall on a file descriptor that stays open for
        // the duration of the call.
        let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        if rc != 0 {
            return Err(format!("posix_fadvise({}): error {rc}", path.display()).into());
        }
    }
    Ok(())
}

/// The batches whose commit took longer than `SLOW_BATCH_MS`: (batch number,
/// latency).
fn slow_batches(m: &Measurement) -> Vec<(usize, Duration)> {
    m.batch_latencies
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, d)| ms(*d) > SLOW_BATCH_MS as f64)
        .collect()
}

/// The 1-minute load average, from `/proc/loadavg`.
fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

fn mb_per_s(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / 1e6 / elapsed.as_secs_f64()
}

/// The `p`-quantile (0..=1) of sorted durations, nearest rank.
fn quantile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

// ---------------------------------------------------------------------------
// One candidate, one round
// ---------------------------------------------------------------------------

/// Everything measured for one candidate in one round.
struct Measurement {
    candidate: Candidate,
    /// Time from the first write to the return of the last durable commit.
    write: Duration,
    /// Per-batch commit latencies, in write order.
    batch_latencies: Vec<Duration>,
    /// Time to finish background work after the last commit, and to close.
    drain_and_close: Duration,
    /// Bytes written to the block layer by the write phase, drain and close.
    disk_written: u64,
    /// Space on disk after the writes, the drain and closing the store.
    disk_usage: u64,
    /// Time to open the closed store before the scan.
    reopen: Duration,
    scan: Duration,
    /// Bytes read from the block layer during the scan (checks that it was
    /// cold: about the data size, not 0).
    scan_disk_read: u64,
    point_reads: Duration,
    point_disk_read: u64,
    describe: Option<String>,
}

fn measure(candidate: Candidate, dir: &Path, workload: &Workload) -> Result<Measurement> {
    // --- write ---
    let io_before = IoCounters::now()?;
    let mut store = candidate.open(dir)?;
    let mut batch_latencies = Vec::with_capacity(workload.batches.len());
    let start = Instant::now();
    for batch in &workload.batches {
        let batch_start = Instant::now();
        store.write_batch(batch)?;
        batch_latencies.push(batch_start.elapsed());
    }
    let write = start.elapsed();
    let drain_start = Instant::now();
    store.drain()?;
    let describe = store.describe();
    drop(store);
    let drain_and_close = drain_start.elapsed();
    let disk_written = IoCounters::now()?.since(io_before).write_bytes;
    let disk_usage = disk_usage(dir)?;

    // --- scan, cold ---
    evict_from_page_cache(dir)?;
    let reopen_start = Instant::now();
    let mut store = candidate.open(dir)?;
    let reopen = reopen_start.elapsed();
    let io_before = IoCounters::now()?;
    let mut expected = workload.blocks_in_key_order.iter();
    let mut mismatch = None;
    let start = Instant::now();
    store.scan_blocks(workload, &mut |key, value| {
        let id = expected.next();
        let ok = id.is_some_and(|&id| workload.block(id) == (key, value));
        if !ok && mismatch.is_none() {
            mismatch = Some(id.copied());
        }
    })?;
    let scan = start.elapsed();
    let scan_disk_read = IoCounters::now()?.since(io_before).read_bytes;
    if let Some(id) = mismatch {
        return Err(format!("{}: scan returned wrong data at {id:?}", candidate.name()).into());
    }
    if expected.next().is_some() {
        return Err(format!("{}: scan returned too few blocks", candidate.name()).into());
    }
    drop(store);

    // --- point reads, cold ---
    evict_from_page_cache(dir)?;
    let mut store = candidate.open(dir)?;
    let io_before = IoCounters::now()?;
    let start = Instant::now();
    for &id in &workload.point_reads {
        let mut ok = false;
        store.get_block(workload, id, &mut |value| {
            ok = value == workload.block(id).1
        })?;
        if !ok {
            return Err(format!(
                "{}: point read returned wrong data for {id:?}",
                candidate.name()
            )
            .into());
        }
    }
    let point_reads = start.elapsed();
    let point_disk_read = IoCounters::now()?.since(io_before).read_bytes;
    drop(store);

    Ok(Measurement {
        candidate,
        write,
        batch_latencies,
        drain_and_close,
        disk_written,
        disk_usage,
        reopen,
        scan,
        scan_disk_read,
        point_reads,
        point_disk_read,
        describe,
    })
}

// ---------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------

struct Args {
    rounds: usize,
    dir: PathBuf,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        rounds: 3,
        dir: PathBuf::from("./tmp-bench"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--rounds" => args.rounds = it.next().ok_or("--rounds needs a value")?.parse()?,
            "--dir" => args.dir = it.next().ok_or("--dir needs a value")?.into(),
            "-h" | "--help" => {
                println!("usage: store-candidates [--rounds N (3)] [--dir PATH (./tmp-bench)]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} (try --help)").into()),
        }
    }
    if args.rounds == 0 {
        return Err("--rounds must be at least 1".into());
    }
    Ok(args)
}

fn main() -> Result<()> {
    let args = parse_args()?;
    if args.dir.exists() {
        return Err(format!(
            "{} exists; remove it or pass another --dir (it is deleted at the end)",
            args.dir.display()
        )
        .into());
    }

    eprintln!("generating {} batches ...", BATCHES);
    let workload = Workload::generate();
    let logical = workload.logical_bytes();
    let block_bytes = workload.block_bytes();
    println!(
        "workload: {BATCHES} batches x ({BLOCKS_PER_BATCH} x {BLOCK_SIZE} B blocks + {COMMIT_SIZE} B commit + meta); \
         {logical} logical bytes written, {block_bytes} block bytes scanned, {POINT_READS} point reads"
    );
    println!("MB = 10^6 bytes. Write MB/s counts every key and value; scan MB/s counts block keys and values.\n");

    let result = run_rounds(&args, &workload);
    // Always clean up the scratch directory, even after an error.
    let cleanup = fs::remove_dir_all(&args.dir);
    result?;
    cleanup?;
    Ok(())
}

/// The order in which the candidates run in `round` (0-based): rotated from
/// round to round so that no candidate always runs first, or always right
/// after the same neighbour.
fn run_order(round: usize) -> Vec<Candidate> {
    let mut order = Candidate::ALL.to_vec();
    order.rotate_left(round % Candidate::ALL.len());
    order
}

fn run_rounds(args: &Args, workload: &Workload) -> Result<()> {
    let mut rounds = Vec::new();
    for round in 0..args.rounds {
        let order = run_order(round);
        let mut results = Vec::new();
        // The 1-minute load average as each candidate starts: other work on
        // the machine (a compile, say) makes the numbers noisy.
        let mut load_averages = Vec::new();
        for &candidate in &order {
            let dir = args
                .dir
                .join(format!("round-{}", round + 1))
                .join(candidate.name());
            eprintln!("round {}: {} ...", round + 1, candidate.name());
            load_averages.push(format!("{}: {}", candidate.name(), load_average()));
            let m = measure(candidate, &dir, workload)?;
            fs::remove_dir_all(&dir)?;
            results.push(m);
        }
        // Present candidates in a fixed order whatever order they ran in.
        results.sort_by_key(|m| Candidate::ALL.iter().position(|&c| c == m.candidate));

        let order_names: Vec<&str> = order.iter().map(|c| c.name()).collect();
        println!(
            "## Round {} (run order: {})\n",
            round + 1,
            order_names.join(", ")
        );
        print_round(workload, &results);
        println!(
            "\nload average (1 min) at start: {}",
            load_averages.join(", ")
        );
        for m in &results {
            if let Some(text) = &m.describe {
                println!("\n{}: {}", m.candidate.name(), text);
            }
            // Where the slow batches fall shows whether they are periodic
            // (fjall: one per memtable flush, every ~64 MiB) or random noise.
            let slow: Vec<String> = slow_batches(m)
                .iter()
                .map(|(i, d)| format!("#{i} {:.0} ms", ms(*d)))
                .collect();
            if !slow.is_empty() {
                println!(
                    "\n{} batches > {SLOW_BATCH_MS} ms: {}",
                    m.candidate.name(),
                    slow.join(", ")
                );
            }
        }
        println!();
        rounds.push(results);
    }
    if rounds.len() > 1 {
        print_medians(workload, &rounds);
    }
    Ok(())
}

/// The main figures of one candidate in one round.
struct Figures {
    write_mb_s: f64,
    ratio_to_raw_write: f64,
    scan_mb_s: f64,
    point_reads_per_s: f64,
    disk_usage_mib: f64,
}

/// The figures of each candidate of one round, in `Candidate::ALL` order.
fn figures(workload: &Workload, results: &[Measurement]) -> Vec<Figures> {
    let logical = workload.logical_bytes();
    let raw_write = results
        .iter()
        .find(|m| m.candidate == Candidate::Raw)
        .map(|m| mb_per_s(logical, m.write))
        .expect("raw runs in every round");
    results
        .iter()
        .map(|m| {
            let write_mb_s = mb_per_s(logical, m.write);
            Figures {
                write_mb_s,
                ratio_to_raw_write: write_mb_s / raw_write,
                scan_mb_s: mb_per_s(workload.block_bytes(), m.scan),
                point_reads_per_s: POINT_READS as f64 / m.point_reads.as_secs_f64(),
                disk_usage_mib: m.disk_usage as f64 / (1 << 20) as f64,
            }
        })
        .collect()
}

const MAIN_TABLE_HEADER: &str = "| engine | write MB/s | ratio to raw write | scan-read MB/s | point reads/s | size on disk (du) |\n\
                                 |---|---:|---:|---:|---:|---:|";

fn print_main_row(candidate: Candidate, f: &Figures) {
    println!(
        "| {} | {:.1} | {:.2} | {:.1} | {:.0} | {:.1} MiB |",
        candidate.name(),
        f.write_mb_s,
        f.ratio_to_raw_write,
        f.scan_mb_s,
        f.point_reads_per_s,
        f.disk_usage_mib,
    );
}

fn print_round(workload: &Workload, results: &[Measurement]) {
    let logical = workload.logical_bytes();
    println!("{MAIN_TABLE_HEADER}");
    for (m, f) in results.iter().zip(figures(workload, results)) {
        print_main_row(m.candidate, &f);
    }
    println!();
    println!(
        "| engine | batch p50 / p99 / max ms | batches > {SLOW_BATCH_MS} ms | drain+close s | \
         write MB/s incl. drain | disk writes (x logical) | reopen ms | disk reads: scan / points MB |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for m in results {
        let mut sorted = m.batch_latencies.clone();
        sorted.sort();
        println!(
            "| {} | {:.1} / {:.1} / {:.1} | {} | {:.2} | {:.1} | {:.1} MB ({:.2}x) | {:.1} | {:.0} / {:.0} |",
            m.candidate.name(),
            ms(quantile(&sorted, 0.5)),
            ms(quantile(&sorted, 0.99)),
            ms(*sorted.last().expect("at least one batch")),
            slow_batches(m).len(),
            m.drain_and_close.as_secs_f64(),
            mb_per_s(logical, m.write + m.drain_and_close),
            m.disk_written as f64 / 1e6,
            m.disk_written as f64 / logical as f64,
            ms(m.reopen),
            m.scan_disk_read as f64 / 1e6,
            m.point_disk_read as f64 / 1e6,
        );
    }
}

/// Per candidate, the median of each figure over the rounds (each column on
/// its own, so a row may mix rounds; the ratio is the median of the per-round
/// ratios, not a ratio of medians).
fn print_medians(workload: &Workload, rounds: &[Vec<Measurement>]) {
    let per_round: Vec<Vec<Figures>> = rounds.iter().map(|r| figures(workload, r)).collect();
    println!("## Median of {} rounds\n", rounds.len());
    println!("{MAIN_TABLE_HEADER}");
    for (i, &candidate) in Candidate::ALL.iter().enumerate() {
        let median = |get: fn(&Figures) -> f64| {
            let mut values: Vec<f64> = per_round.iter().map(|r| get(&r[i])).collect();
            values.sort_by(f64::total_cmp);
            let n = values.len();
            if n % 2 == 1 {
                values[n / 2]
            } else {
                (values[n / 2 - 1] + values[n / 2]) / 2.0
            }
        };
        let f = Figures {
            write_mb_s: median(|f| f.write_mb_s),
            ratio_to_raw_write: median(|f| f.ratio_to_raw_write),
            scan_mb_s: median(|f| f.scan_mb_s),
            point_reads_per_s: median(|f| f.point_reads_per_s),
            disk_usage_mib: median(|f| f.disk_usage_mib),
        };
        print_main_row(candidate, &f);
    }
    println!();
}
