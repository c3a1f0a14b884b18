//! Both streams across epoch changes, over real gRPC on loopback: each
//! hand-off arrives before anything of the epoch it leads to, every
//! response is of one epoch, and a subscriber that trusts only the genesis
//! committee verifies everything by folding the hand-offs forward.

mod common;

use common::{start_validator_with, test_config, verify_batch, BlockStream, CommitStream};
use dagstream_publisher::ConsensusSource;
use dagstream_sim::{Profile, SimConfig};
use dagstream_types::{
    BlockLimits, BlockRef, CommitRef, Committee, EpochChange, TrustedCommit, VerifiedBlock,
};
use std::sync::Arc;
use tonic::Code;

fn epochs_every(rounds: u64) -> SimConfig {
    SimConfig {
        epoch_rounds: rounds,
        ..Profile::Small.sim_config(5)
    }
}

/// Verifies a hand-off with `committee` (the signatures of 2f+1 of it over
/// an end-of-epoch checkpoint at `last_commit`) and returns the next one.
fn hand_over(committee: &Committee, bytes: &[u8], last_commit: u64) -> Arc<Committee> {
    let change = EpochChange::decode(bytes).unwrap();
    assert_eq!(change.epoch(), committee.epoch());
    assert_eq!(change.certificate.summary.last_commit, last_commit);
    change.certificate.verify(committee).unwrap();
    Arc::new(change.next.committee().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_commit_stream_hands_over_before_each_epochs_first_commit() {
    let validator = start_validator_with(4, epochs_every(10), 90, test_config()).await;
    validator.wait_certified().await;
    let expected: Vec<CommitRef> = validator.chain.commit_refs();
    let certified = validator.chain.certified();
    let mut stream = CommitStream::open(validator.channel().await).await.unwrap();
    stream.start(0, 0).await;

    let mut committee = validator.chain.committee().clone();
    let mut previous: Option<TrustedCommit> = None;
    let mut received = Vec::new();
    let mut hand_offs = 0;
    while received
        .last()
        .is_none_or(|r: &CommitRef| r.index < certified)
    {
        let response = stream.next().await.unwrap();
        if let Some(first) = response.commits.first() {
            let last = previous.as_ref().map_or(0, |c| c.index());
            assert_eq!(first.commit_index, last + 1);
            assert!(response.epoch_changes.len() <= 1);
            for bytes in &response.epoch_changes {
                committee = hand_over(&committee, bytes, last);
                hand_offs += 1;
            }
        } else {
            assert!(
                response.epoch_changes.is_empty(),
                "a heartbeat hands nothing over"
            );
        }
        // Every block and certifier of the batch verifies with the
        // committee it trusts now: the batch is of one epoch.
        received.extend(verify_batch(&committee, &mut previous, &response));
    }
    assert_eq!(received, expected[..received.len()]);
    let epoch = validator.chain.source().epochs().current().epoch();
    assert!(epoch >= 4, "{epoch} epochs");
    assert!(
        hand_offs >= epoch - 1,
        "{hand_offs} hand-offs for epoch {epoch}"
    );

    // Restarting right at an epoch's last commit: the first response hands
    // over, then the next epoch's commits.
    let epochs = validator.chain.source().epochs();
    let hand_off = epochs.hand_off(1).unwrap();
    let mut restarted = CommitStream::open(validator.channel().await).await.unwrap();
    restarted.start(hand_off.last_commit, 0).await;
    let response = restarted.next().await.unwrap();
    assert_eq!(response.epoch_changes, vec![hand_off.bytes.clone()]);
    assert_eq!(
        response.commits.first().map(|c| c.commit_index),
        Some(hand_off.last_commit + 1)
    );
    let next = hand_over(
        epochs.committee(1).unwrap(),
        &hand_off.bytes,
        hand_off.last_commit,
    );
    assert_eq!(next.epoch(), 2);
    let mut previous = Some(validator.chain.commits()[hand_off.last_commit as usize - 1].clone());
    verify_batch(&next, &mut previous, &response);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_block_stream_hands_over_before_each_epochs_first_block() {
    let validator = start_validator_with(4, epochs_every(10), 60, test_config()).await;
    let expected: Vec<BlockRef> = validator
        .chain
        .blocks()
        .iter()
        .map(|b| b.reference())
        .collect();
    let mut stream = BlockStream::open(validator.channel().await).await.unwrap();
    // A subscriber of epoch 0 that has nothing.
    stream.start_in(Some(0), vec![0; 4], 0).await;

    let limits = BlockLimits::default();
    let mut committee = validator.chain.committee().clone();
    let mut received: Vec<BlockRef> = Vec::new();
    while received.len() < expected.len() {
        let response = stream.next().await.unwrap();
        if response.blocks.is_empty() {
            assert!(response.epoch_changes.is_empty());
            continue;
        }
        for bytes in &response.epoch_changes {
            let change = EpochChange::decode(bytes).unwrap();
            let last_commit = change.certificate.summary.last_commit;
            committee = hand_over(&committee, bytes, last_commit);
            // The next committee's blocks start after its genesis round.
            let last = received.last().unwrap();
            assert!(last.round <= committee.genesis_round());
        }
        // One epoch per response, each block verified by its committee.
        for bytes in &response.blocks {
            let block = VerifiedBlock::verify(bytes.clone(), &committee, &limits).unwrap();
            received.push(block.reference());
        }
    }
    assert_eq!(received, expected);
    assert!(committee.epoch() >= 3, "epoch {}", committee.epoch());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_stream_start_is_sized_by_the_epoch_it_names() {
    let validator = start_validator_with(4, epochs_every(10), 40, test_config()).await;
    let current = validator.chain.source().epochs().current().clone();
    assert!(current.epoch() >= 2);

    // Without an epoch, as a client of the design's proto: the current
    // epoch, and no hand-off.
    let mut stream = BlockStream::open(validator.channel().await).await.unwrap();
    stream.start(vec![0; current.size()], 0).await;
    let response = stream.next().await.unwrap();
    assert!(response.epoch_changes.is_empty());
    for bytes in &response.blocks {
        let block = VerifiedBlock::decode_trusted(bytes.clone()).unwrap();
        assert_eq!(block.epoch(), current.epoch());
    }

    // An epoch the publisher has not reached.
    let mut stream = BlockStream::open(validator.channel().await).await.unwrap();
    stream
        .start_in(Some(current.epoch() + 1), vec![0; 4], 0)
        .await;
    let status = stream.next().await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("epoch"), "{}", status.message());

    // A vector of another size than the named epoch's committee.
    let mut stream = BlockStream::open(validator.channel().await).await.unwrap();
    stream.start_in(Some(0), vec![0; 5], 0).await;
    let status = stream.next().await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("committee of epoch 0 has 4"),
        "{}",
        status.message()
    );
}
