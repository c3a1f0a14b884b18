//! Many subscribers on one publisher: identical streams, one shared copy of
//! the live tail, slow and excess subscribers turned away.

mod common;

use common::{
    patiently, start_validator, start_validator_on, start_validator_with, test_config, BlockStream,
    CommitStream,
};
use dagstream_publisher::PublisherConfig;
use dagstream_sim::SimConfig;
use dagstream_test_utils::store::{HookedStore, StoreHooks};
use dagstream_types::Bytes;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tonic::transport::Endpoint;

/// Counts the store's block reads.
#[derive(Default)]
struct BlockReads(AtomicU64);

impl StoreHooks for BlockReads {
    fn on_block_read(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// What one subscriber received: block bytes and commit indexes.
type Received = (Vec<Bytes>, Vec<u64>);

/// One subscriber with its own connection, reading both streams until it
/// has `targets` (blocks, highest commit), reporting each target reached.
async fn subscriber(
    endpoint: String,
    mut targets: tokio::sync::watch::Receiver<(usize, u64)>,
    reached: tokio::sync::mpsc::Sender<()>,
) -> Received {
    let channel = Endpoint::from_shared(endpoint)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut blocks = BlockStream::open(channel.clone()).await.unwrap();
    blocks.start(vec![0; 4], 0).await;
    let mut commits = CommitStream::open(channel).await.unwrap();
    commits.start(0, 0).await;
    let mut received: Received = (Vec::new(), Vec::new());
    loop {
        let (block_target, commit_target) = *targets.borrow_and_update();
        while received.0.len() < block_target {
            received.0.extend(blocks.next().await.unwrap().blocks);
        }
        while received.1.last().copied().unwrap_or(0) < commit_target {
            let response = commits.next().await.unwrap();
            received
                .1
                .extend(response.commits.iter().map(|c| c.commit_index));
        }
        reached.send(()).await.unwrap();
        if targets.changed().await.is_err() {
            return received;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_subscribers_receive_identical_sequences_from_one_shared_tail() {
    const SUBSCRIBERS: usize = 50;
    let store = Arc::new(HookedStore::<BlockReads>::default());
    let mut validator =
        start_validator_on(store.clone(), 4, SimConfig::default(), 20, test_config()).await;
    validator.wait_certified().await;
    let (targets, targets_rx) =
        tokio::sync::watch::channel((validator.chain.blocks().len(), validator.chain.certified()));
    let (reached_tx, mut reached) = tokio::sync::mpsc::channel(SUBSCRIBERS);
    let tasks: Vec<_> = (0..SUBSCRIBERS)
        .map(|_| {
            tokio::spawn(subscriber(
                validator.endpoint(),
                targets_rx.clone(),
                reached_tx.clone(),
            ))
        })
        .collect();
    // Everyone catches up on the history, which comes from the store.
    for _ in 0..SUBSCRIBERS {
        patiently("catch-up", reached.recv()).await.unwrap();
    }

    // The live tail is served from the shared cache: no store reads at all.
    let reads_before = store.hooks.0.load(Ordering::Relaxed);
    validator.chain.produce(20);
    validator.wait_certified().await;
    targets
        .send((validator.chain.blocks().len(), validator.chain.certified()))
        .unwrap();
    for _ in 0..SUBSCRIBERS {
        patiently("live tail", reached.recv()).await.unwrap();
    }
    assert_eq!(store.hooks.0.load(Ordering::Relaxed), reads_before);
    drop(targets);

    let expected_blocks: Vec<Bytes> = validator
        .chain
        .blocks()
        .iter()
        .map(|b| b.serialized().clone())
        .collect();
    let expected_commits: Vec<u64> = (1..=validator.chain.certified()).collect();
    for task in tasks {
        let (blocks, commits) = patiently("subscriber", task).await.unwrap();
        assert_eq!(blocks, expected_blocks);
        assert_eq!(commits, expected_commits);
    }
    validator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_subscriber_is_disconnected_while_others_continue() {
    // Blocks of about 200 KB, so that transport buffers fill within a few
    // rounds.
    let sim = SimConfig {
        tps: 8_000,
        tx_size_bytes: 1_000,
        ..SimConfig::default()
    };
    let config = PublisherConfig {
        slow_subscriber_timeout_ms: 300,
        stream_queue_len: 2,
        ..test_config()
    };
    let mut validator = start_validator_with(4, sim, 2, config).await;

    // The stalled subscriber: small HTTP/2 windows, and it never reads.
    let stalled_channel = Endpoint::from_shared(validator.endpoint())
        .unwrap()
        .initial_stream_window_size(65_535)
        .initial_connection_window_size(65_535)
        .connect()
        .await
        .unwrap();
    let mut stalled = BlockStream::open(stalled_channel).await.unwrap();
    stalled.start(vec![0; 4], 0).await;

    let mut healthy = BlockStream::open(validator.channel().await).await.unwrap();
    healthy.start(vec![0; 4], 0).await;
    let mut received = 0;
    let too_slow = [("service", "blocks"), ("reason", "too_slow")];
    let mut rounds = 0;
    while validator.metric("dagstream_publisher_disconnects_total", &too_slow) < 1.0 {
        assert!(
            rounds < 200,
            "the stalled subscriber was never disconnected"
        );
        validator.chain.produce(1);
        rounds += 1;
        while received < validator.chain.blocks().len() {
            received += healthy.next().await.unwrap().blocks.len();
        }
    }
    // The others go on.
    validator.chain.produce(3);
    while received < validator.chain.blocks().len() {
        received += healthy.next().await.unwrap().blocks.len();
    }
    assert_eq!(received, validator.chain.blocks().len());
    let active = validator.metric(
        "dagstream_publisher_active_streams",
        &[("service", "blocks")],
    );
    assert_eq!(active, 1.0);

    // The stalled one finds out when it reads.
    let status = patiently("the stalled stream's error", async {
        loop {
            match stalled.responses.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("stream ended without an error"),
                Err(status) => return status,
            }
        }
    })
    .await;
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    assert_eq!(status.message(), "subscriber too slow");
    validator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_subscribers_turns_away_extra_streams() {
    let config = PublisherConfig {
        max_subscribers: 2,
        ..test_config()
    };
    let validator = start_validator(5, config).await;
    let channel = validator.channel().await;
    let _first = BlockStream::open(channel.clone()).await.unwrap();
    let _second = BlockStream::open(channel.clone()).await.unwrap();
    let status = match BlockStream::open(channel.clone()).await {
        Err(status) => status,
        Ok(mut third) => third.next().await.unwrap_err(),
    };
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    assert!(
        status.message().contains("max_subscribers"),
        "{}",
        status.message()
    );
    // The other service has its own allowance.
    let _commits = CommitStream::open(channel).await.unwrap();
    validator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_over_the_rate_are_rejected() {
    let config = PublisherConfig {
        max_commands_per_second: 1,
        command_burst: 3,
        ..test_config()
    };
    let validator = start_validator(5, config).await;
    let mut stream = BlockStream::open(validator.channel().await).await.unwrap();
    for _ in 0..4 {
        stream.start(vec![0; 4], 0).await;
    }
    let status = loop {
        match stream.next().await {
            Ok(_) => continue,
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    assert!(
        status.message().contains("commands per second"),
        "{}",
        status.message()
    );
    validator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_open_streams_with_unavailable() {
    let validator = start_validator(5, test_config()).await;
    let mut stream = BlockStream::open(validator.channel().await).await.unwrap();
    stream.start(vec![5; 4], 0).await;
    assert!(stream.next().await.unwrap().blocks.is_empty());
    validator.stop().await;
    let status = loop {
        match stream.responses.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("stream ended without a status"),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), tonic::Code::Unavailable);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_extensions_gets_the_documented_behaviour() {
    use dagstream_proto::design;
    let validator = start_validator(10, test_config()).await;
    let channel = validator.channel().await;

    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(design::BlockStreamRequest {
        command: Some(design::block_stream_request::Command::Start(
            design::StartBlockStream {
                highest_round_per_authority: vec![0; 4],
            },
        )),
    })
    .await
    .unwrap();
    let mut blocks =
        design::block_stream_service_client::BlockStreamServiceClient::new(channel.clone())
            .stream_blocks(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
    let mut received = Vec::new();
    while received.len() < validator.chain.blocks().len() {
        let response = patiently("blocks", blocks.message())
            .await
            .unwrap()
            .unwrap();
        received.extend(response.blocks);
    }
    let expected: Vec<Bytes> = validator
        .chain
        .blocks()
        .iter()
        .map(|b| b.serialized().clone())
        .collect();
    assert_eq!(received, expected);

    let (tx2, rx2) = tokio::sync::mpsc::channel(4);
    tx2.send(design::CommitStreamRequest {
        command: Some(design::commit_stream_request::Command::Start(
            design::StartCommitStream {
                last_commit_index: 0,
            },
        )),
    })
    .await
    .unwrap();
    let mut commits = design::commit_stream_service_client::CommitStreamServiceClient::new(channel)
        .stream_commits(tokio_stream::wrappers::ReceiverStream::new(rx2))
        .await
        .unwrap()
        .into_inner();
    validator.wait_certified().await;
    let mut indexes = Vec::new();
    while indexes.last().copied().unwrap_or(0) < validator.chain.certified() {
        let response = patiently("commits", commits.message())
            .await
            .unwrap()
            .unwrap();
        for commit in response.commits {
            let original = &validator.chain.commits()[commit.commit_index as usize - 1];
            assert_eq!(commit.timestamp_ms, original.timestamp_ms());
            assert_eq!(commit.blocks.len(), original.commit().blocks.len());
            indexes.push(commit.commit_index);
        }
    }
    assert_eq!(
        indexes,
        (1..=validator.chain.certified()).collect::<Vec<_>>()
    );
    drop((tx, tx2));
    validator.stop().await;
}
