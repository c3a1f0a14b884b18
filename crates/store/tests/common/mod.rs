//! Test data shared by the integration tests: real signed blocks and commits.

use dagstream_types::{Block, Commit, Digest, Transaction, TrustedCommit, VerifiedBlock};
use ed25519_dalek::SigningKey;

/// Size of the committee the test blocks come from.
pub const AUTHORS: u32 = 4;

/// A block of `round` by `author`, signed with the author's test key, with one
/// transaction of `payload` bytes. Distinct `salt`s give distinct blocks for
/// the same slot.
pub fn block(round: u64, author: u32, payload: usize, salt: u8) -> VerifiedBlock {
    assert!(author < AUTHORS);
    let key = SigningKey::from_bytes(&[author as u8 + 1; 32]);
    let fill = (round as u8) ^ (author as u8) ^ salt;
    VerifiedBlock::sign(
        Block {
            epoch: 0,
            round,
            author,
            timestamp_ms: 1_700_000_000_000 + round * 100,
            ancestors: vec![],
            transactions: vec![Transaction(vec![fill; payload].into())],
            commit_votes: vec![],
            system_messages: vec![],
        },
        &key,
    )
}

/// Commit `index` of `blocks`, the last of which is its leader.
pub fn commit(index: u64, previous_digest: Digest, blocks: &[VerifiedBlock]) -> TrustedCommit {
    let leader = blocks.last().expect("a commit has a leader");
    TrustedCommit::new(Commit {
        index,
        previous_digest,
        timestamp_ms: leader.timestamp_ms(),
        leader: leader.reference(),
        blocks: blocks.iter().map(|b| b.reference()).collect(),
    })
}
