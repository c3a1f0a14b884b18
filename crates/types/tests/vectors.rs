//! The test vectors of `docs/wire-format.md`, reproduced byte for byte.

mod common;

use dagstream_types::*;

const GENESIS_BCS: &str = "00000000000000000068e5cf8b01000064000000000000003200000000000000040000000001000000000000008a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c0100000001000000000000008139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394020000000100000000000000ed4928c628d1c2c6eae90338905995612959273a5c63f93636c14614ac8737d1030000000100000000000000ca93ac1705187071d67b83c7ff0efe8108e8ec4530575d7726879333dbdabe7c";
const COMMITTEE_DIGEST: &str = "cf1e8bc43d106afcb866a2ce5ecc281649d7cda4d02b0e5193020af44408a9c0";
const GENESIS_BLOCK_0: &str = "00000000000000000000000000000000000000000068e5cf8b0100000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000";
const GENESIS_BLOCK_DIGESTS: [&str; 4] = [
    "8c5b8b81f284b48cccec78b8bb8bca752aea0902988fb9acfef69be92515cbe5",
    "c1b69ec28a6e37aa0b550815f23cec84089dbfabf325984ce39560eafb8d0761",
    "3837f4de542ea4d65a55e263307dbaf23e11533fd33a96d2d78e05199270edb9",
    "8b9c31a4e6e331f0d8de2a213405b1c9926394ff493f7bedc942fa17930141be",
];
const BLOCK_BCS: &str = "00000000000000000100000000000000020000006968e5cf8b010000040000000000000000000000008c5b8b81f284b48cccec78b8bb8bca752aea0902988fb9acfef69be92515cbe5000000000000000001000000c1b69ec28a6e37aa0b550815f23cec84089dbfabf325984ce39560eafb8d07610000000000000000020000003837f4de542ea4d65a55e263307dbaf23e11533fd33a96d2d78e05199270edb90000000000000000030000008b9c31a4e6e331f0d8de2a213405b1c9926394ff493f7bedc942fa17930141be020568656c6c6f0964616773747265616d010700000000000000814eda849e7c5d7f6a49ac798dd09dffe16229545ff9b4fa77333741fe874c74010000000000000000008207ffdb7a67ad934fca0f4c5ce48a36bd2a2afcadd74b2b9daaa0b99495d446d958c33ca74132156dcfed2b8a0bf171a168a904fcc6e260cf1e1e28e426776f44987cdca09442770277c960fb33e68a7e81709bf8ab0149f2f77f1c03c2a703";
const BLOCK_HASH: &str = "f387fda8c796d4c65d62ae752f1fb620214e6627107b2fec70d68ec8936f32d3";
const SIGNATURE: &str = "6ea5fed30abf51350532a4ac398f7b6386ca1cf5d66fe9e6b17c8a2b0bdb608cc07d345ccb894c28d56c4e57446c2cc1275517a2e92f4359c72f575926fc000e";
const BLOCK_DIGEST: &str = "e1c2a2b5209cf47ba1c2a107eca3ae7bc7fd5703727dfeefcf97d01402fa8025";
const COMMIT_BCS: &str = "010000000000000000000000000000000000000000000000000000000000000000000000000000006968e5cf8b010000010000000000000002000000e1c2a2b5209cf47ba1c2a107eca3ae7bc7fd5703727dfeefcf97d01402fa802501010000000000000002000000e1c2a2b5209cf47ba1c2a107eca3ae7bc7fd5703727dfeefcf97d01402fa8025";
const CONTENT_DIGEST: &str = "f3600dcf5d1033a652335ae405b5acfb21160d9b5e2188db17cb673eadbd679e";
const SUMMARY_BCS: &str = "0000000000000000000000000000000001000000000000000100000000000000f3600dcf5d1033a652335ae405b5acfb21160d9b5e2188db17cb673eadbd679e00000000000000000000000000000000000000000000000000000000000000006968e5cf8b010000";
const SUMMARY_DIGEST: &str = "8207ffdb7a67ad934fca0f4c5ce48a36bd2a2afcadd74b2b9daaa0b99495d446";
const CHECKPOINT_SIGNATURE: &str = "d958c33ca74132156dcfed2b8a0bf171a168a904fcc6e260cf1e1e28e426776f44987cdca09442770277c960fb33e68a7e81709bf8ab0149f2f77f1c03c2a703";
const CERTIFICATE_BCS: &str = "0000000000000000000000000000000001000000000000000100000000000000f3600dcf5d1033a652335ae405b5acfb21160d9b5e2188db17cb673eadbd679e00000000000000000000000000000000000000000000000000000000000000006968e5cf8b0100000300000000e046068f8fce9a3fc04a53bd991a2286509f8d52c107b2dc0f46ad106e91aa764da3398560bca7f4bbeb6bf37c1ddf4436988129316c561ac864e82686cd7a010100000059364d3624f4851197d4decd9476d1cb5d02b2fde58f39477b56b0015b9b05fd6ed83686deacb18a67c158a616515cde8adbecd2da3676518d5e5fbc6a03dc0802000000d958c33ca74132156dcfed2b8a0bf171a168a904fcc6e260cf1e1e28e426776f44987cdca09442770277c960fb33e68a7e81709bf8ab0149f2f77f1c03c2a703";
const COMMIT_DIGEST: &str = "92127c0fe014880b442f77aad1a6068cbab45c6444b63dcd552c10f8b2a38441";

fn digest(hex: &str) -> Digest {
    hex.parse().unwrap()
}

#[test]
fn genesis_vector() {
    let committee = common::committee();
    assert_eq!(
        hex::encode(bcs::to_bytes(committee.genesis()).unwrap()),
        GENESIS_BCS
    );
    assert_eq!(committee.digest(), digest(COMMITTEE_DIGEST));
    let genesis = VerifiedBlock::genesis(&committee);
    assert_eq!(hex::encode(genesis[0].serialized()), GENESIS_BLOCK_0);
    for (block, expected) in genesis.iter().zip(GENESIS_BLOCK_DIGESTS) {
        assert_eq!(block.digest(), digest(expected));
    }
    // The JSON form decodes back to the same genesis.
    let json = committee.genesis().to_json_pretty();
    assert_eq!(Genesis::from_json(&json).unwrap(), common::genesis());
}

#[test]
fn block_vector() {
    let committee = common::committee();
    let block = common::block(&committee);
    assert_eq!(hex::encode(bcs::to_bytes(&block).unwrap()), BLOCK_BCS);
    assert_eq!(
        Digest::of(&hex::decode(BLOCK_BCS).unwrap()),
        digest(BLOCK_HASH)
    );
    let signed = VerifiedBlock::sign(block, &common::key(2));
    assert_eq!(hex::encode(signed.signed().signature.0), SIGNATURE);
    assert_eq!(
        hex::encode(signed.serialized()),
        format!("{BLOCK_BCS}{SIGNATURE}")
    );
    assert_eq!(signed.digest(), digest(BLOCK_DIGEST));

    // Decoding the vector bytes gives the same block, fully verified.
    let bytes = hex::decode(format!("{BLOCK_BCS}{SIGNATURE}")).unwrap();
    let received =
        VerifiedBlock::verify(bytes.into(), &committee, &BlockLimits::default()).unwrap();
    assert_eq!(received.signed(), signed.signed());
    assert_eq!(received.digest(), digest(BLOCK_DIGEST));
}

#[test]
fn checkpoint_vector() {
    let summary = common::summary();
    assert_eq!(summary.content_digest, digest(CONTENT_DIGEST));
    assert_eq!(hex::encode(summary.encode()), SUMMARY_BCS);
    assert_eq!(summary.digest(), digest(SUMMARY_DIGEST));
    let signature = summary.sign(&common::key(2));
    assert_eq!(hex::encode(signature.0), CHECKPOINT_SIGNATURE);
    let committee = common::committee();
    assert!(CheckpointSummary::verify_signature(
        &summary.digest(),
        2,
        &signature,
        &committee
    ));
    assert!(!CheckpointSummary::verify_signature(
        &summary.digest(),
        1,
        &signature,
        &committee
    ));
    let decoded = CheckpointSummary::decode(&hex::decode(SUMMARY_BCS).unwrap()).unwrap();
    assert_eq!(decoded, summary);
    let certificate = CertifiedCheckpoint {
        summary,
        signatures: (0..3).map(|a| (a, summary.sign(&common::key(a)))).collect(),
    };
    assert_eq!(hex::encode(certificate.encode()), CERTIFICATE_BCS);
    let decoded = CertifiedCheckpoint::decode(&hex::decode(CERTIFICATE_BCS).unwrap()).unwrap();
    assert_eq!(decoded, certificate);
    decoded.verify(&committee).unwrap();
    // The vector block carries exactly this signature.
    assert_eq!(
        common::block(&committee).system_messages,
        vec![SystemMessage::CheckpointSignature {
            sequence: 0,
            summary_digest: digest(SUMMARY_DIGEST),
            signature,
        }]
    );
}

#[test]
fn commit_vector() {
    let committee = common::committee();
    let block = VerifiedBlock::sign(common::block(&committee), &common::key(2));
    let commit = TrustedCommit::new(common::commit(&block));
    assert_eq!(hex::encode(commit.serialized()), COMMIT_BCS);
    assert_eq!(commit.digest(), digest(COMMIT_DIGEST));
    let decoded = TrustedCommit::decode(hex::decode(COMMIT_BCS).unwrap().into()).unwrap();
    assert_eq!(decoded.commit(), commit.commit());
}

/// The document other-language clients read must carry exactly these bytes.
#[test]
fn wire_format_document_carries_the_vectors() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/wire-format.md"
    ))
    .unwrap();
    let doc: String = doc.split_whitespace().collect();
    let mut expected = vec![
        GENESIS_BCS,
        COMMITTEE_DIGEST,
        GENESIS_BLOCK_0,
        BLOCK_BCS,
        BLOCK_HASH,
        SIGNATURE,
        BLOCK_DIGEST,
        COMMIT_BCS,
        COMMIT_DIGEST,
        CONTENT_DIGEST,
        SUMMARY_BCS,
        SUMMARY_DIGEST,
        CHECKPOINT_SIGNATURE,
        CERTIFICATE_BCS,
    ];
    expected.extend(GENESIS_BLOCK_DIGESTS);
    for value in expected {
        assert!(doc.contains(value), "docs/wire-format.md lacks {value}");
    }
}
