//! Block stream semantics over real gRPC on loopback.

mod common;

use common::{start_validator, test_config, BlockStream, TestValidator};
use dagstream_publisher::PublisherConfig;
use dagstream_types::{BlockLimits, BlockRef, Bytes, Committee, VerifiedBlock};
use std::collections::HashSet;

fn decode(committee: &Committee, bytes: Bytes) -> BlockRef {
    VerifiedBlock::verify(bytes, committee, &BlockLimits::default())
        .expect("publisher sends valid blocks")
        .reference()
}

/// Asserts each block's ancestors above genesis came before it.
fn assert_causal(validator: &TestValidator, received: &[BlockRef]) {
    let position: std::collections::HashMap<_, _> =
        received.iter().enumerate().map(|(i, r)| (*r, i)).collect();
    for block in validator.chain.blocks() {
        let Some(&at) = position.get(&block.reference()) else {
            continue;
        };
        for ancestor in block.ancestors().iter().filter(|a| a.round > 0) {
            if let Some(&before) = position.get(ancestor) {
                assert!(
                    before < at,
                    "{ancestor:?} sent after its descendant {block:?}"
                );
            }
        }
    }
}

/// Reads until a heartbeat (an empty response), returning the blocks before it.
async fn read_until_idle(committee: &Committee, stream: &mut BlockStream) -> Vec<BlockRef> {
    let mut blocks = Vec::new();
    loop {
        let response = stream.next().await.unwrap();
        if response.blocks.is_empty() {
            return blocks;
        }
        blocks.extend(response.blocks.into_iter().map(|b| decode(committee, b)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backlog_then_live_has_no_gap_and_no_duplicate() {
    let mut validator = start_validator(30, test_config()).await;
    let committee = validator.chain.committee().clone();
    let mut stream = BlockStream::open(validator.channel().await).await.unwrap();
    stream.start(vec![0; 4], 0).await;

    // Live rounds are produced while the backlog is still being read, so the
    // switch from the store to the feed happens mid-stream.
    let mut received = Vec::new();
    let mut live = 0;
    while received.len() < validator.chain.blocks().len() || live < 30 {
        let response = stream.next().await.unwrap();
        received.extend(response.blocks.into_iter().map(|b| decode(&committee, b)));
        if live < 30 {
            validator.chain.produce(1);
            live += 1;
        }
    }
    received.extend(read_until_idle(&committee, &mut stream).await);

    let unique: HashSet<_> = received.iter().collect();
    assert_eq!(unique.len(), received.len(), "a block was sent twice");
    let mut expected: Vec<_> = validator
        .chain
        .blocks()
        .iter()
        .map(|b| b.reference())
        .collect();
    let mut sorted = received.clone();
    expected.sort();
    sorted.sort();
    assert_eq!(sorted, expected);
    assert_causal(&validator, &received);
    validator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_sends_exactly_what_the_subscriber_lacks() {
    let validator = start_validator(20, test_config()).await;
    let committee = validator.chain.committee().clone();
    let mut stream = BlockStream::open(validator.channel().await).await.unwrap();
    let have = vec![10, 12, 0, 19];
    stream.start(have.clone(), 0).await;
    let received: HashSet<_> = read_until_idle(&committee, &mut stream)
        .await
        .into_iter()
        .collect();
    let expected: HashSet<_> = validator
        .chain
        .blocks()
        .iter()
        .map(|b| b.reference())
        .filter(|r| r.round > have[r.author as usize])
        .collect();
    assert_eq!(received, expected);
    validator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_position_older_than_the_window_starts_at_the_window() {
    let config = PublisherConfig {
        block_backlog_rounds: 20,
        ..test_config()
    };
    let validator = start_validator(80, config).await;
    let committee = validator.chain.committee().clone();
    let mut stream = BlockStream::open(validator.channel().await).await.unwrap();
    stream.start(vec![0; 4], 0).await;
    let received = read_until_idle(&committee, &mut stream).await;
    let rounds: HashSet<_> = received.iter().map(|r| r.round).collect();
    assert_eq!(rounds, (61..=80).collect());
    assert_eq!(received.len(), 20 * 4);
    validator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_vector_length_is_invalid_argument() {
    let validator = start_validator(3, test_config()).await;
    let mut stream = BlockStream::open(validator.channel().await).await.unwrap();
    stream.start(vec![0; 3], 0).await;
    let status = stream.next().await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("3 entries"),
        "{}",
        status.message()
    );
    assert!(
        status.message().contains("4 authorities"),
        "{}",
        status.message()
    );
    validator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_pauses_and_start_resumes_or_replaces_the_position() {
    let mut validator = start_validator(10, test_config()).await;
    let committee = validator.chain.committee().clone();
    let mut stream = BlockStream::open(validator.channel().await).await.unwrap();
    stream.start(vec![0; 4], 0).await;
    let mut received = read_until_idle(&committee, &mut stream).await;
    assert_eq!(received.len(), 40);

    stream.stop().await;
    let stop = [("service", "blocks"), ("command", "stop")];
    validator
        .wait_metric("dagstream_publisher_commands_total", &stop, 1.0)
        .await;
    validator.chain.produce(5);
    // Stopped: the stream stays open, with heartbeats only.
    for _ in 0..3 {
        let heartbeat = stream.next().await.unwrap();
        assert!(heartbeat.blocks.is_empty());
        assert_eq!(
            heartbeat.highest_commit_index,
            validator.chain.commits().last().unwrap().index()
        );
    }

    // Resume from the subscriber's own vector: exactly the 5 new rounds.
    let mut have = vec![0; 4];
    for r in &received {
        have[r.author as usize] = have[r.author as usize].max(r.round);
    }
    stream.start(have, 0).await;
    let resumed = read_until_idle(&committee, &mut stream).await;
    assert_eq!(resumed.len(), 20);
    assert!(resumed.iter().all(|r| r.round > 10));
    received.extend(resumed);

    // A Start while started replaces the position: rounds 14 and 15 again.
    stream.start(vec![13; 4], 0).await;
    let replayed: HashSet<_> = read_until_idle(&committee, &mut stream)
        .await
        .into_iter()
        .collect();
    let expected: HashSet<_> = received.iter().copied().filter(|r| r.round > 13).collect();
    assert_eq!(replayed, expected);
    validator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_follow_the_lag_and_the_hint() {
    // Heartbeats mark the end of the backlog here, and a subscriber that
    // verifies 1,600 blocks falls more than test_config's 50 ms behind its
    // queue on a slow machine: heartbeats sent meanwhile would then come
    // after the backlog, ahead of the live blocks. A heartbeat only after a
    // second of quiet keeps "idle" meaning idle.
    let config = PublisherConfig {
        heartbeat_interval_ms: 1_000,
        ..test_config()
    };
    let mut validator = start_validator(400, config).await;
    let committee = validator.chain.committee().clone();
    let mut stream = BlockStream::open(validator.channel().await).await.unwrap();
    stream.start(vec![0; 4], 0).await;
    // 1,600 blocks pending: batches of 100 first.
    let first = stream.next().await.unwrap();
    assert_eq!(first.blocks.len(), 100);
    read_until_idle(&committee, &mut stream).await;
    // At the tip, a new round goes out as its blocks reach the feed, in
    // one to four responses, and nothing else with it. Heartbeats sent
    // while the backlog was being read may still be queued ahead of them.
    validator.chain.produce(1);
    let round = validator.chain.blocks().last().unwrap().round();
    let mut live = Vec::new();
    let mut responses = 0;
    while live.len() < 4 {
        let response = stream.next().await.unwrap();
        if !response.blocks.is_empty() {
            responses += 1;
            live.extend(response.blocks.into_iter().map(|b| decode(&committee, b)));
        }
    }
    assert!(responses <= 4);
    assert!(live.iter().all(|r| r.round == round), "{live:?}");

    let mut hinted = BlockStream::open(validator.channel().await).await.unwrap();
    hinted.start(vec![0; 4], 7).await;
    let mut total = 0;
    loop {
        let response = hinted.next().await.unwrap();
        if response.blocks.is_empty() {
            break;
        }
        assert!(response.blocks.len() <= 7);
        total += response.blocks.len();
    }
    assert_eq!(total, 401 * 4);
    validator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_byte_cap_holds_and_an_oversized_block_goes_alone() {
    for max_batch_bytes in [3_000, 500] {
        let config = PublisherConfig {
            max_batch_bytes,
            ..test_config()
        };
        let validator = start_validator(30, config).await;
        let mut stream = BlockStream::open(validator.channel().await).await.unwrap();
        stream.start(vec![0; 4], 0).await;
        let mut total = 0;
        loop {
            let response = stream.next().await.unwrap();
            if response.blocks.is_empty() {
                break;
            }
            let bytes: usize = response.blocks.iter().map(|b| b.len()).sum();
            assert!(
                bytes <= max_batch_bytes || response.blocks.len() == 1,
                "{} blocks of {bytes} bytes over a cap of {max_batch_bytes}",
                response.blocks.len()
            );
            total += response.blocks.len();
        }
        assert_eq!(total, 120);
        validator.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_carry_the_highest_commit_while_idle() {
    let validator = start_validator(12, test_config()).await;
    let mut stream = BlockStream::open(validator.channel().await).await.unwrap();
    stream.start(vec![12; 4], 0).await;
    for _ in 0..3 {
        let heartbeat = stream.next().await.unwrap();
        assert!(heartbeat.blocks.is_empty());
        assert_eq!(
            heartbeat.highest_commit_index,
            validator.chain.commits().last().unwrap().index()
        );
    }
    validator.stop().await;
}

/// Live latency is measured for blocks from the feed only: a backlog read
/// from the store is history, not latency.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_live_blocks_count_in_the_latency_histograms() {
    let mut validator = start_validator(20, test_config()).await;
    let committee = validator.chain.committee().clone();
    let accept_to_queue = "dagstream_publisher_accept_to_queue_seconds";
    let queue_to_send = "dagstream_publisher_queue_to_send_seconds";
    let blocks = [("service", "blocks")];
    let mut stream = BlockStream::open(validator.channel().await).await.unwrap();
    stream.start(vec![0; 4], 0).await;
    let history = read_until_idle(&committee, &mut stream).await;
    assert_eq!(history.len(), 20 * 4);
    assert_eq!(validator.metric(accept_to_queue, &blocks), 0.0);

    let mut responses = 0;
    for _ in 0..3 {
        validator.chain.produce(1);
        let mut round = 0;
        while round < 4 {
            let response = stream.next().await.unwrap();
            responses += 1;
            round += response.blocks.len();
        }
    }
    // Each live round went out in one to four batches, each observed once.
    let live = validator.metric(accept_to_queue, &blocks);
    assert!((3.0..=12.0).contains(&live), "{live} live batches");
    // Every response the subscriber got, heartbeats included, was taken
    // from the queue once.
    assert!(validator.metric(queue_to_send, &blocks) >= responses as f64);
    validator.stop().await;
}
