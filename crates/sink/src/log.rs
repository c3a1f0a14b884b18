//! [`CommitLog`]: what the sink needs of a log, and the commit ids it
//! writes there.

use crate::error::Result;
use bytes::Bytes;
use dagstream_types::{CommitIndex, Digest};
use std::future::Future;

/// A commit as the log keeps it: its index and the bytes consumers read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub index: CommitIndex,
    pub payload: Bytes,
}

/// The log's last commit, and the writer that appended it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tail {
    pub index: CommitIndex,
    pub writer: String,
}

/// An append-only log of one chain's commits, with appends that are
/// idempotent (by commit id) and conditional (on the log's last entry).
pub trait CommitLog: Send {
    /// What errors and logs call this log (its URL, and subject or topic).
    fn name(&self) -> String;

    /// Where the log ends: `None` if it holds no commit. A log whose last
    /// entry is not a commit of this chain is an error. The next append
    /// follows what this read.
    fn tail(&mut self) -> impl Future<Output = Result<Option<Tail>>> + Send;

    /// Appends `records`, consecutive, the first right after the tail read
    /// or appended last, each exactly once. On an error some may have been
    /// appended: read the tail again before appending more.
    fn append(&mut self, records: &[Record]) -> impl Future<Output = Result<()>> + Send;
}

/// A commit's id in a log: the chain's identity (its genesis committee's
/// digest, the same across epochs) and the commit's index.
pub fn message_id(chain: &Digest, index: CommitIndex) -> String {
    format!("{chain}:{index}")
}

/// The chain (hex) and index an id names; `None` if it is not a commit id.
pub fn parse_message_id(id: &str) -> Option<(&str, CommitIndex)> {
    let (chain, index) = id.split_once(':')?;
    let canonical = !index.is_empty() && (index == "0" || !index.starts_with('0'));
    let index = index.parse().ok().filter(|_| canonical)?;
    (chain.len() == 64 && chain.bytes().all(|b| b.is_ascii_hexdigit())).then_some((chain, index))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_id_round_trips_and_nothing_else_parses() {
        let chain = Digest([0xab; 32]);
        let id = message_id(&chain, 42);
        assert_eq!(id, format!("{}:42", "ab".repeat(32)));
        assert_eq!(parse_message_id(&id), Some((&*"ab".repeat(32), 42)));
        for bad in [
            "",
            "42",
            &format!("{}:", "ab".repeat(32)),
            &format!("{}:042", "ab".repeat(32)),
            &format!("{}:-1", "ab".repeat(32)),
            &format!("{}:4x", "ab".repeat(32)),
            &format!("{}:1", "ab".repeat(31)),
            &format!("{}:1", "zz".repeat(32)),
        ] {
            assert_eq!(parse_message_id(bad), None, "{bad:?}");
        }
    }
}
