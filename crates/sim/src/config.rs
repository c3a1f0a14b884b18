//! Profiles and the simulator's configuration.

use crate::{Result, SimError};
use dagstream_types::{AuthorityIndex, BlockLimits, Committee, Round, Stake};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A named committee size, round interval and load.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// 4 authorities, 100 ms rounds, 200 TPS of 256 B: runs anywhere.
    #[default]
    Small,
    /// 100 authorities, 75 ms rounds, 5,000 TPS of 512 B: a mainnet-sized
    /// committee at a realistic load.
    Mainnet,
    /// 100 authorities, 75 ms rounds, 100,000 TPS of 512 B: a load test.
    Stress,
}

impl Profile {
    pub fn authorities(self) -> usize {
        match self {
            Profile::Small => 4,
            Profile::Mainnet | Profile::Stress => 100,
        }
    }

    pub fn round_interval_ms(self) -> u64 {
        match self {
            Profile::Small => 100,
            Profile::Mainnet | Profile::Stress => 75,
        }
    }

    pub fn tps(self) -> u64 {
        match self {
            Profile::Small => 200,
            Profile::Mainnet => 5_000,
            Profile::Stress => 100_000,
        }
    }

    pub fn tx_size_bytes(self) -> usize {
        match self {
            Profile::Small => 256,
            Profile::Mainnet | Profile::Stress => 512,
        }
    }

    /// The simulator config of this profile's load, with `seed`.
    pub fn sim_config(self, seed: u64) -> SimConfig {
        SimConfig {
            seed,
            tps: self.tps(),
            tx_size_bytes: self.tx_size_bytes(),
            ..SimConfig::default()
        }
    }
}

impl FromStr for Profile {
    type Err = SimError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "small" => Ok(Profile::Small),
            "mainnet" => Ok(Profile::Mainnet),
            "stress" => Ok(Profile::Stress),
            other => Err(SimError::InvalidConfig {
                reason: format!("unknown profile {other:?}: use small, mainnet or stress"),
            }),
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Profile::Small => "small",
            Profile::Mainnet => "mainnet",
            Profile::Stress => "stress",
        })
    }
}

/// How the simulated committee behaves. Together with the genesis, this
/// determines the chain byte for byte.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimConfig {
    /// Seed of every random choice: DAG shape, timestamp jitter, payloads.
    pub seed: u64,
    /// Transactions per second, spread evenly over the live authorities.
    pub tps: u64,
    /// Size of each transaction.
    pub tx_size_bytes: usize,
    /// Authorities that never produce a block.
    pub crashed: Vec<AuthorityIndex>,
    /// Authorities whose blocks the others reference one round late.
    pub slow: Vec<AuthorityIndex>,
    /// Byzantine authorities whose randomness partials are forged: their
    /// shares' signatures on another round, in validly signed blocks.
    pub forged_partials: Vec<AuthorityIndex>,
    /// Chance, in percent, that a block references each block of the
    /// previous round beyond the quorum it must reference. At 80, measured
    /// over 300 rounds, about 2% of leaders need the indirect rule in 4- and
    /// 10-authority committees and none in a 100-authority one: most are
    /// decided directly, as on a real network. Lower values make undecided
    /// leaders common, for tests of the indirect rule.
    pub extra_parent_percent: u64,
    /// Largest timestamp jitter added to the round's scheduled time. 10 ms is
    /// the spread of clocks and scheduling on one datacenter network.
    pub max_timestamp_jitter_ms: u64,
    /// Rounds after which the committee ends each epoch and hands the
    /// chain to the next ([`epochs`](crate::epochs)); 0: never. Left out
    /// of the config's JSON when 0, so that a chain without epochs keeps
    /// the identity it had before epochs existed.
    #[serde(skip_serializing_if = "is_zero")]
    pub epoch_rounds: Round,
}

fn is_zero(value: &Round) -> bool {
    *value == 0
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 0,
            tps: Profile::Small.tps(),
            tx_size_bytes: Profile::Small.tx_size_bytes(),
            crashed: vec![],
            slow: vec![],
            forged_partials: vec![],
            extra_parent_percent: 80,
            max_timestamp_jitter_ms: 10,
            epoch_rounds: 0,
        }
    }
}

/// Bytes of a block besides its transactions, at most: header, a full set of
/// ancestors for a 1,000-authority committee and the commit votes of a few
/// rounds. Used only to refuse loads whose blocks could not be sent.
const BLOCK_OVERHEAD_BYTES: u64 = 64 * 1024;

impl SimConfig {
    /// Checks the config against the committee and the block limits.
    pub fn validate(&self, committee: &Committee, limits: &BlockLimits) -> Result<()> {
        for (option, list) in [
            ("crashed", &self.crashed),
            ("slow", &self.slow),
            ("forged_partials", &self.forged_partials),
        ] {
            for &authority in list {
                if !committee.is_valid_index(authority) {
                    return Err(SimError::UnknownAuthority {
                        option,
                        authority,
                        committee_size: committee.size(),
                    });
                }
            }
        }
        if self.extra_parent_percent > 100 {
            return Err(SimError::InvalidConfig {
                reason: format!(
                    "extra_parent_percent is {}, over 100",
                    self.extra_parent_percent
                ),
            });
        }
        let on_time: Stake = committee
            .indexes()
            .filter(|a| !self.crashed.contains(a) && !self.slow.contains(a))
            .map(|a| committee.stake(a))
            .sum();
        if !committee.reached_quorum(on_time) {
            return Err(SimError::NoLiveQuorum {
                stake: on_time,
                quorum: committee.quorum_threshold(),
            });
        }
        let per_block = self.max_transactions_per_block(committee);
        if per_block > limits.max_transactions_per_block as u64 {
            return Err(SimError::TooManyTransactions {
                tps: self.tps,
                per_block,
                max: limits.max_transactions_per_block,
            });
        }
        // Each transaction costs its bytes plus a length prefix of at most 5.
        let block_bytes = per_block * (self.tx_size_bytes as u64 + 5) + BLOCK_OVERHEAD_BYTES;
        if block_bytes > limits.max_block_bytes as u64 {
            return Err(SimError::BlocksTooLarge {
                tps: self.tps,
                tx_size_bytes: self.tx_size_bytes,
                block_bytes,
                max_block_bytes: limits.max_block_bytes,
            });
        }
        Ok(())
    }

    /// Number of authorities that produce blocks.
    pub(crate) fn live_count(&self, committee: &Committee) -> u64 {
        committee
            .indexes()
            .filter(|a| !self.crashed.contains(a))
            .count() as u64
    }

    /// Expected transactions per block, in thousandths.
    pub(crate) fn milli_transactions_per_block(&self, committee: &Committee) -> u64 {
        let per_round_milli = self.tps.saturating_mul(committee.round_interval_ms());
        per_round_milli / self.live_count(committee).max(1)
    }

    fn max_transactions_per_block(&self, committee: &Committee) -> u64 {
        self.milli_transactions_per_block(committee).div_ceil(1000)
    }
}
