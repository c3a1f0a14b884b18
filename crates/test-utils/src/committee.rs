//! [`TestCommittee`]: a committee and its keys, from a size and a seed.

use dagstream_sim::{generate, CommitteeKeys, GenesisParams, SimConfig, Simulator};
use dagstream_types::{BlockLimits, Committee};
use std::sync::Arc;

/// Round interval of the test genesis: the small profile's 100 ms.
pub const ROUND_INTERVAL_MS: u64 = 100;

/// GC depth of the test genesis: the default, written out so that a change
/// of the default does not change every test's chain.
const GC_DEPTH_ROUNDS: u64 = 50;

/// A committee of equal-stake authorities and their private keys.
#[derive(Clone)]
pub struct TestCommittee {
    pub committee: Arc<Committee>,
    pub keys: CommitteeKeys,
}

impl TestCommittee {
    /// `authorities` authorities with keys derived from `seed`, genesis at
    /// Unix time 0 (so a clock at `r * ROUND_INTERVAL_MS` has round `r`
    /// due), [`ROUND_INTERVAL_MS`] rounds and a GC depth of 50 rounds. The
    /// same arguments give the same committee.
    pub fn new(authorities: usize, seed: u64) -> Self {
        Self::with_params(&Self::params(authorities, seed))
    }

    /// The genesis parameters of [`TestCommittee::new`], for a test that
    /// varies one of them.
    pub fn params(authorities: usize, seed: u64) -> GenesisParams {
        GenesisParams {
            authorities,
            round_interval_ms: ROUND_INTERVAL_MS,
            genesis_time_ms: 0,
            gc_depth_rounds: GC_DEPTH_ROUNDS,
            seed,
        }
    }

    pub fn with_params(params: &GenesisParams) -> Self {
        let (genesis, keys) = generate(params);
        let committee = Committee::new(genesis).expect("a generated genesis is valid");
        TestCommittee {
            committee: Arc::new(committee),
            keys,
        }
    }

    /// A simulator of this committee at genesis, with the default block
    /// limits.
    pub fn simulator(&self, config: SimConfig) -> Simulator {
        Simulator::new(
            self.committee.clone(),
            self.keys.clone(),
            config,
            &BlockLimits::default(),
        )
        .expect("the simulator config fits the committee")
    }
}
