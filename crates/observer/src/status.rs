//! [`ObserverStatus`]: what the observer is doing, for operators and tests.

use crate::state_machine::Mode;
use dagstream_types::{CommitIndex, Epoch};

/// What the observer is doing, for operators and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObserverStatus {
    pub mode: Option<Mode>,
    pub paused: bool,
    /// The epoch of the committee this observer trusts now.
    pub epoch: Epoch,
    /// Highest persisted commit.
    pub local_highest_commit: CommitIndex,
    /// The active upstream's latest `highest_commit_index`.
    pub upstream_highest_commit: Option<CommitIndex>,
    pub active_upstream: Option<String>,
    /// Every mode entered, in order (pauses included), bounded to the last
    /// [`MODE_TRACE_LEN`].
    pub mode_trace: Vec<(Mode, bool)>,
    /// The open checkpoint's sequence number.
    pub checkpoint: Option<u64>,
    /// The newest closed (complete and persisted) checkpoint.
    pub last_closed_checkpoint: Option<u64>,
    /// The highest checkpoint certified by signatures of 2f+1 stake over
    /// the summary this observer formed itself.
    pub highest_certified_checkpoint: Option<u64>,
    /// The active upstream's highest certified checkpoint, as it last
    /// reported it.
    pub upstream_certified_checkpoint: Option<u64>,
    /// Local highest commit equals the upstream's; every checkpoint before
    /// the open one is closed and persisted (a checkpoint closes when the
    /// first commit of the next one arrives); and the highest certified
    /// checkpoint is at least the one the upstream reports.
    pub caught_up: bool,
    /// The last integrity error, if any: its name (a metric label), the
    /// upstream, and what was wrong.
    pub last_fault: Option<String>,
    /// Why the last session with an upstream ended, other than a fault:
    /// the upstream's address and the reason (a lost connection, a stall,
    /// or a refusal such as history the upstream has pruned).
    pub last_upstream_error: Option<String>,
    /// The history archive's watermark, with `--archive`: every checkpoint
    /// up to it is archived.
    pub archived_checkpoint: Option<u64>,
    /// Why the archive lags or stopped, until its next success.
    pub archive_error: Option<String>,
    /// The last commit taken from an archive at bootstrap, with
    /// `--bootstrap-from` (0: none).
    pub bootstrapped_commit: CommitIndex,
    /// Upstream sessions opened so far.
    pub connections: u64,
    /// Received blocks waiting for verification, at most
    /// `block_queue_capacity`.
    pub block_queue_len: usize,
    /// Persisted commits the consumer has not taken yet. The node takes no
    /// input once `output_queue_len` wait, so this passes that bound by at
    /// most what one step sequences.
    pub output_backlog: u64,
}

/// Most mode changes kept in [`ObserverStatus::mode_trace`]: enough to see
/// a day of catch-up cycles, at a few kilobytes.
pub const MODE_TRACE_LEN: usize = 1_000;

impl ObserverStatus {
    /// Records the state machine's mode, adding it to the trace if it
    /// changed.
    pub fn record_mode(&mut self, mode: Mode, paused: bool) {
        self.mode = Some(mode);
        self.paused = paused;
        let now = (mode, paused);
        if self.mode_trace.last() != Some(&now) {
            if self.mode_trace.len() == MODE_TRACE_LEN {
                self.mode_trace.remove(0);
            }
            self.mode_trace.push(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mode_trace_keeps_changes_only_and_is_bounded() {
        let mut status = ObserverStatus::default();
        status.record_mode(Mode::BlocksOnly, false);
        status.record_mode(Mode::BlocksOnly, false);
        status.record_mode(Mode::BlocksOnly, true);
        assert_eq!(
            status.mode_trace,
            vec![(Mode::BlocksOnly, false), (Mode::BlocksOnly, true)]
        );
        for i in 0..MODE_TRACE_LEN {
            status.record_mode(Mode::Overlap, i % 2 == 0);
        }
        assert_eq!(status.mode_trace.len(), MODE_TRACE_LEN);
        assert_eq!(status.mode_trace.last(), Some(&(Mode::Overlap, false)));
        assert_eq!((status.mode, status.paused), (Some(Mode::Overlap), false));
    }
}
