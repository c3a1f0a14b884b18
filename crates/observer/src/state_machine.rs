//! The subscriber-controlled state machine of the design, free of I/O.
//!
//! Inputs are what the observer knows (the upstream's highest commit, its
//! own highest persisted commit, how many received blocks wait to be
//! processed) and the current time; outputs are the commands to send. The
//! I/O shell sends them and fills in positions (a Start for blocks carries
//! the observer's per-authority highest rounds, one for commits its highest
//! persisted commit).
//!
//! ```text
//!              lag >= start_commit_sync_lag
//!  BlocksOnly ───────────────────────────────▶ CommitsOnly
//!   ▲   │ ▲      (Start commits, Stop blocks)       │
//!   │   │ │                                          │ lag <= resume_blocks_lag
//!   │   │ │ lag <= stop_commit_sync_lag              │ (Start blocks)
//!   │   │ └────────────── Overlap ◀──────────────────┘
//!   │   │  (Stop commits)    │ lag >= start_commit_sync_lag: back to
//!   │   │                    │ CommitsOnly (Stop blocks)
//!   │   ▼ queue >= pause_blocks_queue_size: Stop blocks (paused)
//!   └── queue <= resume_blocks_queue_size: Start blocks (resumed)
//! ```
//!
//! The thresholds are apart, so a value hovering at one of them causes one
//! transition, not a flapping stream of them. Pausing applies whenever
//! blocks flow (BlocksOnly and Overlap).
//!
//! [`Degradation`], also free of I/O, is the design's graceful degradation:
//! it tells when CommitsOnly is not catching up.

use crate::{ObserverError, Result};
use serde::{Deserialize, Serialize};

/// The design's `SubscriberConfig`, with its example values as defaults.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SubscriberConfig {
    /// Commits behind at which catching up switches to the commit stream.
    /// 50 commits are a few seconds of consensus: more than blocks can
    /// comfortably replay, little enough to switch early.
    pub start_commit_sync_lag: u64,
    /// Commits behind at which blocks resume during commit sync, so that
    /// the block stream is warm when the commit stream stops.
    pub resume_blocks_lag: u64,
    /// Commits behind at which commit sync stops: 0, fully caught up.
    pub stop_commit_sync_lag: u64,
    /// Received blocks waiting to be processed at which blocks pause.
    pub pause_blocks_queue_size: usize,
    /// Waiting blocks at which paused blocks resume.
    pub resume_blocks_queue_size: usize,
    /// How often the state machine evaluates. 100 ms reacts within a round
    /// or two while keeping commands (and publisher store reads) rare.
    pub evaluation_interval_ms: u64,
}

impl Default for SubscriberConfig {
    fn default() -> Self {
        SubscriberConfig {
            start_commit_sync_lag: 50,
            resume_blocks_lag: 10,
            stop_commit_sync_lag: 0,
            pause_blocks_queue_size: 500,
            resume_blocks_queue_size: 50,
            evaluation_interval_ms: 100,
        }
    }
}

impl SubscriberConfig {
    /// The thresholds must leave room for hysteresis. An error names the
    /// offending field (as `subscriber.<field>`).
    pub fn validate(&self) -> Result<()> {
        let fail = |field: &'static str, reason: String| {
            Err(ObserverError::InvalidConfig { field, reason })
        };
        if self.stop_commit_sync_lag > self.resume_blocks_lag {
            return fail(
                "subscriber.stop_commit_sync_lag",
                format!(
                    "stop_commit_sync_lag ({}) must not exceed resume_blocks_lag ({})",
                    self.stop_commit_sync_lag, self.resume_blocks_lag
                ),
            );
        }
        if self.resume_blocks_lag >= self.start_commit_sync_lag {
            return fail(
                "subscriber.resume_blocks_lag",
                format!(
                    "resume_blocks_lag ({}) must be below start_commit_sync_lag ({})",
                    self.resume_blocks_lag, self.start_commit_sync_lag
                ),
            );
        }
        if self.resume_blocks_queue_size >= self.pause_blocks_queue_size {
            return fail(
                "subscriber.resume_blocks_queue_size",
                format!(
                    "resume_blocks_queue_size ({}) must be below pause_blocks_queue_size ({})",
                    self.resume_blocks_queue_size, self.pause_blocks_queue_size
                ),
            );
        }
        if self.evaluation_interval_ms == 0 {
            return fail(
                "subscriber.evaluation_interval_ms",
                "must be positive".into(),
            );
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Mode {
    /// Normal operation: blocks only.
    BlocksOnly,
    /// Catching up: commits only, blocks stopped.
    CommitsOnly,
    /// Transition zone: both streams.
    Overlap,
}

/// A command for the I/O shell to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Start the block stream from the observer's per-authority rounds.
    StartBlocks,
    StopBlocks,
    /// Start the commit stream after the observer's highest commit.
    StartCommits,
    StopCommits,
}

/// What the observer knows at an evaluation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Observation {
    /// The upstream's latest `highest_commit_index`, if it said one yet.
    pub upstream_highest_commit: Option<u64>,
    /// The observer's highest persisted commit.
    pub local_highest_commit: u64,
    /// Received blocks not yet processed.
    pub block_queue_len: usize,
}

impl Observation {
    fn lag(&self) -> Option<u64> {
        self.upstream_highest_commit
            .map(|upstream| upstream.saturating_sub(self.local_highest_commit))
    }
}

/// The state machine. Time is an input, in milliseconds of any monotonic
/// clock.
#[derive(Clone, Debug)]
pub struct SubscriberStateMachine {
    config: SubscriberConfig,
    mode: Mode,
    paused: bool,
    started: bool,
    next_evaluation_ms: u64,
}

impl SubscriberStateMachine {
    /// A machine that has sent nothing yet; call [`Self::start`].
    pub fn new(config: SubscriberConfig) -> Result<Self> {
        config.validate()?;
        Ok(SubscriberStateMachine {
            config,
            mode: Mode::BlocksOnly,
            paused: false,
            started: false,
            next_evaluation_ms: 0,
        })
    }

    pub fn config(&self) -> &SubscriberConfig {
        &self.config
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn paused(&self) -> bool {
        self.paused
    }

    /// Whether the block stream should be flowing.
    pub fn blocks_active(&self) -> bool {
        self.started && self.mode != Mode::CommitsOnly && !self.paused
    }

    /// Whether the commit stream should be flowing.
    pub fn commits_active(&self) -> bool {
        self.started && self.mode != Mode::BlocksOnly
    }

    /// T0: BlocksOnly, blocks started from the observer's own rounds; the
    /// first responses reveal the lag. Also the restart after a new
    /// upstream connection: both streams are new, nothing is running.
    pub fn start(&mut self, now_ms: u64) -> Vec<Command> {
        self.mode = Mode::BlocksOnly;
        self.paused = false;
        self.started = true;
        self.next_evaluation_ms = now_ms + self.config.evaluation_interval_ms;
        vec![Command::StartBlocks]
    }

    /// Evaluates at most once per interval: returns the commands of at most
    /// one transition.
    pub fn evaluate(&mut self, now_ms: u64, observation: Observation) -> Vec<Command> {
        if !self.started || now_ms < self.next_evaluation_ms {
            return vec![];
        }
        self.next_evaluation_ms = now_ms + self.config.evaluation_interval_ms;
        let Some(lag) = observation.lag() else {
            return vec![];
        };
        let c = &self.config;
        match self.mode {
            Mode::BlocksOnly if lag >= c.start_commit_sync_lag => {
                // T1. Blocks may already be stopped by a pause.
                let mut commands = vec![Command::StartCommits];
                if !self.paused {
                    commands.push(Command::StopBlocks);
                }
                self.mode = Mode::CommitsOnly;
                self.paused = false;
                commands
            }
            Mode::CommitsOnly if lag <= c.resume_blocks_lag => {
                // T2: blocks come back before commits stop.
                self.mode = Mode::Overlap;
                vec![Command::StartBlocks]
            }
            Mode::Overlap if lag <= c.stop_commit_sync_lag => {
                // T3.
                self.mode = Mode::BlocksOnly;
                vec![Command::StopCommits]
            }
            Mode::Overlap if lag >= c.start_commit_sync_lag => {
                // Fell behind again during the overlap.
                let mut commands = vec![];
                if !self.paused {
                    commands.push(Command::StopBlocks);
                }
                self.mode = Mode::CommitsOnly;
                self.paused = false;
                commands
            }
            Mode::BlocksOnly | Mode::Overlap => self.backpressure(observation.block_queue_len),
            Mode::CommitsOnly => vec![],
        }
    }

    /// T4 and T5.
    fn backpressure(&mut self, queue: usize) -> Vec<Command> {
        if !self.paused && queue >= self.config.pause_blocks_queue_size {
            self.paused = true;
            vec![Command::StopBlocks]
        } else if self.paused && queue <= self.config.resume_blocks_queue_size {
            self.paused = false;
            vec![Command::StartBlocks]
        } else {
            vec![]
        }
    }
}

/// The design's graceful degradation, free of I/O: in CommitsOnly, a lag
/// that has not improved for a window means the observer cannot keep up
/// with this upstream.
#[derive(Clone, Debug)]
pub struct Degradation {
    window_ms: u64,
    /// The best lag seen in this CommitsOnly phase, and since when.
    best: Option<(u64, u64)>,
}

impl Degradation {
    pub fn new(window_ms: u64) -> Self {
        Degradation {
            window_ms,
            best: None,
        }
    }

    /// Whether the observer has been failing to catch up for the window.
    pub fn observe(&mut self, now_ms: u64, mode: Mode, lag: Option<u64>) -> bool {
        let (Mode::CommitsOnly, Some(lag)) = (mode, lag) else {
            self.best = None;
            return false;
        };
        match self.best {
            Some((best, _)) if lag >= best => {}
            _ => self.best = Some((lag, now_ms)),
        }
        self.best
            .is_some_and(|(_, since)| now_ms.saturating_sub(since) >= self.window_ms)
    }
}
