//! Every way a received block can be wrong is rejected with its own error,
//! never a panic.

mod common;

use bytes::Bytes;
use dagstream_types::*;
use proptest::prelude::*;

fn limits() -> BlockLimits {
    BlockLimits::default()
}

/// A valid round-2 block of `author` over all of round 1, signed by `signer`.
struct Fixture {
    committee: Committee,
    round1: Vec<VerifiedBlock>,
}

impl Fixture {
    fn new() -> Self {
        let committee = common::committee();
        let genesis: Vec<BlockRef> = VerifiedBlock::genesis(&committee)
            .iter()
            .map(|b| b.reference())
            .collect();
        let round1 = (0..4)
            .map(|author| {
                VerifiedBlock::sign(
                    Block {
                        epoch: 0,
                        round: 1,
                        author,
                        timestamp_ms: 0,
                        ancestors: genesis.clone(),
                        transactions: vec![],
                        commit_votes: vec![],
                        system_messages: vec![],
                    },
                    &common::key(author),
                )
            })
            .collect();
        Fixture { committee, round1 }
    }

    fn block(&self, author: AuthorityIndex) -> Block {
        Block {
            epoch: 0,
            round: 2,
            author,
            timestamp_ms: 1,
            ancestors: self.round1.iter().map(|b| b.reference()).collect(),
            transactions: vec![Transaction(vec![7; 10].into())],
            commit_votes: vec![],
            system_messages: vec![],
        }
    }

    fn signed(&self, block: Block, signer: AuthorityIndex) -> Bytes {
        VerifiedBlock::sign(block, &common::key(signer))
            .serialized()
            .clone()
    }

    fn verify(&self, bytes: Bytes) -> Result<VerifiedBlock> {
        VerifiedBlock::verify(bytes, &self.committee, &limits())
    }

    fn verify_block(&self, block: Block) -> Result<VerifiedBlock> {
        let author = block.author.min(3);
        self.verify(self.signed(block, author))
    }
}

#[test]
fn a_valid_block_passes() {
    let f = Fixture::new();
    let block = f.verify_block(f.block(1)).unwrap();
    assert_eq!(block.round(), 2);
    assert_eq!(block.author(), 1);
}

#[test]
fn bad_signature() {
    let f = Fixture::new();
    // Signed by authority 3, claims authority 1.
    let forged = f.signed(f.block(1), 3);
    assert_eq!(
        f.verify(forged).unwrap_err(),
        TypesError::InvalidSignature {
            author: 1,
            round: 2
        }
    );
    // One flipped bit of the signature.
    let mut bytes = f.signed(f.block(1), 1).to_vec();
    *bytes.last_mut().unwrap() ^= 1;
    assert_eq!(
        f.verify(bytes.into()).unwrap_err(),
        TypesError::InvalidSignature {
            author: 1,
            round: 2
        }
    );
}

#[test]
fn author_not_in_committee() {
    let f = Fixture::new();
    let mut block = f.block(1);
    block.author = 4;
    assert_eq!(
        f.verify_block(block).unwrap_err(),
        TypesError::UnknownAuthority {
            author: 4,
            committee_size: 4
        }
    );
    let mut block = f.block(1);
    block.ancestors[3].author = 9;
    assert_eq!(
        f.verify_block(block).unwrap_err(),
        TypesError::UnknownAuthority {
            author: 9,
            committee_size: 4
        }
    );
}

#[test]
fn wrong_epoch() {
    let f = Fixture::new();
    let mut block = f.block(1);
    block.epoch = 3;
    assert_eq!(
        f.verify_block(block).unwrap_err(),
        TypesError::WrongEpoch {
            expected: 0,
            got: 3
        }
    );
}

#[test]
fn round_zero() {
    let f = Fixture::new();
    let mut block = f.block(1);
    block.round = 0;
    assert_eq!(
        f.verify_block(block).unwrap_err(),
        TypesError::GenesisRound {
            author: 1,
            round: 0,
            genesis_round: 0
        }
    );
    // Genesis blocks themselves are never accepted from the wire.
    let genesis = VerifiedBlock::genesis(&f.committee)[0].serialized().clone();
    assert_eq!(
        f.verify(genesis).unwrap_err(),
        TypesError::GenesisRound {
            author: 0,
            round: 0,
            genesis_round: 0
        }
    );
}

#[test]
fn ancestor_not_from_a_lower_round() {
    let f = Fixture::new();
    let mut block = f.block(1);
    block.ancestors[0].round = 2;
    assert_eq!(
        f.verify_block(block).unwrap_err(),
        TypesError::AncestorNotLowerRound {
            round: 2,
            ancestor_round: 2
        }
    );
}

#[test]
fn ancestor_author_repeated() {
    let f = Fixture::new();
    let mut block = f.block(1);
    block.ancestors[3] = BlockRef {
        round: 0,
        ..block.ancestors[2]
    };
    assert_eq!(
        f.verify_block(block).unwrap_err(),
        TypesError::DuplicateAncestorAuthor { author: 2 }
    );
}

#[test]
fn own_previous_block_missing() {
    let f = Fixture::new();
    let mut block = f.block(1);
    block.ancestors.remove(1);
    assert_eq!(
        f.verify_block(block).unwrap_err(),
        TypesError::MissingOwnPreviousBlock { author: 1 }
    );
}

#[test]
fn fewer_than_a_quorum_of_parents() {
    let f = Fixture::new();
    let mut block = f.block(1);
    // Own previous and one other from round 1, one from genesis: stake 2.
    block.ancestors[3] = VerifiedBlock::genesis(&f.committee)[3].reference();
    block.ancestors.remove(2);
    assert_eq!(
        f.verify_block(block).unwrap_err(),
        TypesError::InsufficientParentStake {
            parent_round: 1,
            stake: 2,
            quorum: 3
        }
    );
}

#[test]
fn trailing_bytes() {
    let f = Fixture::new();
    let mut bytes = f.signed(f.block(1), 1).to_vec();
    bytes.push(0);
    assert_eq!(
        f.verify(bytes.into()).unwrap_err(),
        TypesError::TrailingBytes { what: "block" }
    );
}

#[test]
fn truncated_bytes() {
    let f = Fixture::new();
    let bytes = f.signed(f.block(1), 1);
    for len in [0, 1, 30, bytes.len() - 1] {
        assert!(
            matches!(
                f.verify(bytes.slice(..len)).unwrap_err(),
                TypesError::Malformed { what: "block", .. }
            ),
            "length {len}"
        );
    }
}

#[test]
fn over_the_size_limits() {
    let f = Fixture::new();
    let mut block = f.block(1);
    block.transactions = vec![Transaction(vec![1].into()); 11];
    let bytes = f.signed(block, 1);
    let tight = BlockLimits {
        max_transactions_per_block: 10,
        ..limits()
    };
    assert_eq!(
        VerifiedBlock::verify(bytes.clone(), &f.committee, &tight).unwrap_err(),
        TypesError::TooManyTransactions { count: 11, max: 10 }
    );
    let mut block = f.block(1);
    block.system_messages = vec![common::summary().signature_message(&common::key(1)); 3];
    let few = BlockLimits {
        max_system_messages_per_block: 2,
        ..limits()
    };
    assert_eq!(
        VerifiedBlock::verify(f.signed(block, 1), &f.committee, &few).unwrap_err(),
        TypesError::TooManySystemMessages { count: 3, max: 2 }
    );
    let small = BlockLimits {
        max_block_bytes: bytes.len() - 1,
        ..limits()
    };
    assert_eq!(
        VerifiedBlock::verify(bytes.clone(), &f.committee, &small).unwrap_err(),
        TypesError::TooLarge {
            what: "block",
            size: bytes.len(),
            max: bytes.len() - 1
        }
    );
    // A length prefix that claims far more than the bytes hold is an error,
    // and allocates nothing close to what it claims.
    let mut huge = f.signed(f.block(1), 1).to_vec();
    let tx_count_at = 8 + 8 + 4 + 8 + 1 + 4 * 44;
    huge[tx_count_at..tx_count_at + 5].copy_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x07]);
    assert!(matches!(
        f.verify(huge.into()).unwrap_err(),
        TypesError::Malformed { .. }
    ));
}

#[test]
fn committee_validation() {
    let mut genesis = common::genesis();
    genesis.authorities[1].stake = 0;
    assert!(matches!(
        Committee::new(genesis),
        Err(TypesError::InvalidCommittee { .. })
    ));
    let mut genesis = common::genesis();
    genesis.authorities[2].index = 3;
    assert!(matches!(
        Committee::new(genesis),
        Err(TypesError::InvalidCommittee { .. })
    ));
    let mut genesis = common::genesis();
    genesis.authorities[3].public_key = genesis.authorities[0].public_key;
    assert!(matches!(
        Committee::new(genesis),
        Err(TypesError::InvalidCommittee { .. })
    ));
    let mut genesis = common::genesis();
    genesis.authorities.clear();
    assert!(matches!(
        Committee::new(genesis),
        Err(TypesError::InvalidCommittee { .. })
    ));
    let mut genesis = common::genesis();
    genesis.round_interval_ms = 0;
    assert!(matches!(
        Committee::new(genesis),
        Err(TypesError::InvalidCommittee { .. })
    ));
    // The identity point: a small-order key, which would accept signatures
    // nobody made.
    let mut genesis = common::genesis();
    let mut identity = [0u8; 32];
    identity[0] = 1;
    genesis.authorities[2].public_key = PublicKey(identity);
    assert_eq!(
        Committee::new(genesis).unwrap_err(),
        TypesError::InvalidCommittee {
            reason: "authority 2 has a small-order Ed25519 public key".into()
        }
    );
}

#[test]
fn a_batch_accepts_what_one_by_one_accepts() {
    let f = Fixture::new();
    let blocks: Vec<Bytes> = (0..4).map(|a| f.signed(f.block(a), a)).collect();
    let verified = VerifiedBlock::verify_batch(blocks.clone(), &f.committee, &limits()).unwrap();
    let one_by_one: Vec<_> = blocks
        .iter()
        .map(|b| f.verify(b.clone()).unwrap())
        .collect();
    assert_eq!(verified, one_by_one);
    assert_eq!(
        VerifiedBlock::verify_batch(vec![], &f.committee, &limits()).unwrap(),
        vec![]
    );
}

#[test]
fn a_batch_names_its_forged_block() {
    let f = Fixture::new();
    let mut blocks: Vec<Bytes> = (0..4).map(|a| f.signed(f.block(a), a)).collect();
    // Authority 3 signs a block that claims authority 2.
    blocks[2] = f.signed(f.block(2), 3);
    assert_eq!(
        VerifiedBlock::verify_batch(blocks.clone(), &f.committee, &limits()).unwrap_err(),
        TypesError::InvalidSignature {
            author: 2,
            round: 2
        }
    );
    // A structural fault is found before any signature is checked.
    blocks[3] = Bytes::from_static(b"not a block");
    assert!(matches!(
        VerifiedBlock::verify_batch(blocks, &f.committee, &limits()).unwrap_err(),
        TypesError::Malformed { .. }
    ));
}

#[test]
fn quorum_is_the_smallest_stake_above_two_thirds() {
    let with_stakes = |stakes: &[u64]| {
        Committee::new(common::genesis_with_stakes(stakes))
            .unwrap()
            .quorum_threshold()
    };

    assert_eq!(with_stakes(&[1]), 1);
    assert_eq!(with_stakes(&[1, 1, 1]), 3);
    assert_eq!(with_stakes(&[1, 1, 1, 1]), 3);
    assert_eq!(with_stakes(&[1; 7]), 5);
    assert_eq!(with_stakes(&[1, 2, 3]), 5);
    assert_eq!(with_stakes(&[10, 20, 30, 40]), 67);
}

#[test]
fn genesis_json_rejects_unknown_fields_and_defaults_gc_depth() {
    let json = common::genesis().to_json_pretty();
    let without_gc = json.replace("\"gc_depth_rounds\": 50,", "");
    assert_eq!(
        Genesis::from_json(&without_gc).unwrap().gc_depth_rounds,
        DEFAULT_GC_DEPTH_ROUNDS
    );
    let unknown = json.replace("\"epoch\": 0,", "\"epoch\": 0, \"shard\": 1,");
    let err = Genesis::from_json(&unknown).unwrap_err();
    assert!(err.to_string().contains("shard"), "{err}");
    let bad_key = json.replace("8a88e3dd", "zz88e3dd");
    assert!(Genesis::from_json(&bad_key).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Arbitrary bytes never panic the decoder.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let f = Fixture::new();
        let _ = f.verify(bytes.into());
    }

    /// Arbitrary bytes never panic the commit decoder, and a rejection is
    /// always the decoder's own error. Lengths are bounded by the input:
    /// a huge length prefix is refused, not allocated.
    #[test]
    fn arbitrary_commit_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        if let Err(err) = TrustedCommit::decode(bytes.into()) {
            prop_assert!(
                matches!(err, TypesError::Malformed { .. } | TypesError::TrailingBytes { .. }),
                "{err:?}"
            );
        }
    }

    /// Changing any one byte of a valid block makes it invalid: every byte is
    /// covered by the signature or by a structural check.
    #[test]
    fn any_single_byte_change_is_rejected(position in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let f = Fixture::new();
        let mut bytes = f.signed(f.block(1), 1).to_vec();
        let at = position.index(bytes.len());
        bytes[at] ^= flip;
        prop_assert!(f.verify(bytes.into()).is_err());
    }
}

/// A wrong checkpoint signature does not make its block invalid: it is the
/// certifier's to ignore.
#[test]
fn a_block_with_a_wrong_checkpoint_signature_is_valid() {
    let f = Fixture::new();
    let mut block = f.block(1);
    block.system_messages = vec![SystemMessage::CheckpointSignature {
        sequence: 3,
        summary_digest: Digest::of(b"anything"),
        signature: Signature([9; 64]),
    }];
    let verified = f.verify_block(block).unwrap();
    assert_eq!(verified.system_messages().len(), 1);
}

/// A certificate of the vector summary signed by `signers`.
fn certificate(signers: &[AuthorityIndex]) -> CertifiedCheckpoint {
    let summary = common::summary();
    CertifiedCheckpoint {
        summary,
        signatures: signers
            .iter()
            .map(|&a| (a, summary.sign(&common::key(a))))
            .collect(),
    }
}

#[test]
fn a_certificate_verifies_alone_and_every_flaw_has_its_error() {
    let committee = common::committee();
    certificate(&[0, 1, 2]).verify(&committee).unwrap();
    certificate(&[0, 1, 2, 3]).verify(&committee).unwrap();
    assert_eq!(
        certificate(&[0, 3]).verify(&committee).unwrap_err(),
        TypesError::CertificateBelowQuorum {
            sequence: 0,
            stake: 2,
            quorum: 3
        }
    );
    for signers in [&[2, 1, 0][..], &[0, 0, 1, 2]] {
        assert_eq!(
            certificate(signers).verify(&committee).unwrap_err(),
            TypesError::CertificateSigners { sequence: 0 }
        );
    }
    let mut forged = certificate(&[0, 1, 2]);
    forged.signatures[1].1 = forged.signatures[2].1;
    assert_eq!(
        forged.verify(&committee).unwrap_err(),
        TypesError::InvalidCheckpointSignature {
            sequence: 0,
            author: 1
        }
    );
    let mut other = certificate(&[0, 1, 2]);
    other.summary.last_commit += 1;
    assert_eq!(
        other.verify(&committee).unwrap_err(),
        TypesError::InvalidCheckpointSignature {
            sequence: 0,
            author: 0
        }
    );
    let mut stranger = certificate(&[0, 1, 2]);
    stranger.signatures.push((4, Signature([0; 64])));
    assert_eq!(
        stranger.verify(&committee).unwrap_err(),
        TypesError::UnknownAuthority {
            author: 4,
            committee_size: 4
        }
    );
    let mut later = certificate(&[0, 1, 2]);
    later.summary.epoch = 1;
    assert_eq!(
        later.verify(&committee).unwrap_err(),
        TypesError::WrongEpoch {
            expected: 0,
            got: 1
        }
    );
    // Its encoding decodes back to it.
    let encoded = certificate(&[0, 1, 2]).encode();
    assert_eq!(
        CertifiedCheckpoint::decode(&encoded).unwrap(),
        certificate(&[0, 1, 2])
    );
}
