//! The certifier alone, over hand-made blocks of a committee with unequal
//! stakes: quorum exactly, forgeries, duplicates, early signatures and
//! bounds.

use crate::certify::{
    Certifier, Outcome, CATCH_UP_CERTIFY_EVERY, MAX_EARLY_CHECKPOINTS, MAX_UNCERTIFIED,
};
use crate::checkpoint::{certificate_key, HIGHEST_CERTIFIED_KEY};
use crate::delivery::DeliveredSubDag;
use crate::sequencer::{ClosedCheckpoint, Sequenced};
use dagstream_sim::{generate, CommitteeKeys};
use dagstream_store::WriteBatch;
use dagstream_test_utils::TestCommittee;
use dagstream_types::{
    AuthorityIndex, Block, CertifiedCheckpoint, CheckpointKind, CheckpointSummary, Commit,
    CommittedSubDag, Committee, Digest, Signature, SystemMessage, TrustedCommit, VerifiedBlock,
};
use std::ops::Range;
use std::sync::Arc;

/// Stakes 1, 2, 3 and 4: a total of 10, a quorum of 7.
fn committee() -> (Arc<Committee>, CommitteeKeys) {
    let (mut genesis, keys) = generate(&TestCommittee::params(4, 11));
    for (authority, stake) in genesis.authorities.iter_mut().zip([1, 2, 3, 4]) {
        authority.stake = stake;
    }
    // Shares follow stake: deal them again.
    genesis.randomness = Some(keys.randomness_dealing(10, 7).keys().clone());
    let committee = Committee::new(genesis).unwrap();
    assert_eq!(committee.quorum_threshold(), 7);
    (Arc::new(committee), keys)
}

fn closed(sequence: u64) -> ClosedCheckpoint {
    ClosedCheckpoint {
        summary: CheckpointSummary {
            epoch: 0,
            sequence,
            first_commit: 3 * sequence + 1,
            last_commit: 3 * sequence + 3,
            content_digest: Digest::of(&sequence.to_le_bytes()),
            previous_digest: Digest::ZERO,
            timestamp_ms: 1_000 + 200 * sequence,
            kind: CheckpointKind::Regular,
        },
        leader_round: 10 + 2 * sequence,
        timestamp_ms: 1_200 + 200 * sequence,
    }
}

/// A block of `author` at `round` carrying `messages`: the certifier
/// (and the randomness stage) read only its author, round, time and
/// messages.
pub(crate) fn block(
    keys: &CommitteeKeys,
    author: AuthorityIndex,
    round: u64,
    messages: Vec<SystemMessage>,
) -> VerifiedBlock {
    VerifiedBlock::sign(
        Block {
            epoch: 0,
            round,
            author,
            timestamp_ms: round * 100 + u64::from(author),
            ancestors: vec![],
            transactions: vec![],
            commit_votes: vec![],
            system_messages: messages,
        },
        &keys.keys()[author as usize],
    )
}

/// A block of `author` at `round` carrying its own signature of `summary`.
fn signing(
    keys: &CommitteeKeys,
    author: AuthorityIndex,
    round: u64,
    summary: &CheckpointSummary,
) -> VerifiedBlock {
    block(keys, author, round, vec![signed(keys, author, summary)])
}

/// The authorities whose signatures a certificate holds, in its order.
fn signers(certificate: &CertifiedCheckpoint) -> Vec<AuthorityIndex> {
    certificate.signatures.iter().map(|s| s.0).collect()
}

/// `author`'s own, valid signature of `summary`.
fn signed(
    keys: &CommitteeKeys,
    author: AuthorityIndex,
    summary: &CheckpointSummary,
) -> SystemMessage {
    summary.signature_message(&keys.keys()[author as usize])
}

#[test]
fn a_checkpoint_is_certified_exactly_at_quorum_stake() {
    let (committee, keys) = committee();
    let mut certifier = Certifier::new(committee.clone(), None, None, vec![]);
    let checkpoint = closed(0);
    assert!(certifier.on_closed(checkpoint).is_empty());
    // Stakes 1 + 2 + 3 = 6: one short.
    for (author, round) in [(0, 13), (1, 13), (2, 14)] {
        let outcomes = certifier.observe(&signing(&keys, author, round, &checkpoint.summary));
        assert_eq!(outcomes, vec![Outcome::Counted]);
        assert_eq!(certifier.highest_certified(), None);
    }
    let mut batch = WriteBatch::new();
    assert!(certifier.take_certified(&mut batch).is_empty());
    assert!(batch.is_empty());
    // Authority 3 brings 10.
    let outcomes = certifier.observe(&signing(&keys, 3, 15, &checkpoint.summary));
    assert_eq!(outcomes, vec![Outcome::Counted]);
    assert_eq!(certifier.highest_certified(), Some(0));
    let certified = certifier.take_certified(&mut batch);
    assert_eq!(certified.len(), 1);
    let certificate = certified[0].certificate.as_ref().unwrap();
    assert_eq!(certificate.summary, checkpoint.summary);
    assert_eq!(signers(certificate), vec![0, 1, 2, 3]);
    certificate.verify(&committee).unwrap();
    // The quorum was complete in the DAG at round 15, 3 rounds after the
    // closing commit's decision round (its leader round 10, plus 2).
    assert_eq!(certified[0].rounds, Some(3));
    assert_eq!(certified[0].ms, Some(1_503 - 1_200));
    let meta: Vec<&str> = batch.meta().iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        meta,
        vec![certificate_key(0).as_str(), HIGHEST_CERTIFIED_KEY]
    );
    // Late signatures change nothing: certified once.
    let late = certifier.observe(&signing(&keys, 3, 16, &checkpoint.summary));
    assert_eq!(late, vec![Outcome::Ignored]);
    assert!(!certifier.has_certified());

    // 4 + 3 = 7 exactly: certified with the second signature.
    let next = closed(1);
    certifier.on_closed(next);
    certifier.observe(&signing(&keys, 3, 17, &next.summary));
    assert_eq!(certifier.highest_certified(), Some(0));
    certifier.observe(&signing(&keys, 2, 17, &next.summary));
    assert_eq!(certifier.highest_certified(), Some(1));
    let certified = certifier.take_certified(&mut WriteBatch::new());
    assert_eq!(
        signers(certified[0].certificate.as_ref().unwrap()),
        vec![2, 3]
    );
    certified[0]
        .certificate
        .as_ref()
        .unwrap()
        .verify(&committee)
        .unwrap();
}

/// Authorities 0, 1 and 2 sign (6 of 7); the test's authority 3 does not
/// sign properly.
fn one_short(keys: &CommitteeKeys, certifier: &mut Certifier, summary: &CheckpointSummary) {
    for author in 0..3 {
        certifier.observe(&block(
            keys,
            author,
            13,
            vec![signed(keys, author, summary)],
        ));
    }
}

#[test]
fn a_forged_checkpoint_signature_does_not_count() {
    let (committee, keys) = committee();
    let mut certifier = Certifier::new(committee, None, None, vec![]);
    let checkpoint = closed(0);
    certifier.on_closed(checkpoint);
    one_short(&keys, &mut certifier, &checkpoint.summary);
    // Authority 3's block carries authority 2's signature, then noise.
    let signature = checkpoint.summary.sign(&keys.keys()[2]);
    let digest = checkpoint.summary.digest();
    let forged = |signature| SystemMessage::CheckpointSignature {
        sequence: 0,
        summary_digest: digest,
        signature,
    };
    let outcomes = certifier.observe(&block(
        &keys,
        3,
        14,
        vec![forged(signature), forged(Signature([7; 64]))],
    ));
    // The second waits behind the first, then is dropped with its block.
    assert_eq!(outcomes, vec![Outcome::Forged, Outcome::Ignored]);
    assert_eq!(certifier.uncertified(), 1);
    assert_eq!(certifier.highest_certified(), None);
    // Its real signature still counts.
    let outcomes = certifier.observe(&signing(&keys, 3, 15, &checkpoint.summary));
    assert_eq!(outcomes, vec![Outcome::Counted]);
    assert_eq!(certifier.highest_certified(), Some(0));
}

#[test]
fn a_signature_over_another_summary_does_not_count() {
    let (committee, keys) = committee();
    let mut certifier = Certifier::new(committee, None, None, vec![]);
    let checkpoint = closed(0);
    certifier.on_closed(checkpoint);
    one_short(&keys, &mut certifier, &checkpoint.summary);
    // Authority 3 validly signs a summary of other contents, same sequence.
    let mut other = checkpoint.summary;
    other.content_digest = Digest::of(b"other contents");
    let outcomes = certifier.observe(&signing(&keys, 3, 14, &other));
    assert_eq!(outcomes, vec![Outcome::OtherSummary]);
    assert_eq!(certifier.highest_certified(), None);
    assert_eq!(certifier.uncertified(), 1);
}

#[test]
fn a_duplicate_signer_counts_once() {
    let (committee, keys) = committee();
    let mut certifier = Certifier::new(committee, None, None, vec![]);
    let checkpoint = closed(0);
    certifier.on_closed(checkpoint);
    let by_3 = signed(&keys, 3, &checkpoint.summary);
    // Twice in one block, then again in another: 4 once.
    let outcomes = certifier.observe(&block(&keys, 3, 13, vec![by_3.clone(), by_3.clone()]));
    assert_eq!(outcomes, vec![Outcome::Counted, Outcome::Ignored]);
    let outcomes = certifier.observe(&block(&keys, 3, 14, vec![by_3]));
    assert_eq!(outcomes, vec![Outcome::Ignored]);
    // 4 + 2 = 6: not yet.
    certifier.observe(&signing(&keys, 1, 14, &checkpoint.summary));
    assert_eq!(certifier.highest_certified(), None);
    certifier.observe(&signing(&keys, 0, 14, &checkpoint.summary));
    assert_eq!(certifier.highest_certified(), Some(0));
    let certified = certifier.take_certified(&mut WriteBatch::new());
    assert_eq!(
        signers(certified[0].certificate.as_ref().unwrap()),
        vec![0, 1, 3]
    );
}

/// Signatures can arrive before the observer closes the checkpoint (a
/// block stream ahead of the commits it decides): they wait, within a
/// window, one per author.
#[test]
fn early_signatures_wait_for_the_observers_own_summary() {
    let (committee, keys) = committee();
    let mut certifier = Certifier::new(committee, None, None, vec![]);
    let checkpoint = closed(0);
    let mut other = checkpoint.summary;
    other.timestamp_ms += 1;
    let outcomes = certifier.observe(&block(
        &keys,
        3,
        13,
        vec![
            signed(&keys, 3, &checkpoint.summary),
            signed(&keys, 3, &other),
        ],
    ));
    assert_eq!(outcomes, vec![Outcome::Early, Outcome::Ignored]);
    certifier.observe(&signing(&keys, 2, 13, &checkpoint.summary));
    // Past the window: ignored.
    let far = closed(MAX_EARLY_CHECKPOINTS);
    let outcomes = certifier.observe(&signing(&keys, 2, 13, &far.summary));
    assert_eq!(outcomes, vec![Outcome::Ignored]);
    assert_eq!(certifier.highest_certified(), None);
    let outcomes = certifier.on_closed(checkpoint);
    assert_eq!(outcomes, vec![Outcome::Counted, Outcome::Counted]);
    assert_eq!(certifier.highest_certified(), Some(0));
}

#[test]
fn uncertified_checkpoints_are_bounded() {
    let (committee, keys) = committee();
    let mut certifier = Certifier::new(committee, None, None, vec![]);
    // Checkpoint 0 gets signatures short of its quorum: they wait.
    certifier.on_closed(closed(0));
    one_short(&keys, &mut certifier, &closed(0).summary);
    assert_eq!(certifier.queued(), 3);
    for sequence in 1..MAX_UNCERTIFIED as u64 + 3 {
        certifier.on_closed(closed(sequence));
    }
    assert_eq!(certifier.uncertified(), MAX_UNCERTIFIED);
    assert_eq!(certifier.abandoned(), 3);
    // Given up, with its signatures.
    assert_eq!(certifier.queued(), 0);
}

/// Only signatures that make a quorum are verified; the rest wait as
/// spares and replace one that turns out forged.
#[test]
fn spares_replace_a_forged_signature() {
    let (committee, keys) = committee();
    let mut certifier = Certifier::new(committee.clone(), None, None, vec![]);
    let checkpoint = closed(0);
    certifier.on_closed(checkpoint);
    let summary = checkpoint.summary;
    let signature = summary.sign(&keys.keys()[2]);
    let forged_by_3 = SystemMessage::CheckpointSignature {
        sequence: 0,
        summary_digest: summary.digest(),
        signature,
    };
    // One commit batch: 3 (forged, 4) and 2 (3) would make the quorum, so
    // 1 and 0 wait; 3 fails, 0 and 1 are verified in its place: 6 of 7.
    let blocks = vec![
        block(&keys, 3, 13, vec![forged_by_3]),
        signing(&keys, 2, 13, &summary),
        signing(&keys, 1, 13, &summary),
        signing(&keys, 0, 13, &summary),
    ];
    let sequenced = received_commit(blocks, 1_400);
    let outcomes = certifier.on_sequenced(&sequenced, true, false);
    assert_eq!(
        outcomes,
        vec![
            Outcome::Forged,
            Outcome::Counted,
            Outcome::Ignored,
            Outcome::Ignored
        ]
    );
    assert_eq!(certifier.highest_certified(), None);
    // 3's own signature completes it, with every valid signer.
    certifier.observe(&signing(&keys, 3, 14, &summary));
    let certified = certifier.take_certified(&mut WriteBatch::new());
    assert_eq!(
        signers(certified[0].certificate.as_ref().unwrap()),
        vec![0, 1, 2, 3]
    );
    certified[0]
        .certificate
        .as_ref()
        .unwrap()
        .verify(&committee)
        .unwrap();
}

/// One commit batch carrying every signature of checkpoints `sequences`,
/// authority 3's of checkpoint `forged` forged.
fn catch_up_batch(keys: &CommitteeKeys, sequences: Range<u64>, forged: Option<u64>) -> Sequenced {
    let mut blocks = Vec::new();
    for sequence in sequences {
        let summary = closed(sequence).summary;
        for author in 0..4 {
            let message = if forged == Some(sequence) && author == 3 {
                SystemMessage::CheckpointSignature {
                    sequence,
                    summary_digest: summary.digest(),
                    signature: summary.sign(&keys.keys()[2]),
                }
            } else {
                signed(keys, author, &summary)
            };
            blocks.push(block(keys, author, 20 + sequence, vec![message]));
        }
    }
    received_commit(blocks, 1_800)
}

/// Commit 10, received on the commit stream, of `blocks` (the last its
/// leader) at `timestamp_ms`: what the sequencer hands the certifier.
fn received_commit(blocks: Vec<VerifiedBlock>, timestamp_ms: u64) -> Sequenced {
    let commit = TrustedCommit::new(Commit {
        index: 10,
        previous_digest: Digest::ZERO,
        timestamp_ms,
        leader: blocks.last().expect("a leader").reference(),
        blocks: blocks.iter().map(|b| b.reference()).collect(),
    });
    Sequenced {
        sub_dags: vec![DeliveredSubDag {
            sub_dag: CommittedSubDag { commit, blocks },
            checkpoint: 3,
            certified_checkpoint: None,
            randomness: vec![],
        }],
        ..Sequenced::default()
    }
}

/// Which checkpoints were certified, each with whether by its own
/// certificate (valid, stored) or through a later one's chain.
fn certified_how(certifier: &mut Certifier, committee: &Committee) -> Vec<(u64, bool)> {
    let mut batch = WriteBatch::new();
    let certified = certifier.take_certified(&mut batch);
    let stored: Vec<String> = batch
        .meta()
        .iter()
        .map(|(key, _)| key.clone())
        .filter(|key| key.starts_with("certificate/"))
        .collect();
    let own: Vec<String> = certified
        .iter()
        .filter(|c| c.certificate.is_some())
        .map(|c| certificate_key(c.summary.sequence))
        .collect();
    assert_eq!(stored, own);
    certified
        .iter()
        .map(|c| {
            if let Some(certificate) = &c.certificate {
                certificate.verify(committee).unwrap();
                assert_eq!(certificate.summary, c.summary);
            }
            (c.summary.sequence, c.certificate.is_some())
        })
        .collect()
}

#[test]
fn catching_up_the_newest_checkpoint_certifies_the_older_through_its_chain() {
    let (committee, keys) = committee();
    let mut certifier = Certifier::new(committee.clone(), None, None, vec![]);
    for sequence in 0..3 {
        certifier.on_closed(closed(sequence));
    }
    certifier.on_sequenced(&catch_up_batch(&keys, 0..3, None), true, false);
    assert_eq!(certifier.highest_certified(), Some(2));
    assert_eq!(
        certified_how(&mut certifier, &committee),
        vec![(0, false), (1, false), (2, true)]
    );
    assert_eq!(certifier.uncertified(), 0);
}

#[test]
fn a_newest_checkpoint_short_of_its_quorum_leaves_the_older_to_their_own() {
    let (committee, keys) = committee();
    let mut certifier = Certifier::new(committee.clone(), None, None, vec![]);
    for sequence in 0..3 {
        certifier.on_closed(closed(sequence));
    }
    // Authority 3's signature of checkpoint 2 is forged: 6 of 7 remain.
    let outcomes = certifier.on_sequenced(&catch_up_batch(&keys, 0..3, Some(2)), true, false);
    assert_eq!(
        outcomes.iter().filter(|o| **o == Outcome::Forged).count(),
        1
    );
    assert_eq!(certifier.highest_certified(), Some(1));
    assert_eq!(
        certified_how(&mut certifier, &committee),
        vec![(0, false), (1, true)]
    );
    assert_eq!(certifier.uncertified(), 1);
}

#[test]
fn catching_up_verification_waits_for_enough_ready_checkpoints() {
    let (committee, keys) = committee();
    let mut certifier = Certifier::new(committee.clone(), None, None, vec![]);
    let every = CATCH_UP_CERTIFY_EVERY as u64;
    for sequence in 0..=every {
        certifier.on_closed(closed(sequence));
    }
    // One checkpoint short: every signature waits, none is verified.
    let outcomes = certifier.on_sequenced(&catch_up_batch(&keys, 0..every - 1, None), true, true);
    assert!(!outcomes.contains(&Outcome::Forged));
    assert_eq!(certifier.highest_certified(), None);
    assert!(!certifier.has_certified());
    // The last one ready: the newest certifies them all through its chain.
    let last = every - 1;
    certifier.on_sequenced(&catch_up_batch(&keys, last..every, None), true, true);
    assert_eq!(certifier.highest_certified(), Some(last));
    let mut expected: Vec<(u64, bool)> = (0..last).map(|s| (s, false)).collect();
    expected.push((last, true));
    assert_eq!(certified_how(&mut certifier, &committee), expected);
    // The next waits, a forgery in it unnoticed; at the tip it is verified
    // and the forgery reported: 6 of 7 remain.
    let outcomes = certifier.on_sequenced(
        &catch_up_batch(&keys, every..every + 1, Some(every)),
        true,
        true,
    );
    assert!(!outcomes.contains(&Outcome::Forged));
    let outcomes = certifier.on_sequenced(&Sequenced::default(), false, false);
    assert_eq!(outcomes, vec![Outcome::Forged]);
    assert_eq!(certifier.highest_certified(), Some(last));
    // Authority 3's own signature completes it.
    certifier.observe(&signing(&keys, 3, 90, &closed(every).summary));
    assert_eq!(certifier.highest_certified(), Some(every));
    assert_eq!(
        certified_how(&mut certifier, &committee),
        vec![(every, true)]
    );
}
