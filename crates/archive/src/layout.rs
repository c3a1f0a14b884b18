//! What an archive holds, and under which names (`docs/archive.md`).
//!
//! Every name sorts in the order of what it holds: numbers are zero-padded
//! to 20 digits, so listing a prefix lists it in sequence order.
//! - `manifest.json` ([`Manifest`]): the chain and the format. Written
//!   once, first; readers check it before anything else.
//! - `writer.json` ([`WriterLease`]): the one observer that writes. Taken
//!   by a conditional create; a second writer finds it and stops.
//! - `bundles/<first commit>.binpb.zst` ([`bundle_name`]): the history,
//!   one zstd-compressed `ArchiveBundle` each, immutable once the
//!   watermark covers it.
//! - `watermarks/<checkpoint>.json` ([`Watermark`]): how far the archive
//!   is contiguous. Each advance creates a new object (a conditional
//!   create, so none is ever overwritten); the highest name is the
//!   watermark, and older ones are deleted behind it.

use crate::error::{ArchiveError, Result};
use dagstream_types::{CommitIndex, Digest, Epoch};
use serde::{Deserialize, Serialize};

/// The format this build writes and reads.
pub const FORMAT: &str = "dagstream-archive";
pub const FORMAT_VERSION: u32 = 1;

pub const MANIFEST: &str = "manifest.json";
pub const WRITER: &str = "writer.json";
pub const BUNDLES: &str = "bundles/";
pub const WATERMARKS: &str = "watermarks/";
const BUNDLE_SUFFIX: &str = ".binpb.zst";
const WATERMARK_SUFFIX: &str = ".json";

/// The archive's identity: which chain, in which format.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    /// The digest of the genesis committee (hex): the chain's identity,
    /// the same across epochs.
    pub chain: String,
}

impl Manifest {
    pub fn new(chain: Digest) -> Self {
        Manifest {
            format: FORMAT.into(),
            version: FORMAT_VERSION,
            chain: hex::encode(chain.as_bytes()),
        }
    }

    /// Refuses an archive of another format, version or chain.
    pub fn check(&self, archive: &str, chain: Digest) -> Result<()> {
        if self.format != FORMAT || self.version != FORMAT_VERSION {
            return Err(ArchiveError::UnknownFormat {
                archive: archive.into(),
                format: self.format.clone(),
                version: self.version,
                supported: FORMAT_VERSION,
            });
        }
        if self.chain != hex::encode(chain.as_bytes()) {
            return Err(ArchiveError::WrongChain {
                archive: archive.into(),
                archived: self.chain.clone(),
                ours: chain,
            });
        }
        Ok(())
    }
}

/// The writer that holds the archive.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriterLease {
    /// A random id the writer keeps in its own store, so that it knows
    /// its lease again after a restart.
    pub writer: String,
}

/// How far the archive is contiguous: every checkpoint up to `checkpoint`
/// and every commit up to `commit` are in bundles below `next_bundle`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watermark {
    pub checkpoint: u64,
    pub commit: CommitIndex,
    /// The epoch of `checkpoint`.
    pub epoch: Epoch,
    /// How many bundles hold commits 1 ..= `commit`.
    pub bundles: u64,
    /// The writer that advanced it: a create that failed because its
    /// first attempt had succeeded (the answer lost) is then recognized.
    pub writer: String,
}

/// The name of the bundle that starts at commit `first`.
pub fn bundle_name(first: CommitIndex) -> String {
    format!("{BUNDLES}{first:020}{BUNDLE_SUFFIX}")
}

/// The first commit of the bundle named `name` (relative to the archive);
/// `None` for a name that is not a bundle's.
pub fn parse_bundle_name(name: &str) -> Option<CommitIndex> {
    parse_number(name.strip_prefix(BUNDLES)?.strip_suffix(BUNDLE_SUFFIX)?)
}

/// The name of the watermark at checkpoint `checkpoint`.
pub fn watermark_name(checkpoint: u64) -> String {
    format!("{WATERMARKS}{checkpoint:020}{WATERMARK_SUFFIX}")
}

/// The checkpoint of the watermark named `name`; `None` for another name.
pub fn parse_watermark_name(name: &str) -> Option<u64> {
    parse_number(
        name.strip_prefix(WATERMARKS)?
            .strip_suffix(WATERMARK_SUFFIX)?,
    )
}

/// A zero-padded number of exactly 20 digits.
fn parse_number(digits: &str) -> Option<u64> {
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_in_sequence_order_and_parse_back() {
        let names: Vec<String> = [1, 9, 10, 123_456, u64::MAX].map(bundle_name).into();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(sorted, names);
        assert_eq!(names[2], "bundles/00000000000000000010.binpb.zst");
        for (name, first) in names.iter().zip([1, 9, 10, 123_456, u64::MAX]) {
            assert_eq!(parse_bundle_name(name), Some(first));
        }
        assert_eq!(watermark_name(7), "watermarks/00000000000000000007.json");
        assert_eq!(parse_watermark_name(&watermark_name(7)), Some(7));
        for other in [
            "bundles/10.binpb.zst",
            "bundles/0000000000000000001x.binpb.zst",
            "bundles/00000000000000000010.binpb",
            "watermarks/00000000000000000010.binpb.zst",
            "manifest.json",
        ] {
            assert_eq!(parse_bundle_name(other), None, "{other}");
            assert_eq!(parse_watermark_name(other), None, "{other}");
        }
    }

    #[test]
    fn a_manifest_of_another_chain_or_version_is_refused() {
        let ours = Digest::of(b"ours");
        let manifest = Manifest::new(ours);
        manifest.check("a", ours).unwrap();
        assert!(matches!(
            manifest.check("a", Digest::of(b"theirs")).unwrap_err(),
            ArchiveError::WrongChain { archived, .. } if archived == hex::encode(ours.as_bytes())
        ));
        let newer = Manifest {
            version: FORMAT_VERSION + 1,
            ..manifest
        };
        assert!(matches!(
            newer.check("a", ours).unwrap_err(),
            ArchiveError::UnknownFormat { version, .. } if version == FORMAT_VERSION + 1
        ));
    }
}
