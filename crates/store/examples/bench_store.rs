//! Store write and read throughput for the node's write pattern, against raw
//! sequential file writes on the same disk in the same run.
//!
//! ```text
//! cargo run --release -p dagstream-store --example bench_store -- [ROUNDS] [AUTHORS] [BLOCK_KB]
//! ```
//!
//! Each round is one durable batch: AUTHORS signed blocks of about BLOCK_KB
//! KiB of incompressible payload, one commit of them and one metadata value,
//! as an observer persists a commit (defaults: 300 rounds of 10 blocks of
//! 100 KiB, about 300 MB). The candidates, one after another, in a fresh
//! directory under the current one (so on the disk the store would use):
//!
//! - **raw file**: each batch's block bytes appended to one file with
//!   `write_all`, then `sync_data`: the disk's durable sequential speed;
//! - **redb**: [`RedbStore`], blocks as values of a B-tree;
//! - **segments**: [`SegmentStore`], blocks in append-only segment files and
//!   their locations in a redb index.
//!
//! Then each store is read back: a scan of every block in order, and 2,000
//! random point reads.

use bytes::Bytes;
use dagstream_store::{RedbStore, SegmentStore, Store, WriteBatch};
use dagstream_types::{Block, BlockRef, Commit, Digest, Transaction, TrustedCommit, VerifiedBlock};
use ed25519_dalek::SigningKey;
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

/// Blocks per scan call, as the publisher reads them.
const SCAN_CHUNK: usize = 256;
const POINT_READS: usize = 2_000;

fn main() {
    let mut args = std::env::args().skip(1);
    let mut arg = |default: usize| {
        args.next()
            .map_or(default, |a| a.parse().expect("a number"))
    };
    let rounds = arg(300) as u64;
    let authors = arg(10) as u32;
    let block_kb = arg(100);

    let batches = history(rounds, authors, block_kb << 10);
    let bytes: u64 = batches
        .iter()
        .flat_map(|(blocks, _)| blocks)
        .map(|b| b.serialized().len() as u64)
        .sum();
    eprintln!(
        "{rounds} batches of {authors} blocks, {:.1} MB of blocks",
        bytes as f64 / 1e6
    );
    let work = tempfile::tempdir_in(".").expect("a work directory");

    println!("| store | write MB/s | × raw | scan MB/s | point reads/s | on disk |");
    println!("|---|---|---|---|---|---|");
    let raw = raw_file(&work.path().join("raw"), &batches, bytes);

    let redb = RedbStore::open(&work.path().join("redb/store.redb")).expect("redb opens");
    measure(
        "redb",
        &redb,
        &work.path().join("redb"),
        &batches,
        bytes,
        raw,
    );
    drop(redb);
    let segments = SegmentStore::open(&work.path().join("segments")).expect("segments open");
    measure(
        "segments",
        &segments,
        &work.path().join("segments"),
        &batches,
        bytes,
        raw,
    );
}

/// Signed blocks of random payload, and the commit of each round.
fn history(rounds: u64, authors: u32, payload: usize) -> Vec<(Vec<VerifiedBlock>, TrustedCommit)> {
    let keys: Vec<_> = (0..authors)
        .map(|a| SigningKey::from_bytes(&[a as u8 + 1; 32]))
        .collect();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut previous = Digest::ZERO;
    (1..=rounds)
        .map(|round| {
            let blocks: Vec<_> = keys
                .iter()
                .enumerate()
                .map(|(author, key)| {
                    // xorshift64: incompressible, so that no layer can
                    // shrink what it writes.
                    let payload: Vec<u8> = (0..payload / 8)
                        .flat_map(|_| {
                            state ^= state << 13;
                            state ^= state >> 7;
                            state ^= state << 17;
                            state.to_le_bytes()
                        })
                        .collect();
                    let block = Block {
                        epoch: 0,
                        round,
                        author: author as u32,
                        timestamp_ms: round * 100,
                        ancestors: vec![],
                        transactions: vec![Transaction(payload)],
                        commit_votes: vec![],
                    };
                    VerifiedBlock::sign(block, key)
                })
                .collect();
            let leader = blocks.last().expect("authors > 0").reference();
            let commit = TrustedCommit::new(Commit {
                index: round,
                previous_digest: previous,
                timestamp_ms: round * 100,
                leader,
                blocks: blocks.iter().map(|b| b.reference()).collect(),
            });
            previous = commit.digest();
            (blocks, commit)
        })
        .collect()
}

/// Appends every batch's block bytes to one file, durable per batch, and
/// reads them back. Returns the write rate in MB/s.
fn raw_file(path: &Path, batches: &[(Vec<VerifiedBlock>, TrustedCommit)], bytes: u64) -> f64 {
    let mut file = File::create(path).expect("raw file");
    let started = Instant::now();
    for (blocks, _) in batches {
        for block in blocks {
            file.write_all(block.serialized()).expect("write");
        }
        file.sync_data().expect("sync");
    }
    let write = rate(bytes, started);
    drop(file);
    let started = Instant::now();
    let read = std::fs::read(path).expect("read back");
    assert_eq!(read.len() as u64, bytes);
    let scan = rate(bytes, started);
    println!(
        "| raw file | {write:.0} | 1.00 | {scan:.0} | — | {:.0} MB |",
        disk_usage(path) as f64 / 1e6
    );
    write
}

fn measure(
    name: &str,
    store: &dyn Store,
    dir: &Path,
    batches: &[(Vec<VerifiedBlock>, TrustedCommit)],
    bytes: u64,
    raw: f64,
) {
    let started = Instant::now();
    for (blocks, commit) in batches {
        let mut batch = WriteBatch::new();
        for block in blocks {
            batch.add_block(block);
        }
        batch
            .add_commit(commit.clone())
            .put_meta("progress", commit.index().to_be_bytes().to_vec());
        store.write(batch).expect("write");
    }
    let write = rate(bytes, started);

    let started = Instant::now();
    let mut from = BlockRef::round_start(0);
    let mut scanned = 0u64;
    loop {
        // Each chunk starts at the last block of the one before.
        let chunk = store.scan_blocks(from, u64::MAX, SCAN_CHUNK).expect("scan");
        let fresh: Vec<_> = chunk.iter().filter(|(r, _)| *r != from).collect();
        let Some((last, _)) = fresh.last() else { break };
        from = *last;
        scanned += fresh.iter().map(|(_, b)| b.len() as u64).sum::<u64>();
    }
    assert_eq!(scanned, bytes);
    let scan = rate(bytes, started);

    let refs: Vec<BlockRef> = batches
        .iter()
        .flat_map(|(blocks, _)| blocks.iter().map(|b| b.reference()))
        .collect();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let started = Instant::now();
    for _ in 0..POINT_READS {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let block = &refs[(state % refs.len() as u64) as usize];
        let read: Option<Bytes> = store.read_block(block).expect("read");
        assert!(read.is_some());
    }
    let points = POINT_READS as f64 / started.elapsed().as_secs_f64();
    println!(
        "| {name} | {write:.0} | {:.2} | {scan:.0} | {points:.0} | {:.0} MB |",
        write / raw,
        disk_usage(dir) as f64 / 1e6
    );
}

fn rate(bytes: u64, started: Instant) -> f64 {
    bytes as f64 / started.elapsed().as_secs_f64() / 1e6
}

/// Bytes of the files under `path`.
fn disk_usage(path: &Path) -> u64 {
    if path.is_file() {
        return path.metadata().map_or(0, |m| m.len());
    }
    std::fs::read_dir(path)
        .map(|entries| entries.flatten().map(|e| disk_usage(&e.path())).sum())
        .unwrap_or(0)
}
