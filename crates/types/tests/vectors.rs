//! The test vectors of `docs/wire-format.md`, reproduced byte for byte.

mod common;

use dagstream_types::*;

const GENESIS_BCS: &str = "00000000000000000068e5cf8b01000064000000000000003200000000000000040000000001000000000000008a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c0100000001000000000000008139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394020000000100000000000000ed4928c628d1c2c6eae90338905995612959273a5c63f93636c14614ac8737d1030000000100000000000000ca93ac1705187071d67b83c7ff0efe8108e8ec4530575d7726879333dbdabe7c";
const COMMITTEE_DIGEST: &str = "cf1e8bc43d106afcb866a2ce5ecc281649d7cda4d02b0e5193020af44408a9c0";
const GENESIS_BLOCK_0: &str = "00000000000000000000000000000000000000000068e5cf8b01000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000";
const GENESIS_BLOCK_DIGESTS: [&str; 4] = [
    "fd2ee160039d13e048094abcf5cea52e00293efb6e1828909944e8ffa598465d",
    "b0a8ecf4ff4ef64de5307ec170268b2c3eb4017c7332a08870c89ebdb4008798",
    "bd268ec2111ee3be1a7e0462c9d2cee44266e01ba6042a59252b8f8819518f4e",
    "65d136e421ddda4b9b8fa41880207c033a5dba6e2f88f4dcddea9092a32d01df",
];
const BLOCK_BCS: &str = "00000000000000000100000000000000020000006968e5cf8b01000004000000000000000000000000fd2ee160039d13e048094abcf5cea52e00293efb6e1828909944e8ffa598465d000000000000000001000000b0a8ecf4ff4ef64de5307ec170268b2c3eb4017c7332a08870c89ebdb4008798000000000000000002000000bd268ec2111ee3be1a7e0462c9d2cee44266e01ba6042a59252b8f8819518f4e00000000000000000300000065d136e421ddda4b9b8fa41880207c033a5dba6e2f88f4dcddea9092a32d01df020568656c6c6f0964616773747265616d010700000000000000814eda849e7c5d7f6a49ac798dd09dffe16229545ff9b4fa77333741fe874c74";
const BLOCK_HASH: &str = "a4215eadbc7b018c621eaaaa99be359fc5c200fa6b6189897a3cad89a2de2d5b";
const SIGNATURE: &str = "64ec26206a28d51ca9eefb79ae74635ab075ca1a371c3aeaa91ebd4b7469be7fa2ee18860226f1dcff2285022b74b89595dadec64ffa072a537b123376ae1f05";
const BLOCK_DIGEST: &str = "2e9aa8e1c71a2d47a96a2d04381afe1d8fda486c32f749b7f50c68e17ac2e6a6";
const COMMIT_BCS: &str = "010000000000000000000000000000000000000000000000000000000000000000000000000000006968e5cf8b0100000100000000000000020000002e9aa8e1c71a2d47a96a2d04381afe1d8fda486c32f749b7f50c68e17ac2e6a6010100000000000000020000002e9aa8e1c71a2d47a96a2d04381afe1d8fda486c32f749b7f50c68e17ac2e6a6";
const COMMIT_DIGEST: &str = "bee2829f76c0cf046e4246432646bd320f1fd2a96291b3802a7acec844304601";

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
    ];
    expected.extend(GENESIS_BLOCK_DIGESTS);
    for value in expected {
        assert!(doc.contains(value), "docs/wire-format.md lacks {value}");
    }
}
