//! The committee: who the authorities are, their stake, and the chain's
//! parameters, as written in `genesis.json`.

use crate::error::bcs_encode;
use crate::randomness::{RandomnessKeys, RandomnessVerifier};
use crate::{AuthorityIndex, Digest, Epoch, PublicKey, Result, Round, Stake, TypesError};
use ed25519_dalek::VerifyingKey;
use ed25519_zebra::VerificationKey;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;

/// Default depth below the last committed leader under which blocks are
/// garbage: 50 rounds is several seconds of consensus at any profile's round
/// interval, far more than a live block needs to be referenced, while keeping
/// the DAG in memory to a few thousand blocks per authority at most.
pub const DEFAULT_GC_DEPTH_ROUNDS: Round = 50;

/// One authority of the committee.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Authority {
    /// Position in the committee; must equal the position in `authorities`.
    pub index: AuthorityIndex,
    /// Voting power. Must be positive.
    pub stake: Stake,
    /// Ed25519 key that signs this authority's blocks.
    pub public_key: PublicKey,
}

/// The genesis of a chain, exactly as in `genesis.json`.
///
/// Its BCS encoding, in field order, is hashed into the committee digest that
/// seeds the leader schedule and identifies the chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    pub epoch: Epoch,
    /// Wall-clock time of round 0, in Unix milliseconds.
    pub genesis_time_ms: u64,
    /// Round `r` is scheduled at `genesis_time_ms + r * round_interval_ms`.
    pub round_interval_ms: u64,
    /// Commit rule parameter: blocks at or below the last committed leader's
    /// round minus `gc_depth_rounds` are never committed. Part of the chain
    /// because every node must linearize identically.
    #[serde(default = "default_gc_depth")]
    pub gc_depth_rounds: Round,
    pub authorities: Vec<Authority>,
    /// The threshold keys of verifiable randomness; `null`: the chain has
    /// none.
    #[serde(default)]
    pub randomness: Option<RandomnessKeys>,
}

fn default_gc_depth() -> Round {
    DEFAULT_GC_DEPTH_ROUNDS
}

impl Genesis {
    pub fn from_json(text: &str) -> Result<Genesis> {
        serde_json::from_str(text).map_err(|err| TypesError::InvalidCommittee {
            reason: format!("genesis.json: {err}"),
        })
    }

    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).expect("genesis always serializes to JSON")
    }

    /// Reads `genesis.json`; `path` may also be a directory that holds one.
    pub fn load(path: &Path) -> Result<Genesis> {
        let file = if path.is_dir() {
            path.join("genesis.json")
        } else {
            path.to_path_buf()
        };
        let text = std::fs::read_to_string(&file).map_err(|err| TypesError::GenesisFile {
            path: file.display().to_string(),
            reason: err.to_string(),
        })?;
        Genesis::from_json(&text)
    }
}

/// A validated committee, with the values every check needs precomputed.
#[derive(Clone, Debug)]
pub struct Committee {
    genesis: Genesis,
    /// The round of this committee's genesis blocks: 0 for the chain's
    /// first committee, and for a later one the round its epoch's DAG
    /// starts after (rounds continue across epochs, see
    /// the `epoch` module).
    genesis_round: Round,
    verifying_keys: Vec<VerificationKey>,
    total_stake: Stake,
    quorum_threshold: Stake,
    digest: Digest,
    randomness: Option<Arc<RandomnessVerifier>>,
}

impl Committee {
    /// Validates a genesis: indexes in order, positive stake, valid and
    /// distinct keys, a positive round interval.
    pub fn new(genesis: Genesis) -> Result<Committee> {
        Self::starting_at(genesis, 0)
    }

    /// Validates the committee of a later epoch, whose genesis blocks are
    /// at `genesis_round`: what `NextEpoch`
    /// hands over.
    pub fn starting_at(genesis: Genesis, genesis_round: Round) -> Result<Committee> {
        let invalid = |reason: String| TypesError::InvalidCommittee { reason };
        if genesis.authorities.is_empty() {
            return Err(invalid("no authorities".into()));
        }
        if genesis.authorities.len() > AuthorityIndex::MAX as usize {
            return Err(invalid(format!(
                "{} authorities",
                genesis.authorities.len()
            )));
        }
        if genesis.round_interval_ms == 0 {
            return Err(invalid("round_interval_ms is 0".into()));
        }
        let mut total_stake: Stake = 0;
        let mut verifying_keys = Vec::with_capacity(genesis.authorities.len());
        for (position, authority) in genesis.authorities.iter().enumerate() {
            if authority.index as usize != position {
                return Err(invalid(format!(
                    "authority at position {position} has index {}",
                    authority.index
                )));
            }
            if authority.stake == 0 {
                return Err(invalid(format!("authority {position} has zero stake")));
            }
            total_stake = total_stake
                .checked_add(authority.stake)
                .ok_or_else(|| invalid("total stake overflows u64".into()))?;
            let bad_key = || {
                invalid(format!(
                    "authority {position} has an invalid Ed25519 public key"
                ))
            };
            // A small-order key would accept signatures its owner did not
            // make (signature checks follow ZIP-215, which allows them).
            let parsed =
                VerifyingKey::from_bytes(&authority.public_key.0).map_err(|_| bad_key())?;
            if parsed.is_weak() {
                return Err(invalid(format!(
                    "authority {position} has a small-order Ed25519 public key"
                )));
            }
            let key = VerificationKey::try_from(authority.public_key.0).map_err(|_| bad_key())?;
            if verifying_keys.contains(&key) {
                return Err(invalid(format!(
                    "authority {position} repeats another authority's public key"
                )));
            }
            verifying_keys.push(key);
        }
        let quorum_threshold = (2 * total_stake as u128 / 3 + 1) as Stake;
        let digest = Digest::of(&bcs_encode(&genesis));
        let randomness = genesis
            .randomness
            .as_ref()
            .map(|keys| {
                let stakes = genesis.authorities.iter().map(|a| a.stake);
                RandomnessVerifier::new(keys, genesis.epoch, stakes, quorum_threshold).map(Arc::new)
            })
            .transpose()?;
        Ok(Committee {
            genesis,
            genesis_round,
            verifying_keys,
            total_stake,
            quorum_threshold,
            digest,
            randomness,
        })
    }

    pub fn genesis(&self) -> &Genesis {
        &self.genesis
    }

    pub fn epoch(&self) -> Epoch {
        self.genesis.epoch
    }

    /// The round of this committee's genesis blocks; its authorities'
    /// first blocks are one round later.
    pub fn genesis_round(&self) -> Round {
        self.genesis_round
    }

    pub fn size(&self) -> usize {
        self.genesis.authorities.len()
    }

    pub fn authorities(&self) -> impl Iterator<Item = &Authority> {
        self.genesis.authorities.iter()
    }

    /// Indexes of all authorities, in committee order.
    pub fn indexes(&self) -> impl Iterator<Item = AuthorityIndex> {
        0..self.size() as AuthorityIndex
    }

    pub fn is_valid_index(&self, index: AuthorityIndex) -> bool {
        (index as usize) < self.size()
    }

    /// Stake of `index`; 0 for an index outside the committee.
    pub fn stake(&self, index: AuthorityIndex) -> Stake {
        self.genesis
            .authorities
            .get(index as usize)
            .map_or(0, |a| a.stake)
    }

    pub fn total_stake(&self) -> Stake {
        self.total_stake
    }

    /// The smallest stake strictly greater than 2/3 of the total (2f+1).
    pub fn quorum_threshold(&self) -> Stake {
        self.quorum_threshold
    }

    pub fn reached_quorum(&self, stake: Stake) -> bool {
        stake >= self.quorum_threshold
    }

    pub(crate) fn verifying_key(&self, index: AuthorityIndex) -> Option<&VerificationKey> {
        self.verifying_keys.get(index as usize)
    }

    /// The randomness keys, decoded; `None` if the chain has none.
    pub fn randomness(&self) -> Option<&RandomnessVerifier> {
        self.randomness.as_deref()
    }

    /// BLAKE3 of the genesis' BCS encoding: identifies the chain.
    pub fn digest(&self) -> Digest {
        self.digest
    }

    pub fn round_interval_ms(&self) -> u64 {
        self.genesis.round_interval_ms
    }

    pub fn gc_depth_rounds(&self) -> Round {
        self.genesis.gc_depth_rounds
    }

    /// When round `round` is scheduled, in Unix milliseconds (saturating):
    /// the genesis round at `genesis_time_ms`, then one round interval
    /// apart.
    pub fn round_time_ms(&self, round: Round) -> u64 {
        round
            .saturating_sub(self.genesis_round)
            .saturating_mul(self.genesis.round_interval_ms)
            .saturating_add(self.genesis.genesis_time_ms)
    }
}
