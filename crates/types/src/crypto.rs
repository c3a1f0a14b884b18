//! Ed25519 keys and signatures, and the block signing rule.
//!
//! A block is signed over `"DAGSTREAM_BLOCK_V1" || BLAKE3(BCS(Block))`. The
//! prefix is a domain separator: a signature made for a block can never be
//! replayed as a signature over any other kind of message.

use crate::Digest;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The domain separator that starts every signed block message.
pub const BLOCK_SIGNING_DOMAIN: &[u8] = b"DAGSTREAM_BLOCK_V1";

/// An Ed25519 public key: 32 raw bytes in BCS, hex in `genesis.json`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PublicKey(#[serde(with = "crate::fixed_bytes")] pub [u8; 32]);

impl PublicKey {
    pub fn from_signing_key(key: &SigningKey) -> Self {
        PublicKey(key.verifying_key().to_bytes())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", hex::encode(self.0))
    }
}

/// An Ed25519 signature: 64 raw bytes in BCS.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Signature(#[serde(with = "crate::fixed_bytes")] pub [u8; 64]);

impl Signature {
    /// The signature of genesis blocks, which nobody signs: they are implied
    /// by the committee.
    pub const ZERO: Signature = Signature([0; 64]);
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({}..)", hex::encode(&self.0[..8]))
    }
}

/// The exact bytes an authority signs for a block whose BCS encoding hashes to
/// `block_hash`.
pub fn block_signing_message(block_hash: &Digest) -> [u8; BLOCK_SIGNING_DOMAIN.len() + 32] {
    let mut message = [0u8; BLOCK_SIGNING_DOMAIN.len() + 32];
    message[..BLOCK_SIGNING_DOMAIN.len()].copy_from_slice(BLOCK_SIGNING_DOMAIN);
    message[BLOCK_SIGNING_DOMAIN.len()..].copy_from_slice(block_hash.as_bytes());
    message
}

/// Signs the block whose BCS encoding hashes to `block_hash`.
pub fn sign_block_hash(key: &SigningKey, block_hash: &Digest) -> Signature {
    Signature(key.sign(&block_signing_message(block_hash)).to_bytes())
}

/// Checks a block signature. Uses strict verification, which rejects
/// non-canonical encodings and small-order keys, so that one block has exactly
/// one valid signature per key.
pub fn verify_block_hash(key: &VerifyingKey, block_hash: &Digest, signature: &Signature) -> bool {
    let signature = ed25519_dalek::Signature::from_bytes(&signature.0);
    key.verify_strict(&block_signing_message(block_hash), &signature)
        .is_ok()
}
