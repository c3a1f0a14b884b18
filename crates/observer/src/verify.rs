//! Verification of commit-stream batches, free of I/O.
//!
//! A batch proves itself with little work: the observer rebuilds each
//! commit from the received blocks and its *own* previous commit, so the
//! digests chain from what it already trusts; then the certifier blocks,
//! the only ones whose signatures are checked, must carry votes of quorum
//! stake for the digest of the batch's last commit. Tampering with any
//! block, or any link of the chain, changes that digest and breaks the
//! quorum. A batch that fails any check is rejected whole.

use crate::{ObserverError, Result};
use bytes::Bytes;
use dagstream_proto::v1::{CommitStreamResponse, CommittedSubDagData};
use dagstream_types::{
    BlockLimits, BlockRef, Commit, CommitIndex, CommittedSubDag, Committee, Digest, Stake,
    TrustedCommit, TypesError, VerifiedBlock,
};
use std::collections::HashSet;

/// Verifies a commit-stream response that extends `previous` (`None`: the
/// chain starts at commit 1). Returns its commits, ready to persist.
pub fn verify_commit_batch(
    committee: &Committee,
    limits: &BlockLimits,
    previous: Option<&TrustedCommit>,
    response: &CommitStreamResponse,
) -> Result<Vec<CommittedSubDag>> {
    let mut tip = previous.cloned();
    let mut verified = Vec::with_capacity(response.commits.len());
    for data in &response.commits {
        let sub_dag = rebuild(limits, tip.as_ref(), data)?;
        tip = Some(sub_dag.commit.clone());
        verified.push(sub_dag);
    }
    let Some(last) = verified.last() else {
        return Ok(verified);
    };
    check_certificate(
        committee,
        limits,
        last.commit.reference().index,
        last.commit.digest(),
        &response.certifier_blocks,
    )?;
    Ok(verified)
}

/// Rebuilds one commit on top of `previous` from what was received.
fn rebuild(
    limits: &BlockLimits,
    previous: Option<&TrustedCommit>,
    data: &CommittedSubDagData,
) -> Result<CommittedSubDag> {
    let index = data.commit_index;
    let expected_after = previous.map_or(0, |c| c.index());
    if index != expected_after + 1 {
        return Err(ObserverError::BrokenChain {
            expected_after,
            got: index,
        });
    }
    let blocks = data
        .blocks
        .iter()
        .map(|bytes| decode(limits, bytes.clone()))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|source| ObserverError::MalformedBlock { index, source })?;
    let refs: Vec<BlockRef> = blocks.iter().map(|b| b.reference()).collect();
    let Some(&leader) = refs.last() else {
        return Err(ObserverError::EmptySubDag { index });
    };
    let named = data
        .leader
        .as_ref()
        .map(|l| (l.round, l.authority_index, l.digest.as_ref()));
    if named
        != Some((
            leader.round,
            leader.author,
            leader.digest.as_bytes().as_slice(),
        ))
    {
        return Err(ObserverError::LeaderMismatch { index });
    }
    if !refs.windows(2).all(|w| w[0] < w[1]) {
        return Err(ObserverError::UnorderedSubDag { index });
    }
    let leader_timestamp = blocks.last().map_or(0, |b| b.timestamp_ms());
    let expected = leader_timestamp.max(previous.map_or(0, |c| c.timestamp_ms()));
    if data.timestamp_ms != expected {
        return Err(ObserverError::WrongTimestamp {
            index,
            expected,
            got: data.timestamp_ms,
        });
    }
    let commit = TrustedCommit::new(Commit {
        index,
        previous_digest: previous.map_or(Digest::ZERO, |c| c.digest()),
        timestamp_ms: data.timestamp_ms,
        leader,
        blocks: refs,
    });
    Ok(CommittedSubDag { commit, blocks })
}

/// Blocks inside a certified batch are covered by the hash chain: they are
/// decoded and bounded in size, but their signatures are not checked.
fn decode(limits: &BlockLimits, bytes: Bytes) -> std::result::Result<VerifiedBlock, TypesError> {
    if bytes.len() > limits.max_block_bytes {
        return Err(TypesError::TooLarge {
            what: "block",
            size: bytes.len(),
            max: limits.max_block_bytes,
        });
    }
    VerifiedBlock::decode_trusted(bytes)
}

/// The certifier blocks must be fully valid and their votes for commit
/// `index` with digest `digest` must carry a quorum.
fn check_certificate(
    committee: &Committee,
    limits: &BlockLimits,
    index: CommitIndex,
    digest: Digest,
    certifiers: &[Bytes],
) -> Result<()> {
    if certifiers.is_empty() {
        return Err(ObserverError::MissingCertificate { index });
    }
    let mut voters = HashSet::new();
    let mut stake: Stake = 0;
    let mut other_digest = None;
    for bytes in certifiers {
        let block = VerifiedBlock::verify(bytes.clone(), committee, limits)
            .map_err(|source| ObserverError::BadCertifier { source })?;
        for vote in block.commit_votes().iter().filter(|v| v.index == index) {
            if vote.digest == digest {
                if voters.insert(block.author()) {
                    stake += committee.stake(block.author());
                }
            } else {
                other_digest = Some(vote.digest);
            }
        }
    }
    if committee.reached_quorum(stake) {
        return Ok(());
    }
    match other_digest {
        Some(certified) => Err(ObserverError::DigestMismatch {
            index,
            computed: digest,
            certified,
        }),
        None => Err(ObserverError::MissingQuorum {
            index,
            stake,
            quorum: committee.quorum_threshold(),
        }),
    }
}
