//! The committee's epochs: after `SimConfig::epoch_rounds` rounds every
//! live authority ends its epoch, and the committee hands the chain to the
//! next one ([`dagstream_types::epoch`]).
//!
//! From round `genesis round + epoch_rounds` on, every block carries
//! [`SystemMessage::EndOfPublish`](dagstream_types::SystemMessage). The
//! commit that brings 2f+1 of them into the chain, decided at round `d`, is
//! the epoch's last; its checkpoint closes at once and the final checkpoint
//! follows, committing to the next committee ([`next_epoch`]). Authorities
//! sign both as they sign every checkpoint, in their blocks of rounds
//! `d + 1` and `d + 2`, and make no commit after the last. Round `d + 2` is
//! the epoch's last round and the next committee's genesis round: the
//! simulator writes the certified hand-off
//! ([`EpochChange`](dagstream_types::EpochChange)) with it and
//! makes round `d + 3` with the next committee.

use crate::checkpoints::MAX_SIGNATURE_DELAY_ROUNDS;
use crate::rng::SeededStream;
use crate::CommitteeKeys;
use dagstream_types::epoch::{EndOfPublishTally, NextEpoch};
use dagstream_types::{
    Authority, AuthorityIndex, CheckpointSummary, CommitIndex, Committee, Genesis, PublicKey,
    Round, Stake,
};
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

/// The seeded stream of each hand-off's choices.
const EPOCH_PURPOSE: &str = "epoch change";

/// What recovery needs to continue the epoch: persisted with each round
/// of a chain whose epochs end.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochState {
    pub tally: EndOfPublishTally,
    /// Set from the round that decided the epoch's last commit until the
    /// switch.
    pub ending: Option<Ending>,
}

/// An epoch whose last commit is decided: the hand-off under way.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ending {
    /// The epoch's last commit.
    pub last_commit: CommitIndex,
    /// The epoch's final checkpoint, being signed.
    pub summary: CheckpointSummary,
    /// What it hands over; its genesis round is the epoch's last round.
    pub next: NextEpoch,
}

/// The round after which the epoch whose last commit is decided at
/// `decided` ends: every authority has carried its signatures of the final
/// checkpoint by then.
pub fn last_round(decided: Round) -> Round {
    decided + MAX_SIGNATURE_DELAY_ROUNDS
}

/// The committee after `committee`, whose private keys are `keys`, and its
/// keys: deterministic in the keys, `seed` and the epoch, so that any
/// process makes the same chain.
/// - The authority at a seeded index leaves; the others move down one
///   index, and a newcomer joins as the last.
/// - Every authority signs with a new key: those that stay rotate theirs
///   (derived from their own previous key), the newcomer's is derived from
///   the whole committee's.
/// - About one in ten (at least one) of the authorities that are neither
///   crashed nor slow (`laggards`, by index) gets stake 2, the rest 1.
/// - The randomness shares are dealt again.
///
/// The next committee's DAG starts after `genesis_round`, at the time that
/// round is scheduled.
pub fn next_epoch(
    committee: &Committee,
    keys: &CommitteeKeys,
    seed: u64,
    laggards: &[AuthorityIndex],
    genesis_round: Round,
) -> (NextEpoch, CommitteeKeys) {
    let epoch = committee.epoch() + 1;
    let mut choices = SeededStream::new(seed, EPOCH_PURPOSE, epoch, 0);
    let leaving = choices.below(keys.keys().len() as u64) as usize;
    let derive = |context: &str, secret: &[u8]| {
        let mut material = secret.to_vec();
        material.extend_from_slice(&epoch.to_le_bytes());
        SigningKey::from_bytes(&blake3::derive_key(context, &material))
    };
    let mut next_keys: Vec<SigningKey> = keys
        .keys()
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != leaving)
        .map(|(_, key)| derive("dagstream simulated key rotation v1", &key.to_bytes()))
        .collect();
    let everyone: Vec<u8> = keys.keys().iter().flat_map(|k| k.to_bytes()).collect();
    next_keys.push(derive("dagstream simulated newcomer key v1", &everyone));
    let size = next_keys.len() as AuthorityIndex;
    let mut heavier: Vec<AuthorityIndex> = (0..size).filter(|i| !laggards.contains(i)).collect();
    choices.shuffle(&mut heavier);
    heavier.truncate((heavier.len() / 10).max(1));
    let authorities = next_keys
        .iter()
        .enumerate()
        .map(|(i, key)| {
            let index = i as AuthorityIndex;
            Authority {
                index,
                stake: if heavier.contains(&index) { 2 } else { 1 },
                public_key: PublicKey::from_signing_key(key),
            }
        })
        .collect();
    let genesis = committee.genesis();
    let next_keys = CommitteeKeys::new(next_keys);
    let mut committee_genesis = Genesis {
        epoch,
        genesis_time_ms: committee.round_time_ms(genesis_round),
        round_interval_ms: genesis.round_interval_ms,
        gc_depth_rounds: genesis.gc_depth_rounds,
        authorities,
        randomness: None,
    };
    if genesis.randomness.is_some() {
        let total: Stake = committee_genesis.authorities.iter().map(|a| a.stake).sum();
        let dealing = next_keys.randomness_dealing(total, 2 * total / 3 + 1);
        committee_genesis.randomness = Some(dealing.keys().clone());
    }
    (
        NextEpoch {
            genesis_round,
            committee: committee_genesis,
        },
        next_keys,
    )
}
