//! The observer: follows one or more publishers, verifies everything it
//! receives, and hands its consumer one gap-free, exactly-once commit
//! sequence.
//!
//! # Layout
//! - [`state_machine`]: the design's subscriber-controlled modes
//!   (BlocksOnly, CommitsOnly, Overlap, paused), free of I/O.

pub mod state_machine;
#[cfg(test)]
mod state_machine_tests;

pub use state_machine::{Command, Mode, Observation, SubscriberConfig, SubscriberStateMachine};
