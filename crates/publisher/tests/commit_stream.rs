//! Commit stream semantics over real gRPC on loopback.

mod common;

use common::{start_validator, test_config, verify_batch, CommitStream, TestValidator};
use dagstream_publisher::batching::batch_size_for_lag;
use dagstream_publisher::PublisherConfig;
use dagstream_types::{CommitRef, TrustedCommit};

/// Reads and verifies responses until commit `until` arrives.
async fn read_until(
    validator: &TestValidator,
    stream: &mut CommitStream,
    previous: &mut Option<TrustedCommit>,
    until: u64,
) -> Vec<CommitRef> {
    let committee = validator.chain.committee().clone();
    let mut refs = Vec::new();
    while refs.last().is_none_or(|r: &CommitRef| r.index < until) {
        let response = stream.next().await.unwrap();
        refs.extend(verify_batch(&committee, previous, &response));
    }
    refs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_the_certified_chain_from_zero_and_then_live() {
    let mut validator = start_validator(149, test_config()).await;
    validator.wait_certified().await;
    let mut stream = CommitStream::open(validator.channel().await).await.unwrap();
    stream.start(0, 0).await;
    let mut previous = None;
    let mut received = read_until(
        &validator,
        &mut stream,
        &mut previous,
        validator.chain.certified(),
    )
    .await;

    // Only certified commits: the last round's commits wait for their votes,
    // while highest_commit_index reports every decided one.
    let highest = validator.chain.commits().last().unwrap().index();
    assert!(
        validator.chain.certified() < highest,
        "{} {}",
        validator.chain.certified(),
        highest
    );
    let heartbeat = stream.next().await.unwrap();
    assert!(heartbeat.commits.is_empty());
    assert_eq!(heartbeat.highest_commit_index, highest);

    let live_latency = "dagstream_publisher_accept_to_queue_seconds";
    let commits = [("service", "commits")];
    let before = validator.metric(live_latency, &commits);
    validator.chain.produce(20);
    received.extend(
        read_until(
            &validator,
            &mut stream,
            &mut previous,
            validator.chain.certified(),
        )
        .await,
    );
    let expected: Vec<CommitRef> =
        validator.chain.commit_refs()[..validator.chain.certified() as usize].to_vec();
    assert_eq!(received, expected);
    // Batches that carried a newly certified commit measured its latency.
    assert!(validator.metric(live_latency, &commits) > before);
    validator.stop().await;
}

/// A subscriber that sends its Start and closes its side (as grpcurl and
/// most simple clients do) has said "no more commands", not "stop": it gets
/// the whole chain, then the live tail, until it cancels.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_closed_stream_keeps_streaming() {
    let mut validator = start_validator(150, test_config()).await;
    validator.wait_certified().await;
    let mut stream = CommitStream::open(validator.channel().await).await.unwrap();
    stream.start(0, 0).await;
    // Dropping the only sender ends the request stream: a half-close.
    stream.commands = tokio::sync::mpsc::channel(1).0;
    let mut previous = None;
    let mut received = read_until(
        &validator,
        &mut stream,
        &mut previous,
        validator.chain.certified(),
    )
    .await;
    validator.chain.produce(30);
    received.extend(
        read_until(
            &validator,
            &mut stream,
            &mut previous,
            validator.chain.certified(),
        )
        .await,
    );
    assert_eq!(
        received,
        validator.chain.commit_refs()[..validator.chain.certified() as usize].to_vec()
    );
    // Heartbeats still come while nothing new is certified.
    let heartbeat = stream.next().await.unwrap();
    assert!(heartbeat.commits.is_empty());
    validator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_from_the_middle_of_the_chain() {
    let validator = start_validator(150, test_config()).await;
    validator.wait_certified().await;
    let mut stream = CommitStream::open(validator.channel().await).await.unwrap();
    stream.start(100, 0).await;
    let mut previous = Some(validator.chain.commits()[99].clone());
    let received = read_until(
        &validator,
        &mut stream,
        &mut previous,
        validator.chain.certified(),
    )
    .await;
    assert_eq!(received[0].index, 101);
    assert_eq!(
        received,
        validator.chain.commit_refs()[100..validator.chain.certified() as usize].to_vec()
    );
    validator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruned_commits_are_out_of_range() {
    let validator = start_validator(80, test_config()).await;
    validator.chain.store().prune(50, 0).unwrap();
    let mut stream = CommitStream::open(validator.channel().await).await.unwrap();
    stream.start(10, 0).await;
    let status = stream.next().await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::OutOfRange);
    assert!(
        status.message().contains("lowest available commit is 50"),
        "{}",
        status.message()
    );
    // From the lowest retained commit on, it streams.
    let mut stream = CommitStream::open(validator.channel().await).await.unwrap();
    stream.start(49, 0).await;
    let response = stream.next().await.unwrap();
    assert_eq!(response.commits[0].commit_index, 50);
    validator.stop().await;
}

/// A subscriber slower than the retention window, whose next commit is
/// pruned under it, is ended with `OUT_OF_RANGE` naming the archive, as at
/// its start: not with an internal error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_overtaken_by_pruning_is_ended_out_of_range() {
    let config = PublisherConfig {
        // One commit a response: the stream is far from done when pruned.
        max_batch_bytes: 1,
        history_archive: Some("s3://chain/archive".into()),
        ..test_config()
    };
    let validator = start_validator(200, config).await;
    validator.wait_certified().await;
    let mut stream = CommitStream::open(validator.channel().await).await.unwrap();
    stream.start(0, 0).await;
    let first = stream.next().await.unwrap();
    assert_eq!(first.commits[0].commit_index, 1);
    validator.chain.store().prune(100, 0).unwrap();
    let status = loop {
        match stream.next().await {
            Ok(response) => assert!(
                response.commits.iter().all(|c| c.commit_index < 100),
                "only batches built before the prune"
            ),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), tonic::Code::OutOfRange, "{status:?}");
    assert!(
        status.message().contains(
            "is no longer retained; the lowest available commit is 100; earlier history is in \
             the archive s3://chain/archive (dagstream observer --bootstrap-from s3://chain/archive)"
        ),
        "{}",
        status.message()
    );
    validator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn far_future_is_invalid_and_near_future_waits() {
    let mut validator = start_validator(40, test_config()).await;
    let highest = validator.chain.commits().last().unwrap().index();
    let mut stream = CommitStream::open(validator.channel().await).await.unwrap();
    stream.start(highest + 100_001, 0).await;
    let status = stream.next().await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("100000"), "{}", status.message());

    let mut stream = CommitStream::open(validator.channel().await).await.unwrap();
    stream.start(highest + 2, 0).await;
    // Nothing yet: heartbeats only.
    assert!(stream.next().await.unwrap().commits.is_empty());
    validator.chain.produce(10);
    let mut first = None;
    while first.is_none() {
        first = stream
            .next()
            .await
            .unwrap()
            .commits
            .first()
            .map(|c| c.commit_index);
    }
    assert_eq!(first, Some(highest + 3));
    validator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_follow_the_lag_rule_then_go_one_by_one_at_the_tip() {
    let mut validator = start_validator(1_200, test_config()).await;
    validator.wait_certified().await;
    let mut stream = CommitStream::open(validator.channel().await).await.unwrap();
    stream.start(0, 0).await;
    let mut next = 1;
    let mut sizes = Vec::new();
    while next <= validator.chain.certified() {
        let response = stream.next().await.unwrap();
        if response.commits.is_empty() {
            continue;
        }
        let lag = response.highest_commit_index - (next - 1);
        let expected = (batch_size_for_lag(lag) as u64).min(validator.chain.certified() - next + 1);
        assert_eq!(response.commits.len() as u64, expected, "lag {lag}");
        assert_eq!(response.commits[0].commit_index, next);
        next += response.commits.len() as u64;
        sizes.push(response.commits.len());
    }
    assert_eq!(sizes[0], 100, "far behind: batches of 100");
    assert!(sizes.contains(&20) && sizes.contains(&5));

    // At the tip, commits go out one per response.
    let before = validator.chain.certified();
    validator.chain.produce(3);
    while next <= validator.chain.certified() {
        let response = stream.next().await.unwrap();
        if !response.commits.is_empty() {
            assert_eq!(response.commits.len(), 1);
            next += 1;
        }
    }
    assert!(validator.chain.certified() > before);
    validator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hint_and_the_byte_cap_bound_each_batch() {
    let validator = start_validator(100, test_config()).await;
    validator.wait_certified().await;
    let mut stream = CommitStream::open(validator.channel().await).await.unwrap();
    stream.start(0, 3).await;
    let mut previous = None;
    let committee = validator.chain.committee().clone();
    while previous
        .as_ref()
        .is_none_or(|c: &TrustedCommit| c.index() < validator.chain.certified())
    {
        let response = stream.next().await.unwrap();
        assert!(response.commits.len() <= 3);
        verify_batch(&committee, &mut previous, &response);
    }

    let max_batch_bytes = 6_000;
    let config = PublisherConfig {
        max_batch_bytes,
        ..test_config()
    };
    let validator = start_validator(60, config).await;
    validator.wait_certified().await;
    let mut stream = CommitStream::open(validator.channel().await).await.unwrap();
    stream.start(0, 0).await;
    let mut previous = None;
    while previous
        .as_ref()
        .is_none_or(|c: &TrustedCommit| c.index() < validator.chain.certified())
    {
        let response = stream.next().await.unwrap();
        let bytes: usize = response
            .commits
            .iter()
            .flat_map(|c| &c.blocks)
            .map(|b| b.len())
            .sum();
        assert!(bytes <= max_batch_bytes || response.commits.len() == 1);
        verify_batch(&committee, &mut previous, &response);
    }
    validator.stop().await;
}
