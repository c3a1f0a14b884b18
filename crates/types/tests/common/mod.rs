//! The committee, block and commit of the wire-format test vectors
//! (`docs/wire-format.md`), shared by the tests of this crate.
#![allow(dead_code)]

use dagstream_types::randomness::{HashedRound, RandomnessDealing};
use dagstream_types::*;
use ed25519_dalek::SigningKey;

pub const GENESIS_TIME_MS: u64 = 1_700_000_000_000;

/// Authority `i` signs with the key whose 32 bytes all equal `i + 1`.
pub fn key(i: u32) -> SigningKey {
    SigningKey::from_bytes(&[i as u8 + 1; 32])
}

pub fn genesis() -> Genesis {
    Genesis {
        epoch: 0,
        genesis_time_ms: GENESIS_TIME_MS,
        round_interval_ms: 100,
        gc_depth_rounds: 50,
        authorities: (0..4)
            .map(|i| Authority {
                index: i,
                stake: 1,
                public_key: PublicKey::from_signing_key(&key(i)),
            })
            .collect(),
        randomness: Some(dealing().keys().clone()),
    }
}

/// The vector committee's randomness shares: dealt from 32 bytes of 7,
/// 4 shares, threshold 3.
pub fn dealing() -> RandomnessDealing {
    RandomnessDealing::deal(&[7; 32], 4, 3)
}

/// The vector genesis with authorities of `stakes` (same keys) and no
/// randomness, whose keys are for four shares of stake 1.
pub fn genesis_with_stakes(stakes: &[Stake]) -> Genesis {
    Genesis {
        authorities: stakes
            .iter()
            .enumerate()
            .map(|(i, &stake)| Authority {
                index: i as u32,
                stake,
                public_key: PublicKey::from_signing_key(&key(i as u32)),
            })
            .collect(),
        randomness: None,
        ..genesis()
    }
}

pub fn committee() -> Committee {
    Committee::new(genesis()).unwrap()
}

/// The vector checkpoint summary: checkpoint 0 of one commit whose digest
/// is `BLAKE3("commit 1")`.
pub fn summary() -> CheckpointSummary {
    CheckpointSummary {
        epoch: 0,
        sequence: 0,
        first_commit: 1,
        last_commit: 1,
        content_digest: checkpoint::extend_contents(&Digest::ZERO, &Digest::of(b"commit 1")),
        previous_digest: Digest::ZERO,
        timestamp_ms: GENESIS_TIME_MS + 105,
        kind: CheckpointKind::Regular,
    }
}

/// The vector block: authority 2 at round 1 over all four genesis blocks,
/// with two transactions, one commit vote, its signature of the vector
/// summary and its randomness partial.
pub fn block(committee: &Committee) -> Block {
    Block {
        epoch: 0,
        round: 1,
        author: 2,
        timestamp_ms: GENESIS_TIME_MS + 105,
        ancestors: VerifiedBlock::genesis(committee)
            .iter()
            .map(|b| b.reference())
            .collect(),
        transactions: vec![
            Transaction(b"hello".to_vec().into()),
            Transaction(b"dagstream".to_vec().into()),
        ],
        commit_votes: vec![CommitRef {
            index: 7,
            digest: Digest::of(b"vote"),
        }],
        system_messages: vec![summary().signature_message(&key(2)), partial()],
    }
}

/// Authority 2's partial signature on randomness round 1 of epoch 0: its
/// one share's (share index 2).
pub fn partial() -> SystemMessage {
    SystemMessage::RandomnessPartial {
        round: 1,
        shares: dealing().sign_shares(&HashedRound::new(0, 1), 2..3),
    }
}

/// The group's signature on randomness round 1 of epoch 0.
pub fn randomness() -> RandomnessOutput {
    dealing().sign_group(&HashedRound::new(0, 1))
}

/// The vector commit: commit 1, whose sub-DAG is the vector block alone.
pub fn commit(block: &VerifiedBlock) -> Commit {
    Commit {
        index: 1,
        previous_digest: Digest::ZERO,
        timestamp_ms: block.timestamp_ms(),
        leader: block.reference(),
        blocks: vec![block.reference()],
    }
}

/// The vector committee's successor: the same authorities, each signing
/// with the key whose 32 bytes all equal `i + 51`, stakes 2, 1, 1, 1, no
/// randomness, its DAG starting after round 120.
pub fn next_epoch() -> epoch::NextEpoch {
    let genesis = genesis();
    epoch::NextEpoch {
        genesis_round: 120,
        committee: Genesis {
            epoch: 1,
            genesis_time_ms: GENESIS_TIME_MS + 120 * genesis.round_interval_ms,
            authorities: (0..4)
                .map(|i| Authority {
                    index: i,
                    stake: if i == 0 { 2 } else { 1 },
                    public_key: PublicKey::from_signing_key(&SigningKey::from_bytes(
                        &[i as u8 + 51; 32],
                    )),
                })
                .collect(),
            randomness: None,
            ..genesis
        },
    }
}

/// The vector hand-off: the end-of-epoch checkpoint after the vector
/// summary, handing over [`next_epoch`], signed by authorities 0, 1 and 3.
pub fn epoch_change() -> epoch::EpochChange {
    let next = next_epoch();
    let summary = CheckpointSummary::end_of_epoch(&summary(), next.digest());
    epoch::EpochChange {
        certificate: CertifiedCheckpoint {
            summary,
            signatures: [0, 1, 3].map(|i| (i, summary.sign(&key(i)))).to_vec(),
        },
        next,
    }
}
