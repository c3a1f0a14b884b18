//! Verification of everything received: block-stream blocks
//! ([`verify_blocks`]: every signature, in batches, in parallel off the
//! runtime) and
//! commit-stream batches ([`verify_commit_batch`], free of I/O).
//!
//! A batch proves itself with little work: the observer rebuilds each
//! commit from the received blocks and its *own* previous commit, so the
//! digests chain from what it already trusts; then the certifier blocks,
//! the only ones whose signatures are checked, must carry votes of quorum
//! stake for the digest of the batch's last commit. Tampering with any
//! block, or any link of the chain, changes that digest and breaks the
//! quorum. The randomness sent with commits is checked against the group
//! key, all of a batch's signatures in one check. A batch that fails any
//! check is rejected whole.

use crate::sequencer::ReceivedSubDag;
use crate::{ObserverError, Result};
use bytes::Bytes;
use dagstream_proto::v1::{CommitStreamResponse, CommittedSubDagData};
use dagstream_publisher::Offload;
use dagstream_types::randomness::decode_outputs;
use dagstream_types::{
    BlockLimits, BlockRef, Commit, CommitIndex, CommittedSubDag, Committee, Digest,
    RandomnessOutput, StakeAggregator, TrustedCommit, TypesError, VerifiedBlock,
};
use std::sync::Arc;

/// Most parallel chunks a block batch is verified in: enough to keep four
/// cores busy, few enough that restoring the batch's order stays free.
const MAX_VERIFY_CHUNKS: usize = 4;
/// Fewest blocks worth a chunk of their own. A batch signature check costs
/// about half as much per signature at 32 as one by one, and a third at a
/// few hundred; smaller chunks would buy latency with CPU.
const MIN_CHUNK_BLOCKS: usize = 32;
/// Fewest blocks of a commit batch per decoding thread: starting a thread
/// costs tens of microseconds, 256 blocks take milliseconds to decode and
/// hash. A live batch (one commit, a hundred blocks) stays on one thread.
pub(crate) const MIN_PARALLEL_BLOCKS: usize = 256;
/// The name of the threads that decode a large commit batch.
const DECODE_THREAD: &str = "dagstream-decode";

/// Verifies received blocks in full (signature, limits, structure) on the
/// blocking pool (or where `offload` says), in parallel chunks whose signatures are checked in
/// batches, and returns them in their order.
pub async fn verify_blocks(
    committee: &Arc<Committee>,
    limits: BlockLimits,
    blocks: Vec<Bytes>,
    offload: Offload,
) -> std::result::Result<Vec<VerifiedBlock>, TypesError> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunks = (blocks.len() / MIN_CHUNK_BLOCKS).clamp(1, MAX_VERIFY_CHUNKS.min(cores));
    let chunk_len = blocks.len().div_ceil(chunks).max(1);
    let tasks: Vec<_> = blocks
        .chunks(chunk_len)
        .map(|chunk| {
            let chunk = chunk.to_vec();
            let committee = committee.clone();
            offload.spawn(move || VerifiedBlock::verify_batch(chunk, &committee, &limits))
        })
        .collect();
    let mut verified = Vec::with_capacity(blocks.len());
    for task in tasks {
        verified.extend(task.await.expect("block verification does not panic")?);
    }
    Ok(verified)
}

/// Verifies a commit-stream response that extends `previous` (`None`: the
/// chain starts at commit 1). Returns its commits, ready to persist.
pub fn verify_commit_batch(
    committee: &Committee,
    limits: &BlockLimits,
    previous: Option<&TrustedCommit>,
    response: &CommitStreamResponse,
) -> Result<Vec<ReceivedSubDag>> {
    let mut tip = previous.cloned();
    let mut verified = Vec::with_capacity(response.commits.len());
    let decoded = decode_commits(limits, &response.commits);
    for (data, blocks) in response.commits.iter().zip(decoded) {
        let sub_dag = rebuild(tip.as_ref(), data, blocks)?;
        tip = Some(sub_dag.commit.clone());
        let randomness = data
            .randomness
            .as_ref()
            .map(|bytes| {
                decode_outputs(bytes).map_err(|source| ObserverError::InvalidRandomness {
                    index: data.commit_index,
                    source,
                })
            })
            .transpose()?;
        verified.push(ReceivedSubDag {
            sub_dag,
            randomness,
        });
    }
    let Some(last) = verified.last().map(|r| &r.sub_dag) else {
        return Ok(verified);
    };
    check_certificate(
        committee,
        limits,
        last.commit.reference().index,
        last.commit.digest(),
        &response.certifier_blocks,
    )?;
    check_randomness(committee, &verified)?;
    Ok(verified)
}

/// Every signature received is the group's on its round: two pairings for
/// the whole batch. Which commit generates which rounds is the
/// sequencer's check, which needs the chain's tally.
fn check_randomness(committee: &Committee, received: &[ReceivedSubDag]) -> Result<()> {
    let outputs: Vec<RandomnessOutput> = received
        .iter()
        .flat_map(|r| r.randomness.iter().flatten().copied())
        .collect();
    if outputs.is_empty() {
        return Ok(());
    }
    let index_of = |round: u64| {
        received
            .iter()
            .find(|r| r.randomness.iter().flatten().any(|o| o.round == round))
            .map_or(0, |r| r.sub_dag.index())
    };
    let Some(verifier) = committee.randomness() else {
        let first = outputs[0].round;
        return Err(ObserverError::RandomnessMismatch {
            index: index_of(first),
            expected: vec![],
            got: vec![first],
        });
    };
    verifier
        .verify_batch(&outputs)
        .map_err(|source| match source {
            TypesError::InvalidRandomness { round } => ObserverError::InvalidRandomness {
                index: index_of(round),
                source,
            },
            source => ObserverError::InvalidRandomness { index: 0, source },
        })
}

/// Rebuilds one commit on top of `previous` from what was received.
fn rebuild(
    previous: Option<&TrustedCommit>,
    data: &CommittedSubDagData,
    blocks: std::result::Result<Vec<VerifiedBlock>, TypesError>,
) -> Result<CommittedSubDag> {
    let index = data.commit_index;
    let blocks = blocks.map_err(|source| ObserverError::MalformedBlock { index, source })?;
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
    let leader_timestamp = blocks.last().map_or(0, |b| b.timestamp_ms());
    let expected = leader_timestamp.max(previous.map_or(0, |c| c.timestamp_ms()));
    let wrong_timestamp = || ObserverError::WrongTimestamp {
        index,
        expected,
        got: data.timestamp_ms,
    };
    let commit = Commit {
        index,
        previous_digest: previous.map_or(Digest::ZERO, |c| c.digest()),
        timestamp_ms: data.timestamp_ms,
        leader,
        blocks: refs,
    };
    commit.check_follows(previous).map_err(|err| match err {
        TypesError::CommitBlocksUnordered { index } => ObserverError::UnorderedSubDag { index },
        TypesError::CommitTimeGoesBack { .. } => wrong_timestamp(),
        // A gap; the digest link holds by construction.
        _ => ObserverError::BrokenChain {
            expected_after: previous.map_or(0, |c| c.index()),
            got: index,
        },
    })?;
    if data.timestamp_ms != expected {
        return Err(wrong_timestamp());
    }
    Ok(CommittedSubDag {
        commit: TrustedCommit::new(commit),
        blocks,
    })
}

/// Each commit's blocks, decoded and hashed: on several threads for a large
/// batch (a catch-up batch, a bundle of the archive), where this is most of
/// the work. The commits' blocks are independent of each other; only
/// linking the commits, after, goes in order. Errors stay with their
/// commit, so the batch fails at the same commit, with the same error, as
/// when decoding in order.
fn decode_commits(
    limits: &BlockLimits,
    commits: &[CommittedSubDagData],
) -> Vec<std::result::Result<Vec<VerifiedBlock>, TypesError>> {
    let decode_all = |commits: &[CommittedSubDagData]| {
        commits
            .iter()
            .map(|data| {
                data.blocks
                    .iter()
                    .map(|bytes| decode(limits, bytes.clone()))
                    .collect::<std::result::Result<Vec<_>, _>>()
            })
            .collect::<Vec<_>>()
    };
    let total: usize = commits.iter().map(|c| c.blocks.len()).sum();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = (total / MIN_PARALLEL_BLOCKS).clamp(1, MAX_VERIFY_CHUNKS.min(cores));
    if threads < 2 || commits.len() < 2 {
        return decode_all(commits);
    }
    // Contiguous runs of commits with about the same number of blocks.
    let per_thread = total.div_ceil(threads);
    let mut runs = Vec::with_capacity(threads);
    let (mut start, mut blocks) = (0, 0);
    for (i, data) in commits.iter().enumerate() {
        blocks += data.blocks.len();
        if blocks >= per_thread || i + 1 == commits.len() {
            runs.push(&commits[start..=i]);
            (start, blocks) = (i + 1, 0);
        }
    }
    std::thread::scope(|scope| {
        let mut decoded = Vec::with_capacity(commits.len());
        let mut spawned = Vec::with_capacity(runs.len());
        // The first run on this thread, the others on their own; a thread
        // that cannot start decodes here instead.
        let (first, others) = runs.split_first().expect("at least one run");
        for run in others {
            let thread = std::thread::Builder::new()
                .name(DECODE_THREAD.into())
                .spawn_scoped(scope, || decode_all(run));
            spawned.push(thread.map_err(|_| run));
        }
        decoded.extend(decode_all(first));
        for thread in spawned {
            decoded.extend(match thread {
                Ok(thread) => thread.join().expect("decoding does not panic"),
                Err(run) => decode_all(run),
            });
        }
        decoded
    })
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
    let certifiers = VerifiedBlock::verify_batch(certifiers.to_vec(), committee, limits)
        .map_err(|source| ObserverError::BadCertifier { source })?;
    let mut stake = StakeAggregator::new(committee);
    let mut other_digest = None;
    for block in certifiers {
        for vote in block.commit_votes().iter().filter(|v| v.index == index) {
            if vote.digest == digest {
                stake.add(block.author(), committee);
            } else {
                other_digest = Some(vote.digest);
            }
        }
    }
    if stake.reached_quorum(committee) {
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
            stake: stake.stake(),
            quorum: committee.quorum_threshold(),
        }),
    }
}
