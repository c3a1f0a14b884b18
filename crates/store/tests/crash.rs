//! Crash consistency of the on-disk stores ([`RedbStore`] and
//! [`SegmentStore`]): a child process writing batches is killed with SIGKILL
//! at a random point, several times over the same store.
//!
//! The test binary re-executes itself to run [`crash_child_writer`] (ignored in
//! normal runs) as the child, with plain libtest arguments, which works the
//! same whether the parent runs under `cargo test` or `cargo nextest`. The
//! child prints `ack {i}` once batch `i` is durable; the parent checks after
//! every kill that each acknowledged batch survived and that no batch is
//! partially visible. `DAGSTREAM_TEST_SEED` replays a run.
#![cfg(unix)]

mod common;

use common::{block, commit, AUTHORS};
use dagstream_store::{RedbOptions, RedbStore, SegmentOptions, SegmentStore, Store, WriteBatch};
use dagstream_test_utils::test_seed;
use dagstream_types::{BlockRef, CommitIndex, Digest, VerifiedBlock};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Names the store for the child; unset, the child does nothing.
const DB_ENV: &str = "DAGSTREAM_STORE_CRASH_DB";
/// Which store the child writes: `redb` or `segments`.
const KIND_ENV: &str = "DAGSTREAM_STORE_CRASH_KIND";

#[derive(Clone, Copy, Debug)]
enum Kind {
    Redb,
    Segments,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Redb => "redb",
            Kind::Segments => "segments",
        }
    }

    /// Opens the store; `check` verifies every redb page checksum first.
    fn open(self, path: &Path, check: bool) -> Box<dyn Store> {
        match self {
            Kind::Redb => {
                let options = RedbOptions {
                    check_integrity_on_open: check,
                    ..RedbOptions::default()
                };
                Box::new(RedbStore::open_with(path, &options).unwrap())
            }
            Kind::Segments => {
                let options = SegmentOptions {
                    check_integrity_on_open: check,
                    // A new segment every few batches, so that kills also
                    // land around rotations.
                    segment_bytes: 64 << 10,
                    ..SegmentOptions::default()
                };
                Box::new(SegmentStore::open_with(path, &options).unwrap())
            }
        }
    }
}
/// Kills per test run, each followed by a check and a restart.
const KILLS: usize = 8;
/// The child is killed after 1..=MAX_ACKS acknowledged batches: enough for
/// the file to grow over many pages, few enough that the test takes well
/// under a second even with a slow fsync (two per batch).
const MAX_ACKS: u64 = 40;
/// After the chosen ack, the kill waits 0..MAX_KILL_DELAY_US microseconds, so
/// that it lands at varied points of the next write (a batch takes about a
/// millisecond), sometimes after it completed unacknowledged.
const MAX_KILL_DELAY_US: u64 = 3000;
/// Bytes of transaction payload per block, so that a batch spans several
/// pages and a kill can land in the middle of writing them.
const PAYLOAD: usize = 3000;
/// The child stops on its own after this many batches, in case the parent
/// is gone without closing the pipe.
const CHILD_MAX_BATCHES: u64 = 10_000;

/// Batch `i`: the blocks of round `i` (leader last), commit `i` of exactly
/// those blocks, and meta `progress` = `i`.
fn batch(index: CommitIndex, previous: Digest) -> WriteBatch {
    let leader = (index % u64::from(AUTHORS)) as u32;
    let blocks: Vec<VerifiedBlock> = (0..AUTHORS)
        .filter(|&a| a != leader)
        .chain([leader])
        .map(|author| block(index, author, PAYLOAD, 0))
        .collect();
    let mut batch = WriteBatch::new();
    for b in &blocks {
        batch.add_block(b);
    }
    batch
        .add_commit(commit(index, previous, &blocks))
        .put_meta("progress", index.to_be_bytes().to_vec());
    batch
}

#[test]
#[ignore = "child process of crash_consistency_under_sigkill"]
fn crash_child_writer() {
    let Some(path) = std::env::var_os(DB_ENV) else {
        return;
    };
    let kind = match std::env::var(KIND_ENV).as_deref() {
        Ok("segments") => Kind::Segments,
        _ => Kind::Redb,
    };
    let store = kind.open(Path::new(&path), false);
    let mut previous = store
        .last_commit()
        .unwrap()
        .map_or(Digest::ZERO, |c| c.digest());
    let first = store.last_commit_index().unwrap() + 1;
    let mut out = std::io::stdout().lock();
    for index in first..first + CHILD_MAX_BATCHES {
        let batch = batch(index, previous);
        previous = batch.commits()[0].digest();
        store.write(batch).unwrap();
        // A closed pipe means the parent is gone: stop.
        if writeln!(out, "ack {index}")
            .and_then(|()| out.flush())
            .is_err()
        {
            return;
        }
    }
}

/// Runs one child until it acknowledged `kill_after` batches, then SIGKILLs
/// it `delay` later. Returns the acknowledged indexes.
fn run_child_and_kill(
    kind: Kind,
    path: &Path,
    kill_after: u64,
    delay: Duration,
) -> Vec<CommitIndex> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child_writer", "--nocapture", "--ignored"])
        .env(DB_ENV, path)
        .env(KIND_ENV, kind.name())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kept open until the kill: a closed pipe would stop the child early.
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut acked = Vec::new();
    for line in stdout.by_ref().lines() {
        let line = line.unwrap();
        // Anything else is libtest's own output.
        if let Some(index) = line.trim().strip_prefix("ack ") {
            acked.push(index.parse().unwrap());
            if acked.len() as u64 == kill_after {
                break;
            }
        }
    }
    // Not a synchronization: only moves the kill point; any point must pass.
    std::thread::sleep(delay);
    // `Child::kill` is SIGKILL on Unix: no destructor or flush runs. It can
    // only fail if the child already exited, which the status check reports.
    let _ = child.kill();
    let status = child.wait().unwrap();
    drop(stdout);
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(
        status.signal(),
        Some(9),
        "the child ended on its own ({status}) after {} acks; stderr:\n{stderr}",
        acked.len()
    );
    acked
}

/// Checks the store after a crash: every acknowledged batch is there, and
/// every batch that is there is whole. Returns the last commit index.
fn check_store(kind: Kind, path: &Path, acked: CommitIndex) -> CommitIndex {
    let store = kind.open(path, true);
    let last = store.last_commit_index().unwrap();
    assert!(
        last >= acked,
        "acknowledged commit {acked} lost: the store ends at {last}"
    );
    let commits = store.scan_commits(0, usize::MAX).unwrap();
    assert_eq!(
        commits.iter().map(|c| c.index()).collect::<Vec<_>>(),
        (1..=last).collect::<Vec<_>>(),
        "commits are exactly 1..={last}"
    );
    assert_eq!(
        store.commit_range().unwrap(),
        (last > 0).then_some((1, last))
    );
    let mut previous = Digest::ZERO;
    for commit in &commits {
        assert_eq!(
            commit.commit().previous_digest,
            previous,
            "{commit:?} chains"
        );
        previous = commit.digest();
        assert_eq!(commit.commit().blocks.len(), AUTHORS as usize);
        for reference in &commit.commit().blocks {
            let bytes = store
                .read_block(reference)
                .unwrap()
                .unwrap_or_else(|| panic!("{commit:?} without its block {reference:?}"));
            assert_eq!(
                Digest::of(&bytes),
                reference.digest,
                "bytes of {reference:?}"
            );
        }
    }
    // No block of a batch whose commit is absent.
    let blocks = store
        .scan_blocks(BlockRef::round_start(0), u64::MAX, usize::MAX)
        .unwrap();
    assert_eq!(blocks.len() as u64, last * u64::from(AUTHORS));
    assert!(blocks.iter().all(|(r, _)| r.round <= last));
    let progress = store.read_meta("progress").unwrap();
    let expected_progress = (last > 0).then(|| last.to_be_bytes().to_vec());
    assert_eq!(
        progress.as_deref(),
        expected_progress.as_deref(),
        "meta progress"
    );
    last
}

/// SplitMix64: a tiny seeded generator, so that a failing run can be replayed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n
    }
}

#[test]
fn redb_store_survives_sigkill() {
    crash_consistency_under_sigkill(Kind::Redb);
}

#[test]
fn segment_store_survives_sigkill() {
    crash_consistency_under_sigkill(Kind::Segments);
}

fn crash_consistency_under_sigkill(kind: Kind) {
    let mut rng = Rng(test_seed());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash");

    let mut acked = 0;
    let mut last = 0;
    for kill in 0..KILLS {
        let kill_after = 1 + rng.below(MAX_ACKS);
        let delay = Duration::from_micros(rng.below(MAX_KILL_DELAY_US));
        let acks = run_child_and_kill(kind, &path, kill_after, delay);
        assert_eq!(acks.len() as u64, kill_after);
        // The child continues right after what the store held, one by one.
        let expected: Vec<_> = (last + 1..=last + kill_after).collect();
        assert_eq!(acks, expected, "acks of run {kill}");
        acked = *acks.last().unwrap();
        last = check_store(kind, &path, acked);
        println!("run {kill}: killed {delay:?} after ack {acked}, store ends at {last}");
    }
    assert!(acked > 0 && last >= acked);
}
