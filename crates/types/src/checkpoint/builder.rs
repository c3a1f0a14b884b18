//! Forming checkpoints from commits, one at a time: the one grouping
//! rule every node of a chain applies, and the randomness checkpoint that
//! follows each regular one whose commits generated randomness.

use super::{
    CheckpointKind, CheckpointSummary, CHECKPOINT_CONTENTS_DOMAIN, MIN_CHECKPOINT_INTERVAL_MS,
    RANDOMNESS_CONTENTS_DOMAIN,
};
use crate::error::bcs_encode;
use crate::{CommitIndex, Digest, Epoch, RandomnessOutput, Result};
use serde::{Deserialize, Serialize};

/// `acc_k = BLAKE3("DAGSTREAM_CHECKPOINT_CONTENTS_V1" || acc_{k-1} ||
/// digest of commit k)`, starting from all zeros before a checkpoint's
/// first commit.
pub fn extend_contents(accumulator: &Digest, commit_digest: &Digest) -> Digest {
    let mut hasher = blake3::Hasher::new();
    hasher.update(CHECKPOINT_CONTENTS_DOMAIN);
    hasher.update(accumulator.as_bytes());
    hasher.update(commit_digest.as_bytes());
    Digest(*hasher.finalize().as_bytes())
}

/// `acc_k = BLAKE3("DAGSTREAM_RANDOMNESS_CONTENTS_V1" || acc_{k-1} ||
/// round (u64 LE) || signature (48 bytes))` over the randomness rounds a
/// checkpoint's commits generated, in commit order; all zeros before the
/// first (and if there is none).
pub fn extend_randomness(accumulator: &Digest, output: &RandomnessOutput) -> Digest {
    let mut hasher = blake3::Hasher::new();
    hasher.update(RANDOMNESS_CONTENTS_DOMAIN);
    hasher.update(accumulator.as_bytes());
    hasher.update(&output.round.to_le_bytes());
    hasher.update(&output.signature.0);
    Digest(*hasher.finalize().as_bytes())
}

fn fold_randomness(accumulator: Digest, outputs: &[RandomnessOutput]) -> Digest {
    outputs
        .iter()
        .fold(accumulator, |acc, o| extend_randomness(&acc, o))
}

/// The checkpoint that the next commits join.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenCheckpoint {
    pub sequence: u64,
    pub first_commit: CommitIndex,
    pub first_timestamp_ms: u64,
    pub last_commit: CommitIndex,
    pub last_timestamp_ms: u64,
    pub content_digest: Digest,
    pub previous_digest: Digest,
    /// The randomness accumulator of its commits so far; all zeros while
    /// they generated none.
    pub randomness_digest: Digest,
}

impl OpenCheckpoint {
    /// Its fixed-size BCS encoding (136 bytes), which nodes persist.
    pub fn encode(&self) -> Vec<u8> {
        bcs_encode(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        crate::error::bcs_decode("open checkpoint", bytes)
    }

    fn start(
        sequence: u64,
        index: CommitIndex,
        digest: &Digest,
        timestamp_ms: u64,
        randomness: &[RandomnessOutput],
        previous_digest: Digest,
    ) -> Self {
        OpenCheckpoint {
            sequence,
            first_commit: index,
            first_timestamp_ms: timestamp_ms,
            last_commit: index,
            last_timestamp_ms: timestamp_ms,
            content_digest: extend_contents(&Digest::ZERO, digest),
            previous_digest,
            randomness_digest: fold_randomness(Digest::ZERO, randomness),
        }
    }

    /// The summaries it closes into: the regular one, then the randomness
    /// one if its commits generated randomness.
    fn close(&self, epoch: Epoch) -> Vec<CheckpointSummary> {
        let regular = CheckpointSummary {
            epoch,
            sequence: self.sequence,
            first_commit: self.first_commit,
            last_commit: self.last_commit,
            content_digest: self.content_digest,
            previous_digest: self.previous_digest,
            timestamp_ms: self.last_timestamp_ms,
            kind: CheckpointKind::Regular,
        };
        if self.randomness_digest == Digest::ZERO {
            return vec![regular];
        }
        let randomness = CheckpointSummary {
            sequence: self.sequence + 1,
            content_digest: self.randomness_digest,
            previous_digest: regular.digest(),
            kind: CheckpointKind::Randomness,
            ..regular
        };
        vec![regular, randomness]
    }
}

/// Where [`CheckpointBuilder::place`] put a commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placed {
    /// The (regular) checkpoint that holds the commit.
    pub sequence: u64,
    /// The checkpoints the commit closed, in order: none, or the regular
    /// one, followed by its randomness checkpoint if its commits generated
    /// randomness.
    pub closed: Vec<CheckpointSummary>,
}

/// Forms checkpoints from commits, one commit at a time, in order. Pure:
/// its whole state is the open checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointBuilder {
    epoch: Epoch,
    open: Option<OpenCheckpoint>,
    /// With no checkpoint open, the sequence and previous digest of the
    /// next: `(0, zeros)` before commit 1, or after the checkpoint that
    /// ended the previous epoch.
    next: (u64, Digest),
}

impl CheckpointBuilder {
    /// Before commit 1.
    pub fn new(epoch: Epoch) -> Self {
        Self::resume(epoch, None)
    }

    /// Continues after the persisted `open` checkpoint (`None`: before
    /// commit 1).
    pub fn resume(epoch: Epoch, open: Option<OpenCheckpoint>) -> Self {
        CheckpointBuilder {
            epoch,
            open,
            next: (0, Digest::ZERO),
        }
    }

    /// The builder of `epoch`, whose first checkpoint follows `last`, the
    /// final checkpoint of the epoch before.
    pub fn after(epoch: Epoch, last: &CheckpointSummary) -> Self {
        CheckpointBuilder {
            epoch,
            open: None,
            next: (last.sequence + 1, last.digest()),
        }
    }

    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    pub fn open(&self) -> Option<&OpenCheckpoint> {
        self.open.as_ref()
    }

    /// Closes the open checkpoint at the epoch's last commit, whatever the
    /// time: the summaries it closes into (none if no checkpoint is open).
    /// The last of them is what the epoch's final checkpoint follows
    /// ([`CheckpointSummary::end_of_epoch`]).
    pub fn end_epoch(&mut self) -> Vec<CheckpointSummary> {
        let Some(open) = self.open.take() else {
            return Vec::new();
        };
        let closed = open.close(self.epoch);
        let last = closed.last().expect("a regular checkpoint");
        self.next = (last.sequence + 1, last.digest());
        closed
    }

    /// Places the next commit, `index` with `digest`, `timestamp_ms` and
    /// the randomness rounds it generated. The caller feeds commits in
    /// index order, each once.
    pub fn place(
        &mut self,
        index: CommitIndex,
        digest: Digest,
        timestamp_ms: u64,
        randomness: &[RandomnessOutput],
    ) -> Placed {
        let Some(open) = self.open.as_mut() else {
            let (sequence, previous_digest) = self.next;
            self.open = Some(OpenCheckpoint::start(
                sequence,
                index,
                &digest,
                timestamp_ms,
                randomness,
                previous_digest,
            ));
            return Placed {
                sequence,
                closed: Vec::new(),
            };
        };
        debug_assert_eq!(index, open.last_commit + 1, "commits in order");
        if timestamp_ms
            < open
                .first_timestamp_ms
                .saturating_add(MIN_CHECKPOINT_INTERVAL_MS)
        {
            open.last_commit = index;
            open.last_timestamp_ms = timestamp_ms;
            open.content_digest = extend_contents(&open.content_digest, &digest);
            open.randomness_digest = fold_randomness(open.randomness_digest, randomness);
            return Placed {
                sequence: open.sequence,
                closed: Vec::new(),
            };
        }
        let closed = open.close(self.epoch);
        let last = closed.last().expect("a regular checkpoint");
        *open = OpenCheckpoint::start(
            last.sequence + 1,
            index,
            &digest,
            timestamp_ms,
            randomness,
            last.digest(),
        );
        Placed {
            sequence: open.sequence,
            closed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BlsSignature;

    fn place_all(builder: &mut CheckpointBuilder, timestamps: &[u64], from: u64) -> Vec<Placed> {
        timestamps
            .iter()
            .enumerate()
            .map(|(i, ts)| {
                let index = from + i as u64;
                builder.place(index, Digest::of(&index.to_le_bytes()), *ts, &[])
            })
            .collect()
    }

    #[test]
    fn commits_group_by_interval_from_each_checkpoint_start() {
        let mut builder = CheckpointBuilder::new(3);
        let timestamps = [1_000, 1_075, 1_150, 1_199, 1_200, 1_390, 1_401, 5_000];
        let placed = place_all(&mut builder, &timestamps, 1);
        let sequences: Vec<u64> = placed.iter().map(|p| p.sequence).collect();
        assert_eq!(sequences, vec![0, 0, 0, 0, 1, 1, 2, 3]);
        let closed: Vec<CheckpointSummary> = placed.iter().flat_map(|p| p.closed.clone()).collect();
        let ranges: Vec<(u64, u64, u64, u64)> = closed
            .iter()
            .map(|c| (c.sequence, c.first_commit, c.last_commit, c.timestamp_ms))
            .collect();
        assert_eq!(
            ranges,
            vec![(0, 1, 4, 1_199), (1, 5, 6, 1_390), (2, 7, 7, 1_401)]
        );
        // Each summary chains to the one before and accumulates exactly
        // its own commits.
        assert_eq!(closed[0].previous_digest, Digest::ZERO);
        assert_eq!(closed[1].previous_digest, closed[0].digest());
        assert_eq!(closed[2].previous_digest, closed[1].digest());
        let contents = (5..=6u64).fold(Digest::ZERO, |acc, i| {
            extend_contents(&acc, &Digest::of(&i.to_le_bytes()))
        });
        assert_eq!(closed[1].content_digest, contents);
        assert!(closed.iter().all(|c| c.epoch == 3));
    }

    #[test]
    fn resuming_from_the_persisted_open_checkpoint_gives_the_same_summaries() {
        let timestamps: Vec<u64> = (0..50).map(|i| 1_000 + i * 37).collect();
        let mut whole = CheckpointBuilder::new(0);
        let expected = place_all(&mut whole, &timestamps, 1);
        let mut first = CheckpointBuilder::new(0);
        let mut got = place_all(&mut first, &timestamps[..20], 1);
        let saved = first.open().unwrap().encode();
        assert_eq!(saved.len(), 136);
        let open = OpenCheckpoint::decode(&saved).unwrap();
        let mut resumed = CheckpointBuilder::resume(0, Some(open));
        got.extend(place_all(&mut resumed, &timestamps[20..], 21));
        assert_eq!(got, expected);
        assert!(OpenCheckpoint::decode(&saved[..135]).is_err());
    }

    #[test]
    fn a_randomness_checkpoint_follows_a_regular_one_whose_commits_generated_randomness() {
        let output = |round| RandomnessOutput {
            round,
            signature: BlsSignature([round as u8; 48]),
        };
        let mut builder = CheckpointBuilder::new(0);
        let place =
            |builder: &mut CheckpointBuilder, index: u64, ts, outputs: &[RandomnessOutput]| {
                builder.place(index, Digest::of(&index.to_le_bytes()), ts, outputs)
            };
        // Checkpoint 0: commits 1 and 2, which generate rounds 1 and 2.
        place(&mut builder, 1, 1_000, &[]);
        place(&mut builder, 2, 1_100, &[output(1), output(2)]);
        let third = place(&mut builder, 3, 1_200, &[]);
        let [regular, randomness] = third.closed.as_slice() else {
            panic!("{:?}", third.closed);
        };
        assert_eq!(regular.kind, CheckpointKind::Regular);
        assert_eq!(
            (regular.sequence, regular.first_commit, regular.last_commit),
            (0, 1, 2)
        );
        assert_eq!(randomness.kind, CheckpointKind::Randomness);
        assert_eq!(
            (
                randomness.sequence,
                randomness.first_commit,
                randomness.last_commit
            ),
            (1, 1, 2)
        );
        assert_eq!(randomness.previous_digest, regular.digest());
        assert_eq!(randomness.timestamp_ms, regular.timestamp_ms);
        let contents = extend_randomness(&extend_randomness(&Digest::ZERO, &output(1)), &output(2));
        assert_eq!(randomness.content_digest, contents);
        // Commit 3 opened checkpoint 2, chained to the randomness one; it
        // generates nothing, so it closes alone.
        assert_eq!(third.sequence, 2);
        let fourth = place(&mut builder, 4, 1_400, &[]);
        assert_eq!(fourth.closed.len(), 1);
        assert_eq!(fourth.closed[0].sequence, 2);
        assert_eq!(fourth.closed[0].previous_digest, randomness.digest());
        assert_eq!(fourth.sequence, 3);
    }
}
