//! A validator on a loopback port, driven round by round by the test, and
//! stream clients, from `dagstream-test-utils`.
#![allow(dead_code)]

use dagstream_publisher::PublisherConfig;
use dagstream_sim::SimConfig;
use dagstream_store::{MemStore, Store};
use dagstream_test_utils::{TestChain, TestCommittee};
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
