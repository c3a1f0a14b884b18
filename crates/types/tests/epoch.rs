//! Epoch change: the hand-off proof and each way a forged one is refused,
//! the end-of-publish rule, and the checkpoints across the boundary.

mod common;

use dagstream_types::epoch::{EndOfPublishTally, EpochChange, NextEpoch};
use dagstream_types::*;
use ed25519_dalek::SigningKey;

/// Keys of the next committee: 32 bytes all equal to `50 + i`.
fn next_key(i: u32) -> SigningKey {
    SigningKey::from_bytes(&[50 + i as u8; 32])
}

/// The vector committee's successor: five authorities with new keys and
/// stakes 1, 2, 1, 2, 1, starting after round 120.
fn next_epoch() -> NextEpoch {
    let genesis = common::genesis();
    NextEpoch {
        genesis_round: 120,
        committee: Genesis {
            epoch: 1,
            genesis_time_ms: genesis.genesis_time_ms + 120 * genesis.round_interval_ms,
            authorities: [1, 2, 1, 2, 1]
                .iter()
                .enumerate()
                .map(|(i, &stake)| Authority {
                    index: i as u32,
                    stake,
                    public_key: PublicKey::from_signing_key(&next_key(i as u32)),
                })
                .collect(),
            randomness: None,
            ..genesis
        },
    }
}

/// The last checkpoint of epoch 0, closed at its last commit, 40.
fn last_checkpoint() -> CheckpointSummary {
    CheckpointSummary {
        sequence: 11,
        first_commit: 38,
        last_commit: 40,
        previous_digest: Digest::of(b"checkpoint 10"),
        ..common::summary()
    }
}

/// The hand-off of `next` after `last`, signed by `signers` with `key`.
fn hand_off(
    next: NextEpoch,
    last: &CheckpointSummary,
    signers: &[u32],
    key: impl Fn(u32) -> SigningKey,
) -> EpochChange {
    let summary = CheckpointSummary::end_of_epoch(last, next.digest());
    EpochChange {
        certificate: CertifiedCheckpoint {
            summary,
            signatures: signers
                .iter()
                .map(|&i| (i, summary.sign(&key(i))))
                .collect(),
        },
        next,
    }
}

#[test]
fn a_quorum_of_the_ending_committee_hands_over_to_the_next() {
    let committee = common::committee();
    let last = last_checkpoint();
    let change = hand_off(next_epoch(), &last, &[0, 2, 3], common::key);
    let next = change.verify(&committee, &last).unwrap();
    assert_eq!(next.epoch(), 1);
    assert_eq!(next.genesis_round(), 120);
    assert_eq!(next.total_stake(), 7);
    assert_eq!(next.genesis(), &next_epoch().committee);
    // Its genesis blocks sit at round 120, scheduled when round 120 of
    // the epoch before was, and rounds go on one interval apart.
    let genesis = VerifiedBlock::genesis(&next);
    assert!(genesis.iter().all(|b| b.round() == 120 && b.epoch() == 1));
    assert_eq!(next.round_time_ms(120), committee.round_time_ms(120));
    assert_eq!(next.round_time_ms(121), committee.round_time_ms(121));
    // The summary: the next sequence, chained to the last, its one commit
    // the epoch's last.
    let summary = change.certificate.summary;
    assert_eq!(summary.kind, CheckpointKind::EndOfEpoch);
    assert_eq!(
        (summary.sequence, summary.first_commit, summary.last_commit),
        (12, 40, 40)
    );
    assert_eq!(summary.previous_digest, last.digest());
    assert_eq!(summary.timestamp_ms, last.timestamp_ms);
    // It travels as BCS and decodes to the same proof.
    assert_eq!(EpochChange::decode(&change.encode()).unwrap(), change);
    let mut longer = change.encode();
    longer.push(0);
    assert_eq!(
        EpochChange::decode(&longer).unwrap_err(),
        TypesError::TrailingBytes {
            what: "epoch change"
        }
    );
}

#[test]
fn a_next_committee_signed_by_less_than_a_quorum_is_refused() {
    let last = last_checkpoint();
    let change = hand_off(next_epoch(), &last, &[0, 3], common::key);
    assert_eq!(
        change.verify(&common::committee(), &last).unwrap_err(),
        TypesError::CertificateBelowQuorum {
            sequence: 12,
            stake: 2,
            quorum: 3
        }
    );
}

#[test]
fn a_next_committee_signed_only_by_itself_is_refused() {
    let last = last_checkpoint();
    // Signers 0 to 3 of the next committee sign with its keys: under the
    // ending committee's keys their signatures are invalid.
    let change = hand_off(next_epoch(), &last, &[0, 1, 2, 3], next_key);
    assert_eq!(
        change.verify(&common::committee(), &last).unwrap_err(),
        TypesError::InvalidCheckpointSignature {
            sequence: 12,
            author: 0
        }
    );
    // And a signer only the next committee has is unknown to this one.
    let change = hand_off(next_epoch(), &last, &[0, 1, 2, 4], common::key);
    assert_eq!(
        change.verify(&common::committee(), &last).unwrap_err(),
        TypesError::UnknownAuthority {
            author: 4,
            committee_size: 4
        }
    );
}

#[test]
fn a_hand_off_that_skips_an_epoch_is_refused() {
    let last = last_checkpoint();
    let mut next = next_epoch();
    next.committee.epoch = 2;
    let change = hand_off(next, &last, &[0, 1, 2], common::key);
    assert_eq!(
        change.verify(&common::committee(), &last).unwrap_err(),
        TypesError::EpochSkipped { from: 0, to: 2 }
    );
}

#[test]
fn a_hand_off_must_commit_to_the_committee_sent_with_it_and_follow_the_chain() {
    let committee = common::committee();
    let last = last_checkpoint();
    // A quorum signed the real successor; another committee is sent.
    let mut change = hand_off(next_epoch(), &last, &[0, 1, 2], common::key);
    change.next.committee.authorities[0].stake = 100;
    assert_eq!(
        change.verify(&committee, &last).unwrap_err(),
        TypesError::NextCommitteeMismatch { sequence: 12 }
    );
    // Signed after another last checkpoint: the boundary is not this
    // node's last commit.
    let elsewhere = CheckpointSummary {
        last_commit: 41,
        ..last
    };
    let change = hand_off(next_epoch(), &elsewhere, &[0, 1, 2], common::key);
    assert_eq!(
        change.verify(&committee, &last).unwrap_err(),
        TypesError::FinalCheckpointMismatch {
            sequence: 12,
            last: 11
        }
    );
    // A regular checkpoint hands nothing over.
    let mut change = hand_off(next_epoch(), &last, &[0, 1, 2], common::key);
    change.certificate.summary.kind = CheckpointKind::Regular;
    assert_eq!(
        change.verify(&committee, &last).unwrap_err(),
        TypesError::NotEndOfEpoch { sequence: 12 }
    );
    // A proof of another epoch's end is not this one's.
    let later = CheckpointSummary { epoch: 1, ..last };
    let change = hand_off(next_epoch(), &later, &[0, 1, 2], common::key);
    assert_eq!(
        change.verify(&committee, &later).unwrap_err(),
        TypesError::WrongEpoch {
            expected: 0,
            got: 1
        }
    );
    // The next DAG must start above the ending one's genesis.
    let mut next = next_epoch();
    next.genesis_round = 0;
    let change = hand_off(next, &last, &[0, 1, 2], common::key);
    assert_eq!(
        change.verify(&committee, &last).unwrap_err(),
        TypesError::EpochStartsBack {
            genesis_round: 0,
            ending: 0
        }
    );
}

#[test]
fn blocks_of_another_epoch_and_at_the_genesis_round_are_refused() {
    let committee = common::committee();
    let next = next_epoch().committee().unwrap();
    let limits = BlockLimits::default();
    let block = |epoch, round, parents: &Committee| Block {
        epoch,
        round,
        author: 1,
        timestamp_ms: parents.round_time_ms(round),
        ancestors: VerifiedBlock::genesis(parents)
            .iter()
            .map(|b| b.reference())
            .collect(),
        transactions: vec![],
        commit_votes: vec![],
        system_messages: vec![],
    };
    // The next committee's first round, over its genesis blocks.
    let first = VerifiedBlock::sign(block(1, 121, &next), &next_key(1));
    assert!(VerifiedBlock::verify(first.serialized().clone(), &next, &limits).is_ok());
    // The ending committee refuses it, by epoch first.
    assert_eq!(
        VerifiedBlock::verify(first.serialized().clone(), &committee, &limits).unwrap_err(),
        TypesError::WrongEpoch {
            expected: 0,
            got: 1
        }
    );
    // And the next committee refuses a block of its own epoch at or below
    // its genesis round.
    let low = VerifiedBlock::sign(block(1, 120, &next), &next_key(1));
    assert_eq!(
        VerifiedBlock::verify(low.serialized().clone(), &next, &limits).unwrap_err(),
        TypesError::GenesisRound {
            author: 1,
            round: 120,
            genesis_round: 120
        }
    );
}

#[test]
fn the_epoch_ends_at_the_commit_that_brings_a_quorum_of_end_of_publish() {
    // Stakes 1, 2, 1, 2: quorum 5 of 6.
    let committee = Committee::new(common::genesis_with_stakes(&[1, 2, 1, 2])).unwrap();
    let parents: Vec<BlockRef> = VerifiedBlock::genesis(&committee)
        .iter()
        .map(|b| b.reference())
        .collect();
    let block = |author: u32, ends: bool| {
        VerifiedBlock::sign(
            Block {
                epoch: 0,
                round: 1,
                author,
                timestamp_ms: 0,
                ancestors: parents.clone(),
                transactions: vec![],
                commit_votes: vec![],
                system_messages: if ends {
                    vec![SystemMessage::EndOfPublish]
                } else {
                    vec![]
                },
            },
            &common::key(author),
        )
    };
    let mut tally = EndOfPublishTally::default();
    // 2 + 1 (authority 1 twice counts once): 3.
    assert!(!tally.on_commit(&[block(1, true), block(0, true)], &committee));
    assert!(!tally.on_commit(&[block(1, true), block(2, false)], &committee));
    assert_eq!(tally.authors(), &[0, 1]);
    // It survives a restart through its encoding.
    let mut tally = EndOfPublishTally::decode(&tally.encode()).unwrap();
    // + 2: 5, the quorum: this commit is the last.
    assert!(tally.on_commit(&[block(2, false), block(3, true)], &committee));
    // After it, nothing more ends the epoch again.
    assert!(!tally.on_commit(&[block(2, true)], &committee));
}

#[test]
fn checkpoints_continue_across_the_boundary() {
    let mut builder = CheckpointBuilder::new(0);
    builder.place(1, Digest::of(b"1"), 1_000, &[]);
    builder.place(2, Digest::of(b"2"), 1_050, &[]);
    // Commit 2 is the epoch's last: its checkpoint closes at once.
    let closed = builder.end_epoch();
    assert_eq!(closed.len(), 1);
    let last = closed[0];
    assert_eq!(
        (last.sequence, last.first_commit, last.last_commit),
        (0, 1, 2)
    );
    assert_eq!(builder.open(), None);
    assert_eq!(builder.end_epoch(), vec![]);
    let next = NextEpoch {
        genesis_round: 30,
        committee: Genesis {
            epoch: 1,
            ..common::genesis()
        },
    };
    let final_checkpoint = CheckpointSummary::end_of_epoch(&last, next.digest());
    // The next epoch's first checkpoint follows the final one.
    let mut builder = CheckpointBuilder::after(1, &final_checkpoint);
    assert_eq!(builder.epoch(), 1);
    assert_eq!(builder.place(3, Digest::of(b"3"), 2_000, &[]).sequence, 2);
    let closed = builder.place(4, Digest::of(b"4"), 2_500, &[]).closed;
    assert_eq!(closed.len(), 1);
    assert_eq!(
        (
            closed[0].epoch,
            closed[0].sequence,
            closed[0].first_commit,
            closed[0].last_commit
        ),
        (1, 2, 3, 3)
    );
    assert_eq!(closed[0].previous_digest, final_checkpoint.digest());
}
