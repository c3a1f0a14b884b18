//! Ed25519 keys and signatures, and the signing rules.
//!
//! A block is signed over `"DAGSTREAM_BLOCK_V1" || BLAKE3(BCS(Block))`, a
//! checkpoint summary over `"DAGSTREAM_CHECKPOINT_V1" || BLAKE3(BCS(summary))`.
//! The prefix is a domain separator: a signature made for one kind of
//! message can never be replayed as a signature over another.
//!
//! Signatures are checked under the ZIP-215 rules (as Sui's do), through
//! `ed25519-zebra`, the rules' reference implementation: canonical `S`, the
//! cofactored equation, and any point encoding. Under them, checking signatures one by one and in a
//! batch ([`SignatureBatch`]) accepts exactly the same ones, so a block's
//! validity never depends on which blocks it was checked with. Small-order
//! public keys are refused when the committee is formed.

use crate::Digest;
use ed25519_dalek::{Signer, SigningKey};
use ed25519_zebra::{batch, VerificationKey, VerificationKeyBytes};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The domain separator that starts every signed block message.
pub const BLOCK_SIGNING_DOMAIN: &[u8] = b"DAGSTREAM_BLOCK_V1";
/// The domain separator that starts every signed checkpoint summary.
pub const CHECKPOINT_SIGNING_DOMAIN: &[u8] = b"DAGSTREAM_CHECKPOINT_V1";

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

/// The exact bytes an authority signs for the checkpoint summary whose BCS
/// encoding hashes to `summary_digest`.
pub fn checkpoint_signing_message(summary_digest: &Digest) -> Vec<u8> {
    [CHECKPOINT_SIGNING_DOMAIN, summary_digest.as_bytes()].concat()
}

/// Signs the block whose BCS encoding hashes to `block_hash`.
pub fn sign_block_hash(key: &SigningKey, block_hash: &Digest) -> Signature {
    Signature(key.sign(&block_signing_message(block_hash)).to_bytes())
}

/// Checks a block signature (ZIP-215 rules, see the module docs).
pub fn verify_block_hash(
    key: &VerificationKey,
    block_hash: &Digest,
    signature: &Signature,
) -> bool {
    verify_message(key, &block_signing_message(block_hash), signature)
}

/// Signs the checkpoint summary whose BCS encoding hashes to
/// `summary_digest`.
pub fn sign_checkpoint_digest(key: &SigningKey, summary_digest: &Digest) -> Signature {
    Signature(
        key.sign(&checkpoint_signing_message(summary_digest))
            .to_bytes(),
    )
}

/// Checks a checkpoint signature (ZIP-215 rules, see the module docs).
pub fn verify_checkpoint_digest(
    key: &VerificationKey,
    summary_digest: &Digest,
    signature: &Signature,
) -> bool {
    verify_message(key, &checkpoint_signing_message(summary_digest), signature)
}

fn verify_message(key: &VerificationKey, message: &[u8], signature: &Signature) -> bool {
    let signature = ed25519_zebra::Signature::from_bytes(&signature.0);
    key.verify(&signature, message).is_ok()
}

/// Signatures checked together, at about a third of the cost of checking
/// them one by one when the batch holds dozens.
///
/// The check combines the signatures with random coefficients from the OS,
/// so a batch with any invalid signature fails except with probability
/// about 2^-128. It says only whether all are valid: to name the invalid
/// ones, check them one by one with [`verify_block_hash`] (or
/// [`verify_checkpoint_digest`]), which accepts exactly the same
/// signatures.
#[derive(Default)]
pub struct SignatureBatch {
    verifier: batch::Verifier,
    len: usize,
}

impl SignatureBatch {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the signature of the block whose BCS encoding hashes to
    /// `block_hash`.
    pub fn add(&mut self, key: &VerificationKey, block_hash: &Digest, signature: &Signature) {
        let message = block_signing_message(block_hash);
        let signature = ed25519_zebra::Signature::from_bytes(&signature.0);
        self.verifier
            .queue((VerificationKeyBytes::from(*key), signature, &message));
        self.len += 1;
    }

    /// Adds a signature of the checkpoint summary whose BCS encoding hashes
    /// to `summary_digest`.
    pub fn add_checkpoint(
        &mut self,
        key: &VerificationKey,
        summary_digest: &Digest,
        signature: &Signature,
    ) {
        let message = checkpoint_signing_message(summary_digest);
        let signature = ed25519_zebra::Signature::from_bytes(&signature.0);
        self.verifier
            .queue((VerificationKeyBytes::from(*key), signature, &message));
        self.len += 1;
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether every signature added is valid.
    pub fn verify(self) -> bool {
        self.verifier.verify(rand_core::OsRng).is_ok()
    }
}

impl std::fmt::Debug for SignatureBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignatureBatch")
            .field("len", &self.len)
            .finish()
    }
}
