//! The observer: follows one or more publishers, verifies everything it
//! receives, and hands its consumer one gap-free, exactly-once commit
//! sequence.
//!
//! # Layout
//! - [`state_machine`]: the design's subscriber-controlled modes
//!   (BlocksOnly, CommitsOnly, Overlap, paused), free of I/O.
//! - [`verify`]: commit-stream batches checked against the observer's own
//!   chain and the certifiers' quorum, free of I/O.

mod error;
pub mod state_machine;
#[cfg(test)]
mod state_machine_tests;
pub mod verify;
#[cfg(test)]
mod verify_tests;

pub use error::{ObserverError, Result};
pub use state_machine::{Command, Mode, Observation, SubscriberConfig, SubscriberStateMachine};
