//! Observer catch-up throughput: following a validator from commit 0 with
//! full verification and persistence, against a receive-only commit-stream
//! subscriber of the same publisher, and against the same bytes over a bare
//! loopback TCP socket, in the same run.
//!
//! ```text
//! cargo run --release -p dagstream-observer --example bench_follow -- [ROUNDS]
//! ```
//!
//! A 10-authority committee at 20,000 TPS of 512-byte transactions (blocks
//! of about 100 KB) produces ROUNDS rounds (default 300) before anything is
//! timed; the validator then stays idle, so every path catches up on the
//! same fixed history.

use dagstream_observer::{start, ObserverConfig};
use dagstream_publisher::PublisherConfig;
use dagstream_sim::SimConfig;
use dagstream_store::{MemStore, RedbStore, SegmentStore, Store};
use dagstream_test_utils::baseline::loopback_tcp_seconds;
use dagstream_test_utils::client::CommitStream;
use dagstream_test_utils::{TestChain, TestClock, TestCommittee};
use std::sync::Arc;
use std::time::Instant;

/// The allocator of the `dagstream` binary. glibc's malloc maps every
/// multi-megabyte message buffer afresh, and zeroing those pages would
/// dominate the profile.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn report(name: &str, commits: u64, bytes: u64, seconds: f64) {
    println!(
        "| {name} | {:.0} | {:.1} | {seconds:.2} s |",
        commits as f64 / seconds,
        bytes as f64 / seconds / 1e6
    );
}

#[tokio::main]
async fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map_or(300, |a| a.parse().expect("ROUNDS"));
    let fixture = TestCommittee::new(10, 1);
    let committee = fixture.committee.clone();
    let sim = SimConfig {
        tps: 20_000,
        tx_size_bytes: 512,
        ..SimConfig::default()
    };
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    // The blocks are read back from the store: keeping them too would
    // double the history's memory.
    let mut chain = TestChain::new(&fixture, sim, store.clone()).keep_blocks(false);
    chain.produce(rounds);
    let tip = chain.last_commit_index();
    // Commits of the last round are not certified yet: the observer gets
    // them from blocks, the receive-only client never does.
    let certified = tip - 2;
    let commits = store.scan_commits(1, tip as usize).unwrap();
    let mut bytes_through = vec![0u64; tip as usize + 1];
    for commit in &commits {
        let size: u64 = commit
            .commit()
            .blocks
            .iter()
            .map(|r| store.read_block(r).unwrap().unwrap().len() as u64)
            .sum();
        bytes_through[commit.index() as usize] = bytes_through[commit.index() as usize - 1] + size;
    }
    eprintln!(
        "history: {rounds} rounds, {tip} commits, {:.1} MB of committed blocks",
        bytes_through[tip as usize] as f64 / 1e6
    );
    // A frozen clock: the validator only serves its history.
    let validator = chain
        .start_clocked(TestClock::at(0), PublisherConfig::default())
        .await;
    let endpoint = validator.endpoint();

    println!("| path | commits/s | MB/s of blocks | time |");
    println!("|---|---|---|---|");

    // Baseline: the committed blocks' bytes over a bare loopback socket.
    let committed: Vec<bytes::Bytes> = commits
        .iter()
        .take(certified as usize)
        .flat_map(|c| c.commit().blocks.clone())
        .map(|r| store.read_block(&r).unwrap().unwrap())
        .collect();
    let seconds = loopback_tcp_seconds(committed).await;
    println!(
        "| raw loopback TCP, same bytes (baseline) | — | {:.1} | {seconds:.2} s |",
        bytes_through[certified as usize] as f64 / seconds / 1e6
    );

    // Baseline: receive only, no verification, no storage.
    let started = Instant::now();
    let mut stream = CommitStream::open(validator.channel().await).await.unwrap();
    stream.start(0, 0).await;
    let mut last = 0;
    while last < certified {
        let response = stream.next().await.unwrap();
        last = response.commits.last().map_or(last, |c| c.commit_index);
    }
    report(
        "receive-only commit stream (baseline)",
        last,
        bytes_through[last as usize],
        started.elapsed().as_secs_f64(),
    );
    drop(stream);

    // On the disk a node's data dir would be on, removed at the end.
    let work = tempfile::tempdir_in(".").unwrap();
    for (name, observer_store) in [
        (
            "observer, in-memory store",
            Arc::new(MemStore::new()) as Arc<dyn Store>,
        ),
        ("observer, redb store (durable per batch)", {
            Arc::new(RedbStore::open(&work.path().join("store.redb")).unwrap()) as Arc<dyn Store>
        }),
        ("observer, segment store (durable per batch)", {
            Arc::new(SegmentStore::open(&work.path().join("store")).unwrap()) as Arc<dyn Store>
        }),
    ] {
        let started = Instant::now();
        let (observer, mut delivered) = start(
            committee.clone(),
            observer_store,
            vec![endpoint.clone()],
            ObserverConfig::default(),
            0,
        )
        .unwrap();
        // Timed to the last certified commit, as the baseline is; the last
        // commits come from blocks once the observer has switched.
        let mut last = 0;
        while last < certified {
            last = delivered.recv().await.unwrap().index();
        }
        report(
            name,
            last,
            bytes_through[last as usize],
            started.elapsed().as_secs_f64(),
        );
        while last < tip {
            last = delivered.recv().await.unwrap().index();
        }
        observer.stop().await.unwrap();
    }
    validator.stop().await;
}
