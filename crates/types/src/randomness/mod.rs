//! Verifiable randomness: one BLS12-381 threshold signature per commit.
//!
//! # Keys
//! Genesis holds [`RandomnessKeys`]: the group public key and one public
//! key per share. Authority `i` holds one share per unit of its stake, the
//! shares after those of authorities `0..i`; the threshold is the
//! committee's quorum, 2f+1 by stake, in shares. Signatures are min-sig:
//! 48-byte G1 signatures under 96-byte G2 keys, so the partials that ride
//! in blocks stay small.
//!
//! # Rounds
//! When commit `c` is decided, every authority signs randomness round `c`,
//! the 16 bytes `epoch || c` (both little-endian `u64`), with each of its
//! shares, and carries the partial signatures in one of its next blocks
//! (`SystemMessage::RandomnessPartial`). The `RandomnessTally`
//! (`randomness_tally`) reads committed blocks in commit order: round `r` is
//! *generated* at the first commit after which partials for `r` from
//! authorities of 2f+1 stake are committed. That rule only counts stake,
//! so every node places each round at the same commit without checking a
//! pairing.
//!
//! # Values
//! A round's value is the group's signature on its message. A threshold
//! BLS signature is unique: whichever 2f+1 shares are interpolated
//! ([`RandomnessVerifier::aggregate`]), the result is the one signature
//! that [`RandomnessVerifier::verify`] accepts under the group key. So an
//! observer either interpolates it from partials it verified or checks the
//! one an upstream sent, and agrees with every other node either way. The
//! randomness itself is [`RandomnessOutput::value`], BLAKE3 of the
//! signature.

mod keys;

pub use keys::{Aggregation, HashedRound, RandomnessDealing, RandomnessVerifier};

use crate::error::{bcs_decode, bcs_encode};
use crate::{Digest, Epoch, Result};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A randomness round: the index of the commit whose decision started it.
pub type RandomnessRound = u64;

/// The hash-to-curve domain of randomness messages (RFC 9380 suite
/// `BLS12381G1_XMD:SHA-256_SSWU_RO_`, tagged with this protocol).
pub const RANDOMNESS_DST: &[u8] = b"DAGSTREAM_RANDOMNESS_V1_BLS12381G1_XMD:SHA-256_SSWU_RO_";

/// At most this many shares in a committee: every partial carries a G1
/// point per share of its author, and every aggregation interpolates 2f+1
/// of them. A committee whose total stake is larger runs without
/// randomness (or scales its stakes down for it).
pub const MAX_RANDOMNESS_SHARES: u64 = 1024;

/// A round not generated within this many commits of its start is given
/// up: partials for it are ignored from then on. It bounds the tally's
/// state (a round is normally generated within a few commits) and keeps a
/// round that lost too many signers from being waited for forever.
pub const RANDOMNESS_ROUND_LIFETIME: u64 = 256;

/// Key-derivation context of [`RandomnessOutput::value`].
const RANDOMNESS_VALUE_CONTEXT: &str = "dagstream randomness value v1";

/// A compressed G1 point: a partial or a group signature.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BlsSignature(#[serde(with = "crate::fixed_bytes")] pub [u8; 48]);

/// A compressed G2 point: the group key or a share's public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BlsPublicKey(#[serde(with = "crate::fixed_bytes")] pub [u8; 96]);

impl fmt::Debug for BlsSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlsSignature({})", hex::encode(&self.0[..8]))
    }
}

impl fmt::Debug for BlsPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlsPublicKey({})", hex::encode(&self.0[..8]))
    }
}

/// The public side of the committee's randomness, in genesis.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomnessKeys {
    /// The key that every round's signature verifies under.
    pub group_key: BlsPublicKey,
    /// One key per share, in share order: one share per unit of stake.
    pub share_keys: Vec<BlsPublicKey>,
}

/// A generated round: its number and the group's signature on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RandomnessOutput {
    pub round: RandomnessRound,
    pub signature: BlsSignature,
}

impl RandomnessOutput {
    /// The round's randomness: BLAKE3 (key derivation, context
    /// `dagstream randomness value v1`) of the signature's 48 bytes.
    pub fn value(&self) -> Digest {
        Digest(blake3::derive_key(
            RANDOMNESS_VALUE_CONTEXT,
            &self.signature.0,
        ))
    }
}

/// The message signed for `round`: BCS of `(epoch, round)`.
pub fn round_message(epoch: Epoch, round: RandomnessRound) -> [u8; 16] {
    let mut message = [0u8; 16];
    message[..8].copy_from_slice(&epoch.to_le_bytes());
    message[8..].copy_from_slice(&round.to_le_bytes());
    message
}

/// BCS of the rounds a commit generated: how they are stored.
pub fn encode_outputs(outputs: &[RandomnessOutput]) -> Vec<u8> {
    bcs_encode(&outputs)
}

pub fn decode_outputs(bytes: &[u8]) -> Result<Vec<RandomnessOutput>> {
    bcs_decode("randomness outputs", bytes)
}
