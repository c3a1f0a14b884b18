//! A validator's memory over time: RSS of a validator producing on the
//! system clock, optionally with subscribers that start a commit stream
//! and never read.
//!
//! ```text
//! cargo run --release -p dagstream-bench --bin bench_memory -- [SECONDS] [STALLED] [PROFILE]
//! ```
//!
//! SECONDS (default 600) of PROFILE (default `mainnet`: 100 authorities,
//! 75 ms rounds, 5,000 TPS), from genesis, into a segment store in a temporary
//! directory, as `dagstream validator` runs. STALLED (default 0)
//! subscribers each open a commit stream at commit 0 after the first minute
//! and never read; the publisher cuts them as too slow after its
//! `slow_subscriber_timeout_ms`. They run in a child process (this same
//! program), so that their receive buffers are not counted, and keep their
//! connections open until 150 s, when the child exits.
//!
//! It runs on mimalloc, the allocator of the `dagstream` binary; with
//! `--features bench-system-allocator`, on the system's (glibc's malloc on
//! Linux), to compare how each returns memory to the OS.
//!
//! Every 10 s it prints the RSS (from `/proc/self/status`) with what the
//! bounded caches hold, then the RSS growth from minute 2 to the end: the
//! validator's memory must level off, whatever the chain's length.

use dagstream_bench::live::producer;
use dagstream_proto::v1::commit_stream_service_client::CommitStreamServiceClient;
use dagstream_proto::v1::{commit_stream_request, CommitStreamRequest, StartCommitStream};
use dagstream_publisher::{ConsensusSource, PublisherConfig};
use dagstream_sim::Profile;
use dagstream_store::{SegmentStore, Store};
use dagstream_validator::retention::ValidatorConfig;
use dagstream_validator::{start, system_clock};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_stream::wrappers::ReceiverStream;

#[cfg(not(feature = "bench-system-allocator"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The global allocator this build measures.
const ALLOCATOR_NAME: &str = if cfg!(feature = "bench-system-allocator") {
    "system"
} else {
    "mimalloc"
};

/// Time between two samples: a hundred rounds of the mainnet profile, and
/// sixty samples in a ten-minute run.
const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// When stalled subscribers connect: after the first minute, so that they
/// have a history to be sent.
const STALL_AFTER: Duration = Duration::from_secs(60);
/// When the stalled subscribers' clients close their connections: well
/// after the publisher cut their streams, so that both states are seen.
const DISCONNECT_AFTER: Duration = Duration::from_secs(150);
/// From when growth is measured: the first minutes fill the bounded caches
/// (the tail, the DAG, the store's page cache) and the allocator's arenas.
const STEADY_FROM: Duration = Duration::from_secs(120);

/// Resident set size in MB, or 0 where `/proc` is not there.
fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// The first argument that makes this program the stalled subscribers.
const STALL_MODE: &str = "--stall";

/// Opens `count` commit streams to `endpoint` at commit 0, each on its own
/// connection, holds them for `seconds` without reading, then exits.
async fn stall(endpoint: &str, count: usize, seconds: u64) {
    let mut streams = Vec::with_capacity(count);
    for _ in 0..count {
        let (commands, requests) = tokio::sync::mpsc::channel(1);
        commands
            .send(CommitStreamRequest {
                command: Some(commit_stream_request::Command::Start(StartCommitStream {
                    last_commit_index: 0,
                    preferred_batch_size: 0,
                })),
            })
            .await
            .expect("the request queue is open");
        let responses = CommitStreamServiceClient::connect(endpoint.to_string())
            .await
            .expect("the validator accepts connections")
            .stream_commits(ReceiverStream::new(requests))
            .await
            .expect("a commit stream");
        // Kept, never read.
        streams.push((commands, responses));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some(STALL_MODE) {
        let endpoint = args.nth(1).expect("ENDPOINT");
        let count = args.next().and_then(|a| a.parse().ok()).expect("COUNT");
        let seconds = args.next().and_then(|a| a.parse().ok()).expect("SECONDS");
        return stall(&endpoint, count, seconds).await;
    }
    let seconds: u64 = args.next().map_or(600, |a| a.parse().expect("SECONDS"));
    let stalled: usize = args.next().map_or(0, |a| a.parse().expect("STALLED"));
    let profile: Profile = args
        .next()
        .map_or(Ok(Profile::Mainnet), |a| a.parse())
        .expect("PROFILE: small, mainnet or stress");

    let dir = tempfile::tempdir().expect("a temporary directory");
    let store: Arc<dyn Store> =
        Arc::new(SegmentStore::open(&dir.path().join("store")).expect("a new store"));
    let (_, producer) = producer(profile, store).expect("a producer at genesis");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let registry = prometheus::Registry::new();
    let config = PublisherConfig::default();
    let validator = start(
        producer,
        system_clock(),
        listener,
        config.clone(),
        &ValidatorConfig::default(),
        &registry,
    )
    .expect("the validator starts");
    let endpoint = format!("http://{}", validator.addr);

    println!(
        "{} authorities, {} ms rounds, {seconds} s, {stalled} stalled subscribers, \
         {ALLOCATOR_NAME} allocator; queue bound per stream {} x {} MB",
        profile.authorities(),
        profile.round_interval_ms(),
        config.stream_queue_len,
        config.max_batch_bytes >> 20,
    );
    println!(
        "| s | RSS MB | round | commit | tail blocks | tail commits | certificates | streams |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let started = Instant::now();
    let mut child = None;
    let mut samples: Vec<(Duration, f64)> = Vec::new();
    let mut ticks = tokio::time::interval(SAMPLE_EVERY);
    while started.elapsed() < Duration::from_secs(seconds) {
        ticks.tick().await;
        let elapsed = started.elapsed();
        if stalled > 0 && elapsed >= STALL_AFTER && child.is_none() {
            let hold = DISCONNECT_AFTER
                .saturating_sub(elapsed)
                .as_secs()
                .to_string();
            child = Some(
                std::process::Command::new(std::env::current_exe().expect("this program"))
                    .args([STALL_MODE, &endpoint, &stalled.to_string(), &hold])
                    .spawn()
                    .expect("the stalled subscribers start"),
            );
        }
        let source = &validator.source;
        let (tail_blocks, tail_commits) = source.cached();
        let rss = rss_mb();
        samples.push((elapsed, rss));
        println!(
            "| {} | {rss:.0} | {} | {} | {tail_blocks} | {tail_commits} | {} | {} |",
            elapsed.as_secs(),
            source.highest_round(),
            source.highest_commit_index(),
            validator.publisher().cached_certificates(),
            validator.publisher().open_streams(),
        );
    }
    let steady: Vec<f64> = samples
        .iter()
        .filter(|(at, _)| *at >= STEADY_FROM)
        .map(|(_, rss)| *rss)
        .collect();
    if let (Some(first), Some(last)) = (steady.first(), steady.last()) {
        println!(
            "RSS {first:.0} MB at {} s, {last:.0} MB at the end: {:+.1}% (target < 5%)",
            STEADY_FROM.as_secs(),
            (last / first - 1.0) * 100.0
        );
    }
    if let Some(mut child) = child {
        let _ = child.wait();
    }
    validator.stop().await.expect("the validator stops");
}
