//! BLAKE3-256 digests.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A BLAKE3-256 digest. Encoded as 32 raw bytes in BCS, as hex in JSON.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Digest(#[serde(with = "crate::fixed_bytes")] pub [u8; 32]);

impl Digest {
    /// The all-zero digest: the `previous_digest` of commit 1.
    pub const ZERO: Digest = Digest([0; 32]);
    /// The smallest digest, for range scans over keys that end in a digest.
    pub const MIN: Digest = Digest([0; 32]);
    /// The largest digest, for range scans over keys that end in a digest.
    pub const MAX: Digest = Digest([0xff; 32]);

    /// BLAKE3-256 of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Digest(*blake3::hash(bytes).as_bytes())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Digest {
    /// The first 8 hex digits: enough to tell digests apart in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", &hex::encode(&self.0[..4]))
    }
}

impl std::str::FromStr for Digest {
    type Err = hex::FromHexError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out)?;
        Ok(Digest(out))
    }
}
