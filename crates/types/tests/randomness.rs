//! Threshold randomness: interpolation, forgeries, batch checks, the
//! committee's key checks and the tally's placement rule.

mod common;

use common::{committee, key};
use dagstream_types::randomness::{
    HashedRound, RandomnessDealing, MAX_RANDOMNESS_SHARES, RANDOMNESS_ROUND_LIFETIME,
};
use dagstream_types::*;

/// A committee of the given stakes with randomness dealt from `[9; 32]`.
fn weighted(stakes: &[Stake]) -> (Committee, RandomnessDealing) {
    let total: Stake = stakes.iter().sum();
    let quorum = 2 * total / 3 + 1;
    let dealing = RandomnessDealing::deal(&[9; 32], total, quorum);
    let mut genesis = common::genesis_with_stakes(stakes);
    genesis.randomness = Some(dealing.keys().clone());
    (Committee::new(genesis).unwrap(), dealing)
}

fn partials(
    committee: &Committee,
    dealing: &RandomnessDealing,
    round: &HashedRound,
) -> Vec<Vec<BlsSignature>> {
    let verifier = committee.randomness().unwrap();
    committee
        .indexes()
        .map(|a| dealing.sign_shares(round, verifier.shares_of(a)))
        .collect()
}

#[test]
fn any_quorum_of_partials_interpolates_the_group_signature() {
    let (committee, dealing) = weighted(&[1, 2, 3, 1, 2]);
    let verifier = committee.randomness().unwrap();
    assert_eq!(verifier.threshold(), 7);
    let round = HashedRound::new(0, 12);
    let all = partials(&committee, &dealing, &round);
    let expected = dealing.sign_group(&round);
    verifier.verify(&expected).unwrap();
    // Authorities {1, 2, 4} hold 7 shares; {0, 2, 3, 4} hold 7 as well.
    for subset in [vec![1u32, 2, 4], vec![4, 3, 2, 0], vec![0, 1, 2, 3, 4]] {
        let given: Vec<(AuthorityIndex, &[BlsSignature])> = subset
            .iter()
            .map(|&a| (a, all[a as usize].as_slice()))
            .collect();
        let aggregation = verifier.aggregate(&round, &given);
        assert_eq!(aggregation.output, Some(expected), "subset {subset:?}");
        assert!(aggregation.forgers.is_empty());
    }
    // 6 shares are one short.
    let short: Vec<(AuthorityIndex, &[BlsSignature])> = [1u32, 2]
        .iter()
        .map(|&a| (a, all[a as usize].as_slice()))
        .collect();
    assert_eq!(verifier.aggregate(&round, &short).output, None);
}

#[test]
fn a_forged_partial_is_named_and_left_out() {
    let (committee, dealing) = weighted(&[1, 1, 1, 1]);
    let verifier = committee.randomness().unwrap();
    let round = HashedRound::new(0, 5);
    let mut all = partials(&committee, &dealing, &round);
    // Authority 1 sends its share's signature on another round.
    all[1] = dealing.sign_shares(&HashedRound::new(0, 6), verifier.shares_of(1));
    assert!(!verifier.verify_partial(&round, 1, &all[1]));
    assert!(verifier.verify_partial(&round, 0, &all[0]));
    let given = |authors: &[u32]| -> Vec<(AuthorityIndex, Vec<BlsSignature>)> {
        authors
            .iter()
            .map(|&a| (a, all[a as usize].clone()))
            .collect()
    };
    let view = |given: &[(AuthorityIndex, Vec<BlsSignature>)]| {
        let slices: Vec<(AuthorityIndex, &[BlsSignature])> =
            given.iter().map(|(a, p)| (*a, p.as_slice())).collect();
        verifier.aggregate(&round, &slices)
    };
    // With the forger among exactly a quorum, there is no signature.
    let short = view(&given(&[0, 1, 2]));
    assert_eq!(short.output, None);
    assert_eq!(short.forgers, vec![1]);
    // With one more honest partial, the forgery is set aside.
    let enough = view(&given(&[0, 1, 2, 3]));
    assert_eq!(enough.output, Some(dealing.sign_group(&round)));
    assert_eq!(enough.forgers, vec![1]);
    // A partial with the wrong number of shares, or not a point, is forged.
    assert!(!verifier.verify_partial(&round, 0, &[]));
    assert!(!verifier.verify_partial(&round, 0, &[BlsSignature([0xff; 48])]));
}

#[test]
fn a_wrong_group_signature_is_rejected_alone_and_in_a_batch() {
    let committee = committee();
    let dealing = common::dealing();
    let verifier = committee.randomness().unwrap();
    let outputs: Vec<RandomnessOutput> = (1..=5)
        .map(|r| dealing.sign_group(&HashedRound::new(0, r)))
        .collect();
    verifier.verify_batch(&outputs).unwrap();
    // Round 3's signature under round 4's number.
    let mut wrong = outputs.clone();
    wrong[3].signature = outputs[2].signature;
    assert_eq!(
        verifier.verify_batch(&wrong).unwrap_err(),
        TypesError::InvalidRandomness { round: 4 }
    );
    assert_eq!(
        verifier.verify(&wrong[3]).unwrap_err(),
        TypesError::InvalidRandomness { round: 4 }
    );
    // Another epoch's signature on the same round.
    let other_epoch = dealing.sign_group(&HashedRound::new(1, 2));
    assert!(verifier.verify(&other_epoch).is_err());
    let not_a_point = RandomnessOutput {
        round: 1,
        signature: BlsSignature([0xff; 48]),
    };
    assert_eq!(
        verifier
            .verify_batch(&[outputs[0], not_a_point])
            .unwrap_err(),
        TypesError::InvalidRandomness { round: 1 }
    );
}

#[test]
fn a_committee_checks_its_randomness_keys() {
    let reason = |genesis: Genesis| match Committee::new(genesis).unwrap_err() {
        TypesError::InvalidCommittee { reason } => reason,
        other => panic!("{other:?}"),
    };
    let mut genesis = common::genesis();
    genesis.randomness.as_mut().unwrap().share_keys.pop();
    assert_eq!(
        reason(genesis),
        "randomness has 3 share keys for a total stake of 4"
    );
    let mut genesis = common::genesis();
    genesis.randomness.as_mut().unwrap().group_key = BlsPublicKey([0x11; 96]);
    assert_eq!(
        reason(genesis),
        "randomness group key is not a valid G2 point"
    );
    let mut genesis = common::genesis();
    genesis.authorities[0].stake = MAX_RANDOMNESS_SHARES;
    assert!(reason(genesis).starts_with("randomness needs one share per unit of stake"));
    // Without randomness, the keys are not asked for.
    let mut genesis = common::genesis();
    genesis.randomness = None;
    assert!(Committee::new(genesis).unwrap().randomness().is_none());
}

#[test]
fn a_share_key_that_is_not_a_point_refuses_its_partials_only() {
    // Share keys are checked when first needed, so the committee is built;
    // the share's partials are then forgeries, and the others still reach
    // the threshold.
    let (committee, dealing) = weighted(&[1, 1, 1, 1]);
    let mut genesis = common::genesis_with_stakes(&[1, 1, 1, 1]);
    let mut keys = dealing.keys().clone();
    keys.share_keys[2] = BlsPublicKey([0x11; 96]);
    genesis.randomness = Some(keys);
    let broken = Committee::new(genesis).unwrap();
    let verifier = broken.randomness().unwrap();
    let round = HashedRound::new(0, 3);
    let all = partials(&committee, &dealing, &round);
    assert!(!verifier.verify_partial(&round, 2, &all[2]));
    // Asked again, the same answer from the kept result.
    assert!(!verifier.verify_partial(&round, 2, &all[2]));
    assert!(verifier.verify_partial(&round, 3, &all[3]));
    let forged = BlsSignature(dealing.sign_group(&HashedRound::new(0, 4)).signature.0);
    let given: Vec<(AuthorityIndex, &[BlsSignature])> = vec![
        (0, &all[0]),
        (2, std::slice::from_ref(&forged)),
        (1, &all[1]),
        (3, &all[3]),
    ];
    let aggregation = verifier.aggregate(&round, &given);
    assert_eq!(aggregation.output, Some(dealing.sign_group(&round)));
    assert_eq!(aggregation.forgers, vec![2]);
}

/// A block of `author` at `round` carrying `messages`.
fn block(author: u32, round: Round, messages: Vec<SystemMessage>) -> VerifiedBlock {
    VerifiedBlock::sign(
        Block {
            epoch: 0,
            round,
            author,
            timestamp_ms: 0,
            ancestors: vec![],
            transactions: vec![],
            commit_votes: vec![],
            system_messages: messages,
        },
        &key(author),
    )
}

fn partial(round: RandomnessRound, shares: usize) -> SystemMessage {
    SystemMessage::RandomnessPartial {
        round,
        shares: vec![BlsSignature([0; 48]); shares],
    }
}

#[test]
fn the_tally_generates_a_round_at_the_commit_that_brings_quorum_stake() {
    let (committee, _) = weighted(&[1, 2, 3, 1]);
    // Quorum: 5 of 7.
    let mut tally = RandomnessTally::default();
    // Commit 4 carries round 3 from authority 2 (3), twice, and round 4
    // (not started before commit 5) from authority 1.
    let generated = tally.on_commit(
        4,
        &[
            block(2, 9, vec![partial(3, 3), partial(3, 3)]),
            block(1, 9, vec![partial(4, 2)]),
        ],
        &committee,
    );
    assert!(generated.is_empty());
    // Commit 5: authority 3 (1) makes 4, and a partial of the wrong share
    // count from authority 1 counts nothing.
    let generated = tally.on_commit(
        5,
        &[
            block(3, 10, vec![partial(3, 1)]),
            block(1, 10, vec![partial(3, 1)]),
        ],
        &committee,
    );
    assert!(generated.is_empty());
    // Commit 6: authority 0 (1) reaches 5; round 2 reaches it too; a late
    // partial for round 3 in the same commit no longer counts.
    let generated = tally.on_commit(
        6,
        &[
            block(0, 11, vec![partial(3, 1)]),
            block(2, 11, vec![partial(2, 3)]),
            block(1, 11, vec![partial(2, 2), partial(3, 2)]),
        ],
        &committee,
    );
    assert_eq!(generated, vec![2, 3]);
    assert!(tally.is_generated(2) && tally.is_generated(3) && !tally.is_generated(4));
    assert_eq!(tally.pending().collect::<Vec<_>>(), Vec::<u64>::new());
    // The state survives its encoding.
    assert_eq!(RandomnessTally::decode(&tally.encode()).unwrap(), tally);
}

#[test]
fn the_tally_gives_up_a_round_after_its_lifetime() {
    let (committee, _) = weighted(&[1, 1, 1, 1]);
    let mut tally = RandomnessTally::default();
    tally.on_commit(2, &[block(0, 3, vec![partial(1, 1)])], &committee);
    tally.on_commit(100, &[block(1, 200, vec![partial(1, 1)])], &committee);
    assert_eq!(tally.pending().collect::<Vec<_>>(), vec![1]);
    // Round 1 counts in commits 2 ..= 1 + lifetime ...
    let third = [block(2, 600, vec![partial(1, 1)])];
    let last = 1 + RANDOMNESS_ROUND_LIFETIME;
    assert_eq!(tally.clone().on_commit(last, &third, &committee), vec![1]);
    // ... and is given up after.
    tally.on_commit(last - 1, &[], &committee);
    assert_eq!(tally.pending().collect::<Vec<_>>(), vec![1]);
    tally.on_commit(last, &[], &committee);
    assert_eq!(tally.pending().count(), 0);
    assert!(tally.on_commit(last + 1, &third, &committee).is_empty());
}
