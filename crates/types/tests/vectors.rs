//! The test vectors of `docs/wire-format.md`, reproduced byte for byte.

mod common;

use dagstream_types::*;

const GENESIS_BCS: &str = "00000000000000000068e5cf8b01000064000000000000003200000000000000040000000001000000000000008a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c0100000001000000000000008139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394020000000100000000000000ed4928c628d1c2c6eae90338905995612959273a5c63f93636c14614ac8737d1030000000100000000000000ca93ac1705187071d67b83c7ff0efe8108e8ec4530575d7726879333dbdabe7c01933643cf2cf6a7cea8dcda78309a76903893d69e9382ef786bec5c133beab03c7ce8687ba554ad8b2f8e911f7906a75011ae299d50d4d7743fccaf7eb04678e093515a2f13e4d9d06b9bc2364c0d9a796aa683b81a1a47af8aa378698757fcfc0491ab26a9f33f247389c86fe4c974f139c7b4b569574643be2ee88008163456cc2d1cd71e8132c7f80b2ffc6810066fc6028f02518f0138e01dde0944a82c9c73932ea12ddc7aee62510b4cfa9ce677307e29a887fe04bc8ac327634d64227ba0b4b2a5b17aed1829b7b2482966bdc703ba8a569d43995c69d8ae4a9f6ccfdd74738f017e951005a48c5a9752f1a1cd110acbe9149d994653444bf62ee73f3c4d36d5b963f8fd07b12ad2c2cf03e00e271491f8b4f54910decd4d74b0473a62cfa86bcd20cba66580252de378a25ca8a0eed41d3ac078577a13064ab2e5c8ea980954f209bf991e521840dc0df7cf059713ef65d48802b5777b5e6362bd9c0fc37bbc33d40fcd74f5d7680406b8de861dbc0b531bba4024c06bbfd654b6a42a2381d4ba7403f2d1e50a889f45de664f3caf1be13437f6a4d6a8dbcf69c9398634de4276e98268f943968c830c99a7f59c0cc063e74447c5110ff3a1b93cbb5c9e6687b16dc4f48c6b9f58e1ee0c1efb525f38f765fbf90fbe10f646d09c39ca43";
const COMMITTEE_DIGEST: &str = "901a313d72944e9463f55c0195b03782aa5b8c6a3220e7ff6df9d76bd4d1a8de";
const GENESIS_BLOCK_0: &str = "00000000000000000000000000000000000000000068e5cf8b0100000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000";
const GENESIS_BLOCK_DIGESTS: [&str; 4] = [
    "8c5b8b81f284b48cccec78b8bb8bca752aea0902988fb9acfef69be92515cbe5",
    "c1b69ec28a6e37aa0b550815f23cec84089dbfabf325984ce39560eafb8d0761",
    "3837f4de542ea4d65a55e263307dbaf23e11533fd33a96d2d78e05199270edb9",
    "8b9c31a4e6e331f0d8de2a213405b1c9926394ff493f7bedc942fa17930141be",
];
const BLOCK_BCS: &str = "00000000000000000100000000000000020000006968e5cf8b010000040000000000000000000000008c5b8b81f284b48cccec78b8bb8bca752aea0902988fb9acfef69be92515cbe5000000000000000001000000c1b69ec28a6e37aa0b550815f23cec84089dbfabf325984ce39560eafb8d07610000000000000000020000003837f4de542ea4d65a55e263307dbaf23e11533fd33a96d2d78e05199270edb90000000000000000030000008b9c31a4e6e331f0d8de2a213405b1c9926394ff493f7bedc942fa17930141be020568656c6c6f0964616773747265616d010700000000000000814eda849e7c5d7f6a49ac798dd09dffe16229545ff9b4fa77333741fe874c74020000000000000000009ed8af919a428c806dc3460925628e4ac81b63e93042d4f297ca6f490c4904f7b3553dc657b6cc2041c6ac59dc53f1ccbacf1874d67e052f5868c3a043640db01dfa3b6ad87f13d13fefb0d1dea9f1f3c506755ab0cfea0384e112c6f04cc5040101000000000000000186df9005dfe4f2b3d03865d3a7e92918b3a86b511303318184b10f2ff404d5338583772fb9aef368876bb84f22b65655";
const BLOCK_HASH: &str = "f82e125d6b1821613545c4bc25890c07b59e6d16a0621fa8ea62c67db52192a9";
const SIGNATURE: &str = "2ba3ce88d346435eca9cd38f7a7910128b470a444745989f3014a23e08e94c5f57797e15d7a40a43925aaacf4fe1c0b1d22cc6147cb5d51f755f6b00d5635c04";
const BLOCK_DIGEST: &str = "c7ee2d33f7d2c268178dac1bcd3da0b53ce3bf7bf8b0a9f0cec51d9ab1bd0170";
const COMMIT_BCS: &str = "010000000000000000000000000000000000000000000000000000000000000000000000000000006968e5cf8b010000010000000000000002000000c7ee2d33f7d2c268178dac1bcd3da0b53ce3bf7bf8b0a9f0cec51d9ab1bd017001010000000000000002000000c7ee2d33f7d2c268178dac1bcd3da0b53ce3bf7bf8b0a9f0cec51d9ab1bd0170";
const CONTENT_DIGEST: &str = "f3600dcf5d1033a652335ae405b5acfb21160d9b5e2188db17cb673eadbd679e";
const SUMMARY_BCS: &str = "0000000000000000000000000000000001000000000000000100000000000000f3600dcf5d1033a652335ae405b5acfb21160d9b5e2188db17cb673eadbd679e00000000000000000000000000000000000000000000000000000000000000006968e5cf8b01000000";
const SUMMARY_DIGEST: &str = "9ed8af919a428c806dc3460925628e4ac81b63e93042d4f297ca6f490c4904f7";
const CHECKPOINT_SIGNATURE: &str = "b3553dc657b6cc2041c6ac59dc53f1ccbacf1874d67e052f5868c3a043640db01dfa3b6ad87f13d13fefb0d1dea9f1f3c506755ab0cfea0384e112c6f04cc504";
const CERTIFICATE_BCS: &str = "0000000000000000000000000000000001000000000000000100000000000000f3600dcf5d1033a652335ae405b5acfb21160d9b5e2188db17cb673eadbd679e00000000000000000000000000000000000000000000000000000000000000006968e5cf8b010000000300000000bd296c84e86265a7d11de031dbda090045d59dea46c4d6d4872cbb48d14837ef860cca3e643c93ca641e53a8fab0ca9af0906256fe5e4a518ee7bf872dc3440101000000a78c176a58e8b9fee4426109a03109ce7c2446fc6c1c2b65b8448505f0c86496813de67573f80f5048d5aeb60d0937cbc0b7065f879e8424f2dc176404da190102000000b3553dc657b6cc2041c6ac59dc53f1ccbacf1874d67e052f5868c3a043640db01dfa3b6ad87f13d13fefb0d1dea9f1f3c506755ab0cfea0384e112c6f04cc504";
const PARTIAL: &str = "86df9005dfe4f2b3d03865d3a7e92918b3a86b511303318184b10f2ff404d5338583772fb9aef368876bb84f22b65655";
const RANDOMNESS_SIGNATURE: &str = "8be4359259ecf91b16884a4c5ac2ad14d4dd86a4a41df91dbe42a9b36f1e6e86e531e2c5fa62b649e857f4f3986993d0";
const RANDOMNESS_VALUE: &str = "993ca78d80a2650db708cd234976b85792d08044e1dfa4bb9c88553b93d0371d";
const RANDOMNESS_OUTPUTS: &str = "0101000000000000008be4359259ecf91b16884a4c5ac2ad14d4dd86a4a41df91dbe42a9b36f1e6e86e531e2c5fa62b649e857f4f3986993d0";
const RANDOMNESS_CONTENTS: &str =
    "30687ed467246495bd4d149362759d01f1ccbaf70a4d308330462e58b6b0d880";
const GROUP_KEY: &str = "933643cf2cf6a7cea8dcda78309a76903893d69e9382ef786bec5c133beab03c7ce8687ba554ad8b2f8e911f7906a75011ae299d50d4d7743fccaf7eb04678e093515a2f13e4d9d06b9bc2364c0d9a796aa683b81a1a47af8aa378698757fcfc";
const COMMIT_DIGEST: &str = "6fa36050311ee76a82053dc4b99361411611f1c5d566c3a9c8a4f3a3d9572e24";

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
    // The vector block carries exactly this signature, then the partial.
    assert_eq!(
        common::block(&committee).system_messages,
        vec![
            SystemMessage::CheckpointSignature {
                sequence: 0,
                summary_digest: digest(SUMMARY_DIGEST),
                signature,
            },
            common::partial(),
        ]
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

#[test]
fn randomness_vector() {
    let committee = common::committee();
    let keys = committee.genesis().randomness.as_ref().unwrap();
    assert_eq!(hex::encode(keys.group_key.0), GROUP_KEY);
    let SystemMessage::RandomnessPartial { round, shares } = common::partial() else {
        unreachable!("the vector partial")
    };
    assert_eq!((round, shares.len()), (1, 1));
    assert_eq!(hex::encode(shares[0].0), PARTIAL);
    let output = common::randomness();
    assert_eq!(hex::encode(output.signature.0), RANDOMNESS_SIGNATURE);
    assert_eq!(output.value(), digest(RANDOMNESS_VALUE));
    assert_eq!(
        hex::encode(randomness::encode_outputs(&[output])),
        RANDOMNESS_OUTPUTS
    );
    assert_eq!(
        checkpoint::extend_randomness(&Digest::ZERO, &output),
        digest(RANDOMNESS_CONTENTS)
    );
    // The vector signature verifies under the group key, and is what
    // partials of any quorum interpolate to.
    let verifier = committee.randomness().unwrap();
    verifier.verify(&output).unwrap();
    let dealing = common::dealing();
    let hashed = randomness::HashedRound::new(0, 1);
    let partials: Vec<Vec<BlsSignature>> = (0..4u64)
        .map(|share| dealing.sign_shares(&hashed, share..share + 1))
        .collect();
    assert_eq!(partials[2], shares);
    let given: Vec<(AuthorityIndex, &[BlsSignature])> = [3u32, 2, 0]
        .iter()
        .map(|&a| (a, partials[a as usize].as_slice()))
        .collect();
    assert_eq!(verifier.aggregate(&hashed, &given).output, Some(output));
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
        PARTIAL,
        RANDOMNESS_SIGNATURE,
        RANDOMNESS_VALUE,
        RANDOMNESS_OUTPUTS,
        RANDOMNESS_CONTENTS,
        GROUP_KEY,
    ];
    expected.extend(GENESIS_BLOCK_DIGESTS);
    for value in expected {
        assert!(doc.contains(value), "docs/wire-format.md lacks {value}");
    }
}

const NEXT_EPOCH_BCS: &str = "78000000000000000100000000000000e096e5cf8b010000640000000000000032000000000000000400000000020000000000000017cb79fb2b4120f2b1ec65e4198d6e08b28e813feb01e4a400839b85e18080ce010000000100000000000000eb2cf13bf7ae3a5f614168a1fb09272d39771ec4b8523727815e466caf8ee163020000000100000000000000a6d2455ea3a5771aba9fcb037924114c92f9f325049f6b4269e739d9048bb86903000000010000000000000068f4b6017d0f876a55c80a82b8388a54aad264d367269e2de8be079c935b5f9600";
const NEXT_EPOCH_DIGEST: &str = "4861bb48cb4a278df6730f3737753dd3d970ac538d97e596f1a84b77bf4b15ee";
const END_OF_EPOCH_SUMMARY_BCS: &str = "00000000000000000100000000000000010000000000000001000000000000004861bb48cb4a278df6730f3737753dd3d970ac538d97e596f1a84b77bf4b15ee9ed8af919a428c806dc3460925628e4ac81b63e93042d4f297ca6f490c4904f76968e5cf8b01000002";
const END_OF_EPOCH_SUMMARY_DIGEST: &str =
    "4b1bd29080146f2ed62ff761cc21d531bc8e81edc1d74ad803767430117775fd";
/// The hand-off's signatures, between its summary and its next epoch.
const HAND_OFF_SIGNATURES: &str = "03000000001f731f7785c99571a4d007b552627c7180209c3e278720f30b94c36b7f2405c8b8001a58bd684c290b6e30b94a073e1c001688bdf1428662617301f9efcbc70f0100000056391d8c8579d7cdb3bed6b2a5fb39fdecdf515353f72861c16edab487bd7b4f6042471b04ce5ace9e5c895a27e64579ee95238106e236b3ffa0ced25e37510103000000a36fc4436a876940974ccdda8b29f6fdb5856d2a3a7a06dc1f76749a263ab08267d1b411af3a11da196c35e83ffeec33948e6650bfc9b808e5d80d4d46a5e802";

#[test]
fn epoch_change_vectors() {
    assert_eq!(
        hex::encode(bcs::to_bytes(&SystemMessage::EndOfPublish).unwrap()),
        "02"
    );
    let next = common::next_epoch();
    assert_eq!(hex::encode(next.encode()), NEXT_EPOCH_BCS);
    assert_eq!(next.digest(), digest(NEXT_EPOCH_DIGEST));
    let last = common::summary();
    let summary = CheckpointSummary::end_of_epoch(&last, next.digest());
    assert_eq!(hex::encode(summary.encode()), END_OF_EPOCH_SUMMARY_BCS);
    assert_eq!(summary.digest(), digest(END_OF_EPOCH_SUMMARY_DIGEST));
    let change = common::epoch_change();
    let bytes = hex::decode(format!(
        "{END_OF_EPOCH_SUMMARY_BCS}{HAND_OFF_SIGNATURES}{NEXT_EPOCH_BCS}"
    ))
    .unwrap();
    assert_eq!(change.encode(), bytes);
    // Decoding the vector bytes gives a hand-off that the vector
    // committee verifies after its checkpoint 0, to the next committee.
    let decoded = EpochChange::decode(&bytes).unwrap();
    let committee = decoded.verify(&common::committee(), &last).unwrap();
    assert_eq!((committee.epoch(), committee.genesis_round()), (1, 120));
    assert_eq!(committee.total_stake(), 5);
    assert_eq!(
        committee.digest(),
        Digest::of(&bcs::to_bytes(&next.committee).unwrap())
    );
}
