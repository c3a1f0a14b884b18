//! Commit-stream responses joined while the observer is busy.
//!
//! A commit batch costs a fixed amount to verify however many commits it
//! holds: the certificate of its last commit (a quorum of block
//! signatures) and one pairing product for all of its randomness. The
//! publisher sizes batches by bytes, so at a busy chain's block size a
//! batch is a handful of commits. While the observer verifies, the commit
//! reader joins the responses that follow each other into one: the
//! certificate of the last commit of the joined batch covers every commit
//! before it, because each commit's digest chains to the one before. At
//! the tip nothing waits and nothing is joined.

use dagstream_proto::v1::CommitStreamResponse;
use prost::Message;

/// Most bytes of a joined response: four publisher batches at their
/// default size. The reader holds one while the commit queue is full, so
/// this bounds the memory joining adds.
pub const MAX_COALESCED_BYTES: usize = 16 << 20;

/// Appends `next` to `held` if its commits follow `held`'s in the same
/// epoch (`next` hands over no epoch), and both fit in `max_bytes`.
/// Otherwise hands `next` back, and `held` goes first as it is.
pub fn coalesce(
    held: &mut CommitStreamResponse,
    next: CommitStreamResponse,
    max_bytes: usize,
) -> Result<(), CommitStreamResponse> {
    let follows = match (held.commits.last(), next.commits.first()) {
        (Some(last), Some(first)) => last.commit_index.checked_add(1) == Some(first.commit_index),
        _ => false,
    };
    // A batch that starts an epoch is certified by another committee.
    let same_epoch = next.epoch_changes.is_empty();
    if !follows || !same_epoch || held.encoded_len() + next.encoded_len() > max_bytes {
        return Err(next);
    }
    held.commits.extend(next.commits);
    // The last commit's certificate, and the publisher's latest word.
    held.certifier_blocks = next.certifier_blocks;
    held.highest_commit_index = next.highest_commit_index;
    held.highest_certified_checkpoint = next.highest_certified_checkpoint;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dagstream_proto::v1::CommittedSubDagData;

    fn response(indexes: std::ops::Range<u64>, certifier: u8) -> CommitStreamResponse {
        CommitStreamResponse {
            commits: indexes
                .map(|commit_index| CommittedSubDagData {
                    commit_index,
                    blocks: vec![vec![commit_index as u8; 100].into()],
                    ..Default::default()
                })
                .collect(),
            highest_commit_index: 50,
            certifier_blocks: vec![vec![certifier; 10].into()],
            highest_certified_checkpoint: Some(u64::from(certifier)),
            epoch_changes: vec![],
        }
    }

    fn indexes(response: &CommitStreamResponse) -> Vec<u64> {
        response.commits.iter().map(|c| c.commit_index).collect()
    }

    #[test]
    fn following_responses_join_under_the_last_ones_certificate() {
        let mut held = response(1..4, 1);
        let mut next = response(4..6, 2);
        next.highest_commit_index = 60;
        coalesce(&mut held, next, MAX_COALESCED_BYTES).unwrap();
        assert_eq!(indexes(&held), vec![1, 2, 3, 4, 5]);
        assert_eq!(held.certifier_blocks, vec![vec![2u8; 10]]);
        assert_eq!(held.highest_commit_index, 60);
        assert_eq!(held.highest_certified_checkpoint, Some(2));
    }

    #[test]
    fn a_gap_an_overlap_a_new_epoch_or_too_many_bytes_hand_the_next_back() {
        let held = response(1..4, 1);
        let next_epoch = CommitStreamResponse {
            epoch_changes: vec![vec![7; 10].into()],
            ..response(4..6, 2)
        };
        for (next, max_bytes) in [
            (next_epoch, MAX_COALESCED_BYTES),
            (response(5..6, 2), MAX_COALESCED_BYTES),
            (response(3..6, 2), MAX_COALESCED_BYTES),
            (CommitStreamResponse::default(), MAX_COALESCED_BYTES),
            (response(4..6, 2), held.encoded_len() + 10),
        ] {
            let mut joined = held.clone();
            assert_eq!(coalesce(&mut joined, next.clone(), max_bytes), Err(next));
            assert_eq!(joined, held);
        }
    }
}
