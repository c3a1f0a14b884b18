//! Blocks: what each authority proposes once per round.
//!
//! `SignedBlock` bytes are the unit that is signed over, hashed, stored and
//! sent. [`VerifiedBlock`] is a block that passed every check of
//! [`VerifiedBlock::verify`] (or that this node made itself), kept together
//! with its exact bytes so that nothing is ever re-encoded. Their bytes
//! are decoded by the `wire` module: a reader equivalent to serde's BCS
//! decoder, and twice as fast.

mod wire;

use crate::checkpoint::SystemMessage;
use crate::crypto::{sign_block_hash, verify_block_hash, SignatureBatch};
use crate::error::{bcs_encode, bcs_error};
use crate::{
    AuthorityIndex, BlockLimits, BlockRef, CommitRef, Committee, Digest, Epoch, Result, Round,
    Signature, Stake, TypesError,
};
use bytes::Bytes;
use ed25519_dalek::SigningKey;
use ed25519_zebra::VerificationKey;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;
use wire::decode_signed_block;

/// An opaque transaction: its bytes, BCS-encoded as a byte string. A
/// decoded block's transactions share its wire bytes, uncopied.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Transaction(pub Bytes);

impl fmt::Debug for Transaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Transaction({} bytes)", self.0.len())
    }
}

/// The content of a block, as signed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    pub epoch: Epoch,
    pub round: Round,
    pub author: AuthorityIndex,
    pub timestamp_ms: u64,
    /// Blocks from strictly lower rounds, at most one per author, including
    /// the author's own previous block and a quorum of round - 1.
    pub ancestors: Vec<BlockRef>,
    pub transactions: Vec<Transaction>,
    /// Every commit the author decided since its previous block.
    pub commit_votes: Vec<CommitRef>,
    /// The author's signatures for the consensus system (checkpoints),
    /// checked where they are used: a wrong one does not make the block
    /// invalid.
    pub system_messages: Vec<SystemMessage>,
}

/// A block with its author's signature: the wire and storage form.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedBlock {
    pub block: Block,
    pub signature: Signature,
}

/// A block that is known to be valid, with its digest and exact bytes.
///
/// Cheap to clone: the block and its bytes are shared.
#[derive(Clone)]
pub struct VerifiedBlock {
    inner: Arc<Inner>,
}

struct Inner {
    signed: SignedBlock,
    reference: BlockRef,
    serialized: Bytes,
}

impl VerifiedBlock {
    /// Signs `block` with the author's key. For producers: the block is
    /// trusted to be well formed.
    pub fn sign(block: Block, key: &SigningKey) -> VerifiedBlock {
        let mut serialized = bcs_encode(&block);
        let signature = sign_block_hash(key, &Digest::of(&serialized));
        // BCS(SignedBlock) is BCS(Block) followed by the 64 signature bytes.
        serialized.extend_from_slice(&signature.0);
        Self::from_parts(SignedBlock { block, signature }, Bytes::from(serialized))
    }

    /// The genesis blocks of a committee, one per authority at its genesis
    /// round (0 for the chain's first committee).
    ///
    /// Nobody signs or sends them: every node derives the same ones, with an
    /// all-zero signature, the genesis time as timestamp, and nothing else.
    pub fn genesis(committee: &Committee) -> Vec<VerifiedBlock> {
        committee
            .indexes()
            .map(|author| {
                let signed = SignedBlock {
                    block: Block {
                        epoch: committee.epoch(),
                        round: committee.genesis_round(),
                        author,
                        timestamp_ms: committee.genesis().genesis_time_ms,
                        ancestors: vec![],
                        transactions: vec![],
                        commit_votes: vec![],
                        system_messages: vec![],
                    },
                    signature: Signature::ZERO,
                };
                let serialized = Bytes::from(bcs_encode(&signed));
                Self::from_parts(signed, serialized)
            })
            .collect()
    }

    /// The epoch a block's bytes claim, read without decoding the rest
    /// (BCS puts it first, as 8 little-endian bytes); `None` for bytes too
    /// short to hold one. Unverified: for sorting received blocks by epoch
    /// before verifying them with the committee of theirs.
    pub fn peek_epoch(bytes: &[u8]) -> Option<Epoch> {
        let first: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
        Some(Epoch::from_le_bytes(first))
    }

    /// Decodes and fully validates a block received from anyone.
    ///
    /// Checks, in order of cost: size, encoding (including trailing bytes),
    /// epoch, author, round, transaction and system message counts, ancestors, and last the
    /// signature. What needs other blocks (that the ancestors exist) is the
    /// DAG's job.
    pub fn verify(bytes: Bytes, committee: &Committee, limits: &BlockLimits) -> Result<Self> {
        let unsigned = Unsigned::check(bytes, committee, limits)?;
        if !verify_block_hash(
            unsigned.key,
            &unsigned.block_hash,
            &unsigned.signed.signature,
        ) {
            return Err(unsigned.invalid_signature());
        }
        Ok(unsigned.accept())
    }

    /// [`verify`](Self::verify) for many blocks, with their signatures
    /// checked in one [`SignatureBatch`]: the same blocks pass, at a
    /// fraction of the cost. Returns the blocks in their order, or the error
    /// of one invalid block (the first whose structure is invalid, else the
    /// first whose signature is).
    pub fn verify_batch(
        blocks: Vec<Bytes>,
        committee: &Committee,
        limits: &BlockLimits,
    ) -> Result<Vec<Self>> {
        let unsigned = blocks
            .into_iter()
            .map(|bytes| Unsigned::check(bytes, committee, limits))
            .collect::<Result<Vec<_>>>()?;
        let mut batch = SignatureBatch::new();
        for block in &unsigned {
            batch.add(block.key, &block.block_hash, &block.signed.signature);
        }
        if !batch.verify() {
            // Rare (only a faulty or hostile sender gets here): find the
            // culprit one by one.
            if let Some(bad) = unsigned
                .iter()
                .find(|b| !verify_block_hash(b.key, &b.block_hash, &b.signed.signature))
            {
                return Err(bad.invalid_signature());
            }
        }
        Ok(unsigned.into_iter().map(Unsigned::accept).collect())
    }
    /// Decodes a block this node verified before (from its own store),
    /// skipping signature and structure checks. Malformed bytes are still an
    /// error, never a panic.
    pub fn decode_trusted(bytes: Bytes) -> Result<Self> {
        let signed = decode_signed_block(&bytes).map_err(|err| bcs_error("stored block", err))?;
        Ok(Self::from_parts(signed, bytes))
    }

    fn from_parts(signed: SignedBlock, serialized: Bytes) -> Self {
        let reference = BlockRef {
            round: signed.block.round,
            author: signed.block.author,
            digest: Digest::of(&serialized),
        };
        VerifiedBlock {
            inner: Arc::new(Inner {
                signed,
                reference,
                serialized,
            }),
        }
    }

    pub fn reference(&self) -> BlockRef {
        self.inner.reference
    }

    pub fn digest(&self) -> Digest {
        self.inner.reference.digest
    }

    pub fn round(&self) -> Round {
        self.inner.reference.round
    }

    pub fn epoch(&self) -> Epoch {
        self.inner.signed.block.epoch
    }

    pub fn author(&self) -> AuthorityIndex {
        self.inner.reference.author
    }

    pub fn block(&self) -> &Block {
        &self.inner.signed.block
    }

    pub fn signed(&self) -> &SignedBlock {
        &self.inner.signed
    }

    pub fn timestamp_ms(&self) -> u64 {
        self.inner.signed.block.timestamp_ms
    }

    pub fn ancestors(&self) -> &[BlockRef] {
        &self.inner.signed.block.ancestors
    }

    pub fn transactions(&self) -> &[Transaction] {
        &self.inner.signed.block.transactions
    }

    pub fn commit_votes(&self) -> &[CommitRef] {
        &self.inner.signed.block.commit_votes
    }

    pub fn system_messages(&self) -> &[SystemMessage] {
        &self.inner.signed.block.system_messages
    }

    /// The exact `SignedBlock` bytes: what is hashed, stored and sent.
    pub fn serialized(&self) -> &Bytes {
        &self.inner.serialized
    }
}

impl PartialEq for VerifiedBlock {
    fn eq(&self, other: &Self) -> bool {
        self.inner.reference == other.inner.reference
    }
}

impl Eq for VerifiedBlock {}

impl fmt::Debug for VerifiedBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.reference())
    }
}

/// A received block that passed every check but its signature's.
struct Unsigned<'c> {
    signed: SignedBlock,
    bytes: Bytes,
    /// What the author signed (with the domain prefix).
    block_hash: Digest,
    key: &'c VerificationKey,
}

impl<'c> Unsigned<'c> {
    /// Every check of [`VerifiedBlock::verify`] but the signature.
    fn check(bytes: Bytes, committee: &'c Committee, limits: &BlockLimits) -> Result<Self> {
        if bytes.len() > limits.max_block_bytes {
            return Err(TypesError::TooLarge {
                what: "block",
                size: bytes.len(),
                max: limits.max_block_bytes,
            });
        }
        let signed = decode_signed_block(&bytes).map_err(|err| bcs_error("block", err))?;
        let block = &signed.block;
        if block.epoch != committee.epoch() {
            return Err(TypesError::WrongEpoch {
                expected: committee.epoch(),
                got: block.epoch,
            });
        }
        let unknown = |author| TypesError::UnknownAuthority {
            author,
            committee_size: committee.size(),
        };
        let key = committee
            .verifying_key(block.author)
            .ok_or(unknown(block.author))?;
        if block.round <= committee.genesis_round() {
            return Err(TypesError::GenesisRound {
                author: block.author,
                round: block.round,
                genesis_round: committee.genesis_round(),
            });
        }
        if block.transactions.len() > limits.max_transactions_per_block {
            return Err(TypesError::TooManyTransactions {
                count: block.transactions.len(),
                max: limits.max_transactions_per_block,
            });
        }
        if block.system_messages.len() > limits.max_system_messages_per_block {
            return Err(TypesError::TooManySystemMessages {
                count: block.system_messages.len(),
                max: limits.max_system_messages_per_block,
            });
        }
        let mut seen = vec![false; committee.size()];
        let mut parent_stake: Stake = 0;
        for ancestor in &block.ancestors {
            if ancestor.round >= block.round {
                return Err(TypesError::AncestorNotLowerRound {
                    round: block.round,
                    ancestor_round: ancestor.round,
                });
            }
            let slot = seen
                .get_mut(ancestor.author as usize)
                .ok_or(unknown(ancestor.author))?;
            if std::mem::replace(slot, true) {
                return Err(TypesError::DuplicateAncestorAuthor {
                    author: ancestor.author,
                });
            }
            if ancestor.round + 1 == block.round {
                parent_stake += committee.stake(ancestor.author);
            }
        }
        if !seen[block.author as usize] {
            return Err(TypesError::MissingOwnPreviousBlock {
                author: block.author,
            });
        }
        if !committee.reached_quorum(parent_stake) {
            return Err(TypesError::InsufficientParentStake {
                parent_round: block.round - 1,
                stake: parent_stake,
                quorum: committee.quorum_threshold(),
            });
        }
        // The signed hash covers BCS(Block): everything but the trailing 64
        // signature bytes, which decoding just proved are exactly the tail.
        let block_hash = Digest::of(&bytes[..bytes.len() - 64]);
        Ok(Unsigned {
            signed,
            bytes,
            block_hash,
            key,
        })
    }

    fn invalid_signature(&self) -> TypesError {
        TypesError::InvalidSignature {
            author: self.signed.block.author,
            round: self.signed.block.round,
        }
    }

    fn accept(self) -> VerifiedBlock {
        VerifiedBlock::from_parts(self.signed, self.bytes)
    }
}
