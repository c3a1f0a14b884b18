//! Batches from the simulated committee verify; every kind of tampering is
//! rejected with its own error.

use crate::upstream::coalesce::{coalesce, MAX_COALESCED_BYTES};
use crate::verify::{verify_commit_batch, MIN_PARALLEL_BLOCKS};
use crate::ObserverError;
use bytes::Bytes;
use dagstream_proto::v1::{BlockRef as ProtoRef, CommitStreamResponse, CommittedSubDagData};
use dagstream_sim::SimConfig;
use dagstream_test_utils::TestCommittee;
use dagstream_types::randomness::encode_outputs;
use dagstream_types::{
    BlockLimits, CommitIndex, CommittedSubDag, Committee, RandomnessOutput, TrustedCommit,
    TypesError, VerifiedBlock,
};
use std::collections::HashMap;
use std::sync::Arc;

struct Chain {
    committee: Arc<Committee>,
    commits: Vec<CommittedSubDag>,
    /// The randomness the committee generated, by commit.
    randomness: HashMap<CommitIndex, Vec<RandomnessOutput>>,
    /// For each commit (by position), the blocks that vote for it.
    certifiers: Vec<Vec<VerifiedBlock>>,
}

/// 60 rounds of a 4-authority committee; commits decided after round r are
/// voted for by every block of round r + 1.
fn chain() -> Chain {
    chain_of(4, 60)
}

/// `rounds` rounds of a committee of `authorities`.
fn chain_of(authorities: usize, rounds: usize) -> Chain {
    let fixture = TestCommittee::new(authorities, 3);
    let committee = fixture.committee.clone();
    let mut sim = fixture.simulator(SimConfig::default());
    let outputs: Vec<_> = (0..rounds).map(|_| sim.produce_round().unwrap()).collect();
    let mut commits = Vec::new();
    let mut certifiers = Vec::new();
    for pair in outputs.windows(2) {
        for commit in &pair[0].commits {
            commits.push(commit.clone());
            certifiers.push(pair[1].blocks.clone());
        }
    }
    let randomness = outputs
        .iter()
        .flat_map(|o| o.randomness.iter().cloned())
        .collect();
    Chain {
        committee,
        commits,
        randomness,
        certifiers,
    }
}

fn to_proto(
    sub_dag: &CommittedSubDag,
    randomness: Option<&Vec<RandomnessOutput>>,
) -> CommittedSubDagData {
    let leader = sub_dag.commit.leader();
    CommittedSubDagData {
        commit_index: sub_dag.index(),
        leader: Some(ProtoRef {
            authority_index: leader.author,
            round: leader.round,
            digest: Bytes::copy_from_slice(leader.digest.as_bytes()),
        }),
        blocks: sub_dag
            .blocks
            .iter()
            .map(|b| b.serialized().clone())
            .collect(),
        timestamp_ms: sub_dag.commit.timestamp_ms(),
        randomness: randomness.map(|r| encode_outputs(r).into()),
    }
}

impl Chain {
    /// The batch of commits at positions `range`, certified for its last.
    fn batch(&self, range: std::ops::Range<usize>) -> CommitStreamResponse {
        CommitStreamResponse {
            commits: self.commits[range.clone()]
                .iter()
                .map(|c| to_proto(c, self.randomness.get(&c.index())))
                .collect(),
            highest_commit_index: self.commits.len() as u64,
            highest_certified_checkpoint: None,
            certifier_blocks: self.certifiers[range.end - 1]
                .iter()
                .map(|b| b.serialized().clone())
                .collect(),
            epoch_changes: vec![],
        }
    }

    fn previous(&self, position: usize) -> Option<TrustedCommit> {
        position
            .checked_sub(1)
            .map(|p| self.commits[p].commit.clone())
    }

    fn verify(
        &self,
        start: usize,
        batch: &CommitStreamResponse,
    ) -> Result<Vec<CommittedSubDag>, ObserverError> {
        let received = verify_commit_batch(
            &self.committee,
            &BlockLimits::default(),
            self.previous(start).as_ref(),
            batch,
        )?;
        // What was received is what was sent.
        for r in &received {
            assert_eq!(
                r.randomness.as_ref(),
                self.randomness.get(&r.sub_dag.index())
            );
        }
        Ok(received.into_iter().map(|r| r.sub_dag).collect())
    }
}

#[test]
fn honest_batches_verify_into_the_same_chain() {
    let chain = chain();
    let mut start = 0;
    let mut verified = Vec::new();
    for size in [1, 5, 20, 3] {
        let batch = chain.batch(start..start + size);
        verified.extend(chain.verify(start, &batch).unwrap());
        start += size;
    }
    let expected: Vec<_> = chain.commits[..start]
        .iter()
        .map(|c| c.reference())
        .collect();
    let got: Vec<_> = verified.iter().map(|c| c.reference()).collect();
    assert_eq!(got, expected);
    // An empty batch (a heartbeat) verifies to nothing.
    let heartbeat = CommitStreamResponse::default();
    assert!(chain.verify(3, &heartbeat).unwrap().is_empty());
}

/// Batches joined by the commit reader verify as one: the last commit's
/// certificate covers the rest, and their randomness is checked together.
#[test]
fn joined_batches_verify_under_the_last_certificate() {
    let chain = chain();
    let mut joined = chain.batch(0..5);
    for range in [5..12, 12..20] {
        coalesce(&mut joined, chain.batch(range), MAX_COALESCED_BYTES).unwrap();
    }
    assert!(!chain.randomness.is_empty());
    let verified = chain.verify(0, &joined).unwrap();
    let expected: Vec<_> = chain.commits[..20].iter().map(|c| c.reference()).collect();
    let got: Vec<_> = verified.iter().map(|c| c.reference()).collect();
    assert_eq!(got, expected);
    // The first batch's certificate does not cover the joined ones.
    let mut wrong = joined.clone();
    wrong.certifier_blocks = chain.batch(0..5).certifier_blocks;
    let err = chain.verify(0, &wrong).unwrap_err();
    assert!(
        matches!(
            err,
            ObserverError::MissingQuorum {
                index: 20,
                stake: 0,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn forged_certifier_signature() {
    let chain = chain();
    let mut batch = chain.batch(0..4);
    let mut forged = batch.certifier_blocks[0].to_vec();
    let last = forged.len() - 1;
    forged[last] ^= 0x40;
    batch.certifier_blocks[0] = forged.into();
    assert!(matches!(
        chain.verify(0, &batch),
        Err(ObserverError::BadCertifier {
            source: dagstream_types::TypesError::InvalidSignature { .. }
        })
    ));
}

#[test]
fn tampered_block_inside_a_commit() {
    let chain = chain();
    // A commit with blocks besides its leader.
    let position = (0..10)
        .find(|&p| chain.commits[p].blocks.len() > 1)
        .unwrap();
    let mut batch = chain.batch(0..position + 3);
    // Flip a byte inside the first transaction of a non-leader block: it
    // still decodes, but its digest, its commit's digest and every digest
    // after it change, so the certified last commit no longer matches.
    let block = &mut batch.commits[position].blocks[0];
    assert!(!chain.commits[position].blocks[0].transactions().is_empty());
    let mut bytes = block.to_vec();
    // Header (28 bytes), ancestor count (1), ancestors (44 each),
    // transaction count (1), first transaction's 256-byte length (2).
    let ancestors = chain.commits[position].blocks[0].ancestors().len();
    let first_tx_byte = 28 + 1 + 44 * ancestors + 1 + 2;
    bytes[first_tx_byte] ^= 1;
    *block = bytes.into();
    let last = (position + 3) as u64;
    let err = chain.verify(0, &batch).unwrap_err();
    assert!(
        matches!(err, ObserverError::DigestMismatch { index, .. } if index == last),
        "{err:?}"
    );
}

#[test]
fn broken_chain() {
    let chain = chain();
    // Commit 6 offered on top of commit 4: a gap.
    let batch = chain.batch(5..8);
    assert!(matches!(
        chain.verify(4, &batch),
        Err(ObserverError::BrokenChain {
            expected_after: 4,
            got: 6
        })
    ));
    // A batch that continues another chain: right indexes, wrong history.
    let other = chain.batch(5..8);
    let mut wrong_tip = chain.commits[3].commit.commit().clone();
    wrong_tip.index = 5;
    let wrong_tip = TrustedCommit::new(wrong_tip);
    let err = verify_commit_batch(
        &chain.committee,
        &BlockLimits::default(),
        Some(&wrong_tip),
        &other,
    )
    .unwrap_err();
    assert!(
        matches!(err, ObserverError::DigestMismatch { index: 8, .. }),
        "{err:?}"
    );
}

#[test]
fn certifiers_without_quorum() {
    let chain = chain();
    let mut batch = chain.batch(0..4);
    batch.certifier_blocks.truncate(2);
    assert!(matches!(
        chain.verify(0, &batch),
        Err(ObserverError::MissingQuorum {
            index: 4,
            stake: 2,
            quorum: 3
        })
    ));
    // The same certifier twice counts once.
    let one = batch.certifier_blocks[0].clone();
    batch.certifier_blocks = vec![one.clone(), one.clone(), one];
    assert!(matches!(
        chain.verify(0, &batch),
        Err(ObserverError::MissingQuorum { stake: 1, .. })
    ));
    // Certifiers of another commit do not vote for this one.
    let mut batch = chain.batch(0..4);
    batch.certifier_blocks = chain.batch(10..11).certifier_blocks;
    assert!(matches!(
        chain.verify(0, &batch),
        Err(ObserverError::MissingQuorum { stake: 0, .. })
    ));
    let mut batch = chain.batch(0..4);
    batch.certifier_blocks.clear();
    assert!(matches!(
        chain.verify(0, &batch),
        Err(ObserverError::MissingCertificate { index: 4 })
    ));
}

#[test]
fn malformed_sub_dags() {
    let chain = chain();
    let mut batch = chain.batch(0..3);
    batch.commits[2].leader.as_mut().unwrap().round += 1;
    assert!(matches!(
        chain.verify(0, &batch),
        Err(ObserverError::LeaderMismatch { index: 3 })
    ));

    let mut batch = chain.batch(0..3);
    batch.commits[1].timestamp_ms += 1;
    assert!(matches!(
        chain.verify(0, &batch),
        Err(ObserverError::WrongTimestamp { index: 2, .. })
    ));

    let mut batch = chain.batch(0..3);
    let position = (1..3)
        .find(|&i| batch.commits[i].blocks.len() >= 3)
        .expect("a sub-DAG of 3");
    batch.commits[position].blocks.swap(0, 1);
    assert!(matches!(
        chain.verify(0, &batch),
        Err(ObserverError::UnorderedSubDag { .. })
    ));

    let mut batch = chain.batch(0..3);
    batch.commits[0].blocks.clear();
    assert!(matches!(
        chain.verify(0, &batch),
        Err(ObserverError::EmptySubDag { index: 1 })
    ));

    let mut batch = chain.batch(0..3);
    batch.commits[0].blocks[0] = Bytes::from_static(b"not a block");
    assert!(matches!(
        chain.verify(0, &batch),
        Err(ObserverError::MalformedBlock { index: 1, .. })
    ));
}

/// A batch large enough to be decoded on several threads verifies into the
/// same chain, and fails at the same commit with the same error as one
/// decoded in order: the first failing commit's, whichever thread decoded
/// the blocks of a later one.
#[test]
fn a_large_batch_decoded_in_parallel_fails_where_one_decoded_in_order_would() {
    let chain = chain_of(16, 60);
    let all = 0..chain.commits.len();
    let blocks: usize = chain.commits.iter().map(|c| c.blocks.len()).sum();
    assert!(blocks >= 2 * MIN_PARALLEL_BLOCKS, "{blocks} blocks");
    let verified = chain.verify(0, &chain.batch(all.clone())).unwrap();
    let got: Vec<_> = verified.iter().map(|c| c.reference()).collect();
    let expected: Vec<_> = chain.commits.iter().map(|c| c.reference()).collect();
    assert_eq!(got, expected);

    let last = chain.commits.len() - 1;
    let mut batch = chain.batch(all.clone());
    batch.commits[last].blocks[0] = Bytes::from_static(b"not a block");
    let err = chain.verify(0, &batch).unwrap_err();
    assert!(
        matches!(err, ObserverError::MalformedBlock { index, .. } if index == last as u64 + 1),
        "{err:?}"
    );
    // A fault in an early commit is the one reported, though a later
    // commit's blocks do not decode either.
    batch.commits[1].leader.as_mut().unwrap().round += 1;
    assert!(matches!(
        chain.verify(0, &batch),
        Err(ObserverError::LeaderMismatch { index: 2 })
    ));
}

/// The chain of [`chain`], made once for every proptest case.
fn shared_chain() -> &'static Chain {
    static CHAIN: std::sync::OnceLock<Chain> = std::sync::OnceLock::new();
    CHAIN.get_or_init(chain)
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(96))]

    /// A batch damaged in any one byte on the wire never panics the
    /// verifier: it does not decode, or it is rejected with an integrity
    /// error, or the byte changed nothing that is verified (the batch's
    /// `highest_commit_index`) and the very same commits come out.
    #[test]
    fn a_batch_damaged_anywhere_is_rejected_or_unchanged(
        position in proptest::prelude::any::<proptest::sample::Index>(),
        flip in 1u8..=255,
    ) {
        use prost::Message;
        let chain = shared_chain();
        let honest = chain.batch(2..6);
        let mut bytes = honest.encode_to_vec();
        let at = position.index(bytes.len());
        bytes[at] ^= flip;
        if let Ok(damaged) = CommitStreamResponse::decode(bytes.as_slice()) {
            match chain.verify(2, &damaged) {
                Ok(commits) => {
                    let got: Vec<_> = commits.iter().map(|c| c.reference()).collect();
                    let expected: Vec<_> =
                        chain.commits[2..6].iter().map(|c| c.reference()).collect();
                    proptest::prop_assert_eq!(got, expected);
                    proptest::prop_assert_eq!(&damaged.commits, &honest.commits);
                }
                Err(err) => proptest::prop_assert!(err.is_integrity(), "{}", err),
            }
        }
    }
}

#[test]
fn a_wrong_randomness_signature_rejects_the_batch() {
    let chain = chain();
    let mut batch = chain.batch(10..30);
    let carrying: Vec<usize> = (0..batch.commits.len())
        .filter(|&i| batch.commits[i].randomness.is_some())
        .collect();
    assert!(carrying.len() > 10, "{carrying:?}");
    // The second commit's signature under the first's round numbers.
    let (first, second) = (carrying[0], carrying[1]);
    let decode = |i: usize, batch: &CommitStreamResponse| {
        dagstream_types::randomness::decode_outputs(batch.commits[i].randomness.as_ref().unwrap())
            .unwrap()
    };
    let mut forged = decode(first, &batch);
    forged[0].signature = decode(second, &batch)[0].signature;
    batch.commits[first].randomness = Some(encode_outputs(&forged).into());
    let index = batch.commits[first].commit_index;
    match chain.verify(10, &batch).unwrap_err() {
        ObserverError::InvalidRandomness { index: at, source } => {
            assert_eq!(at, index);
            assert_eq!(
                source,
                TypesError::InvalidRandomness {
                    round: forged[0].round
                }
            );
        }
        other => panic!("{other:?}"),
    }
    // Bytes that are not a list of outputs.
    let mut batch = chain.batch(10..30);
    batch.commits[first].randomness = Some(vec![1, 2, 3].into());
    assert!(matches!(
        chain.verify(10, &batch).unwrap_err(),
        ObserverError::InvalidRandomness { index: at, .. } if at == index
    ));
}
