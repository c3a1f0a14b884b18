//! A validator on a loopback port, driven round by round by the test, and
//! stream clients, from `dagstream-test-utils`.
#![allow(dead_code)]

use dagstream_proto::v1::CommitStreamResponse;
use dagstream_publisher::PublisherConfig;
use dagstream_sim::SimConfig;
use dagstream_store::{MemStore, Store};
use dagstream_test_utils::{TestChain, TestCommittee};
use dagstream_types::{
    BlockLimits, BlockRef, Commit, CommitRef, Committee, Digest, Stake, TrustedCommit,
    VerifiedBlock,
};
use std::collections::HashSet;
use std::sync::Arc;

// Each test binary uses a part of what is shared here.
#[allow(unused_imports)]
pub use dagstream_test_utils::client::{patiently, BlockStream, CommitStream};
#[allow(unused_imports)]
pub use dagstream_test_utils::{TestValidator, PATIENCE};

/// A config with short heartbeats, so that tests see them quickly.
pub fn test_config() -> PublisherConfig {
    PublisherConfig {
        heartbeat_interval_ms: 50,
        ..PublisherConfig::default()
    }
}

/// The committee of these tests: 4 authorities, seed 5.
const AUTHORITIES: usize = 4;
const COMMITTEE_SEED: u64 = 5;

/// A 4-authority committee with `history` rounds produced before the
/// publisher starts.
pub async fn start_validator(history: usize, config: PublisherConfig) -> TestValidator {
    start_validator_with(AUTHORITIES, SimConfig::default(), history, config).await
}

pub async fn start_validator_with(
    authorities: usize,
    sim_config: SimConfig,
    history: usize,
    config: PublisherConfig,
) -> TestValidator {
    start_validator_on(
        Arc::new(MemStore::new()),
        authorities,
        sim_config,
        history,
        config,
    )
    .await
}

/// A validator on `store` with `history` rounds, its publisher started as
/// on a restarted node: over a new source, warmed from the store.
pub async fn start_validator_on(
    store: Arc<dyn Store>,
    authorities: usize,
    sim_config: SimConfig,
    history: usize,
    config: PublisherConfig,
) -> TestValidator {
    let committee = TestCommittee::new(authorities, COMMITTEE_SEED);
    let mut chain = TestChain::new(&committee, sim_config, store);
    chain.produce(history);
    chain.restart();
    TestValidator::start(chain, config).await
}

/// Checks a batch as an observer would: each commit's digest recomputed from
/// its blocks and the chain so far, and the certifiers' votes for the last
/// commit carrying a quorum. Returns the commits' refs.
pub fn verify_batch(
    committee: &Committee,
    previous: &mut Option<TrustedCommit>,
    response: &CommitStreamResponse,
) -> Vec<CommitRef> {
    let limits = BlockLimits::default();
    let mut refs = Vec::new();
    for data in &response.commits {
        let blocks: Vec<BlockRef> = data
            .blocks
            .iter()
            .map(|b| {
                VerifiedBlock::verify(b.clone(), committee, &limits)
                    .unwrap()
                    .reference()
            })
            .collect();
        let leader = data.leader.as_ref().unwrap();
        let leader = BlockRef {
            round: leader.round,
            author: leader.authority_index,
            digest: Digest(leader.digest.as_ref().try_into().unwrap()),
        };
        assert_eq!(blocks.last(), Some(&leader), "leader last");
        let commit = TrustedCommit::new(Commit {
            index: data.commit_index,
            previous_digest: previous.as_ref().map_or(Digest::ZERO, |c| c.digest()),
            timestamp_ms: data.timestamp_ms,
            leader,
            blocks,
        });
        assert_eq!(
            commit.index(),
            previous.as_ref().map_or(1, |c| c.index() + 1)
        );
        refs.push(commit.reference());
        *previous = Some(commit);
    }
    if let Some(last) = refs.last() {
        let mut voters = HashSet::new();
        let mut stake: Stake = 0;
        for bytes in &response.certifier_blocks {
            let block = VerifiedBlock::verify(bytes.clone(), committee, &limits).unwrap();
            assert!(
                block.commit_votes().contains(last),
                "certifier does not vote"
            );
            if voters.insert(block.author()) {
                stake += committee.stake(block.author());
            }
        }
        assert!(committee.reached_quorum(stake), "certifiers hold {stake}");
    } else {
        assert!(response.certifier_blocks.is_empty());
    }
    refs
}
