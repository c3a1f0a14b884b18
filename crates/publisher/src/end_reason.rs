//! [`EndReason`]: why a stream ended, for logs and the disconnect metric.

/// Why a stream's task ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// The subscriber closed its request stream or went away.
    ClientClosed,
    /// The subscriber did not drain its stream in time.
    TooSlow,
    /// A command was invalid.
    InvalidArgument,
    /// A commit-stream Start asked for pruned commits.
    OutOfRange,
    /// Commands came faster than the configured rate.
    RateLimited,
    /// The publisher failed to read its source.
    Internal,
    /// The publisher is shutting down.
    Shutdown,
}

impl EndReason {
    pub const ALL: [EndReason; 7] = [
        EndReason::ClientClosed,
        EndReason::TooSlow,
        EndReason::InvalidArgument,
        EndReason::OutOfRange,
        EndReason::RateLimited,
        EndReason::Internal,
        EndReason::Shutdown,
    ];

    /// Metric label.
    pub fn name(self) -> &'static str {
        match self {
            EndReason::ClientClosed => "client_closed",
            EndReason::TooSlow => "too_slow",
            EndReason::InvalidArgument => "invalid_argument",
            EndReason::OutOfRange => "out_of_range",
            EndReason::RateLimited => "rate_limited",
            EndReason::Internal => "internal",
            EndReason::Shutdown => "shutdown",
        }
    }
}
