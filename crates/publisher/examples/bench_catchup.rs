//! Catch-up throughput of the publisher over loopback gRPC, against raw
//! loopback TCP moving the same bytes in the same run.
//!
//! ```text
//! cargo run --release -p dagstream-publisher --example bench_catchup -- [ROUNDS] [SUBSCRIBERS]
//! ```
//!
//! A 10-authority committee at 20,000 TPS of 512-byte transactions (blocks
//! of about 100 KB) produces ROUNDS rounds (default 300) into an in-memory
//! store. Then, timed separately:
//! - raw TCP: one socket carries every block's bytes once;
//! - one commit stream from commit 0 to the last certified commit;
//! - one block stream of the whole backlog window;
//! - SUBSCRIBERS (default 10) commit streams at once, each on its own
//!   connection.
//!
//! Subscribers only receive (no verification): this measures the publisher
//! and the transport, not the observer.

use dagstream_publisher::PublisherConfig;
use dagstream_sim::SimConfig;
use dagstream_store::{MemStore, Store};
use dagstream_test_utils::baseline::loopback_tcp_seconds;
use dagstream_test_utils::client::{connect, BlockStream, CommitStream};
use dagstream_test_utils::{TestChain, TestCommittee, TestValidator};
use dagstream_types::BlockRef;
use std::sync::Arc;
use std::time::Instant;

const AUTHORITIES: usize = 10;

fn report(name: &str, bytes: u64, items: u64, unit: &str, seconds: f64) {
    println!(
        "| {name} | {:.1} | {:.0} {unit}/s | {seconds:.2} s |",
        bytes as f64 / seconds / 1e6,
        items as f64 / seconds,
    );
}

async fn commit_catch_up(endpoint: String, until: u64) -> (u64, u64) {
    let mut stream = CommitStream::open(connect(&endpoint).await).await.unwrap();
    stream.start(0, 0).await;
    let (mut bytes, mut last) = (0u64, 0u64);
    while last < until {
        let response = stream.next().await.unwrap();
        for commit in &response.commits {
            bytes += commit.blocks.iter().map(|b| b.len() as u64).sum::<u64>();
            last = commit.commit_index;
        }
        bytes += response
            .certifier_blocks
            .iter()
            .map(|b| b.len() as u64)
            .sum::<u64>();
    }
    (bytes, last)
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().map_or(300, |a| a.parse().expect("ROUNDS"));
    let subscribers: usize = args.next().map_or(10, |a| a.parse().expect("SUBSCRIBERS"));

    let sim_config = SimConfig {
        tps: 20_000,
        tx_size_bytes: 512,
        ..SimConfig::default()
    };
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let committee = TestCommittee::new(AUTHORITIES, 1);
    // The blocks are read back from the store, as the bytes it shares: kept
    // decoded too, they would double the history's memory.
    let mut chain = TestChain::new(&committee, sim_config, store.clone()).keep_blocks(false);
    let started = Instant::now();
    chain.produce(rounds);
    let certified = chain.certified();
    let highest = store.highest_block_round().unwrap().unwrap_or(0);
    let all_blocks: Vec<_> = store
        .scan_blocks(BlockRef::round_start(1), highest, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|(_, bytes)| bytes)
        .collect();
    let total_bytes: u64 = all_blocks.iter().map(|b| b.len() as u64).sum();
    eprintln!(
        "produced {rounds} rounds, {} blocks, {:.1} MB, {certified} certified commits in {:.1} s",
        all_blocks.len(),
        total_bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );

    // Baseline: the same bytes over one loopback TCP socket.
    let tcp_seconds = loopback_tcp_seconds(all_blocks.clone()).await;

    let config = PublisherConfig {
        block_backlog_rounds: rounds as u64,
        max_subscribers: subscribers.max(1) * 2,
        ..PublisherConfig::default()
    };
    let validator = TestValidator::start(chain, config).await;
    let endpoint = validator.endpoint();

    println!("| path | MB/s | items/s | time |");
    println!("|---|---|---|---|");
    report(
        "raw loopback TCP (baseline)",
        total_bytes,
        all_blocks.len() as u64,
        "blocks",
        tcp_seconds,
    );

    let started = Instant::now();
    let (bytes, last) = commit_catch_up(endpoint.clone(), certified).await;
    report(
        "commit stream, 1 subscriber",
        bytes,
        last,
        "commits",
        started.elapsed().as_secs_f64(),
    );

    let started = Instant::now();
    let mut stream = BlockStream::open(connect(&endpoint).await).await.unwrap();
    stream.start(vec![0; AUTHORITIES], 0).await;
    let (mut bytes, mut count) = (0u64, 0usize);
    while count < all_blocks.len() {
        let response = stream.next().await.unwrap();
        count += response.blocks.len();
        bytes += response.blocks.iter().map(|b| b.len() as u64).sum::<u64>();
    }
    report(
        "block stream, 1 subscriber",
        bytes,
        count as u64,
        "blocks",
        started.elapsed().as_secs_f64(),
    );
    drop(stream);

    let started = Instant::now();
    let tasks: Vec<_> = (0..subscribers)
        .map(|_| tokio::spawn(commit_catch_up(endpoint.clone(), certified)))
        .collect();
    let mut bytes = 0;
    for task in tasks {
        bytes += task.await.unwrap().0;
    }
    report(
        &format!("commit stream, {subscribers} subscribers (aggregate)"),
        bytes,
        certified * subscribers as u64,
        "commits",
        started.elapsed().as_secs_f64(),
    );
    validator.stop().await;
}
