//! The committee's randomness: every live authority signs the randomness
//! round of each commit with its shares and carries the partials in one of
//! its next blocks; the rounds are placed at commits by the chain's
//! [`RandomnessTally`], and their signatures made with the dealt secret.
//!
//! An authority signs round `c` when commit `c` is decided, at round `r`,
//! and carries the partial in its block of round `r + 1`, or of `r + 2`
//! with a seeded 20% chance, as it carries checkpoint signatures. The
//! shares are dealt from the committee's keys
//! ([`CommitteeKeys::randomness_dealing`]): a trusted dealer standing in
//! for the DKG of a real committee. Since a threshold signature is unique,
//! the dealer's secret signs exactly what the committed partials
//! interpolate to, at a fraction of the cost.

use crate::checkpoints::{signature_delay, MAX_SIGNATURE_DELAY_ROUNDS};
use crate::CommitteeKeys;
use dagstream_types::randomness::{HashedRound, RandomnessDealing};
use dagstream_types::{
    AuthorityIndex, CommitIndex, CommittedSubDag, Committee, RandomnessOutput, RandomnessTally,
    Round, SystemMessage,
};
use serde::{Deserialize, Serialize};

/// The seeded stream of partials' delays.
const PARTIAL_PURPOSE: &str = "randomness partial";

/// What recovery needs to continue the randomness: persisted with each
/// round.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RandomnessState {
    pub tally: RandomnessTally,
    /// Commits some authority has not carried its partial for yet, each
    /// with the round that decided it.
    pub unsent: Vec<(Round, CommitIndex)>,
}

/// Schedules partials and generates rounds; `None` for a chain without
/// randomness.
pub(crate) struct Randomness {
    dealing: RandomnessDealing,
    tally: RandomnessTally,
    /// `unsent` with each round's message hashed once for all signers.
    unsent: Vec<(Round, HashedRound)>,
}

impl Randomness {
    pub fn new(committee: &Committee, keys: &CommitteeKeys) -> Option<Self> {
        let verifier = committee.randomness()?;
        Some(Randomness {
            dealing: keys.randomness_dealing(committee.total_stake(), verifier.threshold()),
            tally: RandomnessTally::default(),
            unsent: Vec::new(),
        })
    }

    /// Whether the dealing is the one the genesis holds the keys of.
    pub fn matches(&self, committee: &Committee) -> bool {
        committee.genesis().randomness.as_ref() == Some(self.dealing.keys())
    }

    pub fn resume(&mut self, committee: &Committee, state: RandomnessState) {
        self.tally = state.tally;
        self.unsent = state
            .unsent
            .into_iter()
            .map(|(round, index)| (round, HashedRound::new(committee.epoch(), index)))
            .collect();
    }

    pub fn state(&self) -> RandomnessState {
        RandomnessState {
            tally: self.tally.clone(),
            unsent: self.unsent.iter().map(|(r, h)| (*r, h.round())).collect(),
        }
    }

    /// The partials `author` carries in its block of `round`; `forged`:
    /// its shares' signatures on another round (a Byzantine authority).
    pub fn messages(
        &self,
        seed: u64,
        round: Round,
        author: AuthorityIndex,
        forged: bool,
        committee: &Committee,
    ) -> Vec<SystemMessage> {
        let Some(verifier) = committee.randomness() else {
            return Vec::new();
        };
        self.unsent
            .iter()
            .filter(|(decided, hashed)| {
                decided + signature_delay(seed, PARTIAL_PURPOSE, hashed.round(), author) == round
            })
            .map(|(_, hashed)| {
                let shares = verifier.shares_of(author);
                let shares = if forged {
                    let other = HashedRound::new(committee.epoch(), hashed.round() + (1 << 32));
                    self.dealing.sign_shares(&other, shares)
                } else {
                    self.dealing.sign_shares(hashed, shares)
                };
                SystemMessage::RandomnessPartial {
                    round: hashed.round(),
                    shares,
                }
            })
            .collect()
    }

    /// Places the commits decided at `round`, once its blocks are made:
    /// returns, for each commit that generated rounds, their signatures.
    pub fn on_round(
        &mut self,
        round: Round,
        commits: &[CommittedSubDag],
        committee: &Committee,
    ) -> Vec<(CommitIndex, Vec<RandomnessOutput>)> {
        self.unsent
            .retain(|(decided, _)| decided + MAX_SIGNATURE_DELAY_ROUNDS > round);
        let mut generated = Vec::new();
        for commit in commits {
            let rounds = self
                .tally
                .on_commit(commit.index(), &commit.blocks, committee);
            if !rounds.is_empty() {
                let outputs = rounds
                    .into_iter()
                    .map(|r| {
                        self.dealing
                            .sign_group(&HashedRound::new(committee.epoch(), r))
                    })
                    .collect();
                generated.push((commit.index(), outputs));
            }
            self.unsent
                .push((round, HashedRound::new(committee.epoch(), commit.index())));
        }
        generated
    }
}
