//! The decoder of a block's wire bytes (the BCS of [`SignedBlock`]),
//! written out for the hot path: every block an observer receives, and
//! every block of every commit it catches up on, goes through it.
//!
//! It accepts exactly the bytes that `bcs::from_bytes::<SignedBlock>`
//! accepts, returns the same value, and refuses the rest with the same
//! error; the tests run both on arbitrary bytes and on every kind of damage
//! to valid encodings, and compare. It is twice as fast (13% of a
//! bootstrapping observer's CPU, hashing included, against 28%,
//! `docs/benchmarks.md`): the serde path reads the input a byte at a time
//! (`bcs` reads a slice that way) and visits each digest and signature word
//! by word, where this one copies each fixed-size field at once.
//!
//! The layout, in BCS terms (integers little-endian, lengths ULEB128):
//!
//! ```text
//! SignedBlock = Block signature:[u8; 64]
//! Block = epoch:u64 round:u64 author:u32 timestamp_ms:u64
//!         len (round:u64 author:u32 digest:[u8; 32])*        ancestors
//!         len (len byte*)*                                   transactions
//!         len (index:u64 digest:[u8; 32])*                   commit_votes
//!         len SystemMessage*                                 system_messages
//! SystemMessage = 0 sequence:u64 summary_digest:[u8; 32] signature:[u8; 64]
//!               | 1 round:u64 len [u8; 48]*
//!               | 2
//! ```

use super::{Block, SignedBlock, Transaction};
use crate::checkpoint::SystemMessage;
use crate::crypto::Signature;
use crate::randomness::BlsSignature;
use crate::{BlockRef, CommitRef, Digest};
use bcs::Error;
use bytes::Bytes;
use serde::de::{Error as _, Unexpected};

type Result<T> = std::result::Result<T, Error>;

/// Decodes `bytes` as `bcs::from_bytes::<SignedBlock>` does. The
/// transactions are slices of `bytes`, not copies.
pub(crate) fn decode_signed_block(bytes: &Bytes) -> Result<SignedBlock> {
    let mut reader = Reader { rest: bytes };
    let block = Block {
        epoch: reader.u64()?,
        round: reader.u64()?,
        author: reader.u32()?,
        timestamp_ms: reader.u64()?,
        ancestors: reader.seq(BLOCK_REF_BYTES, |r| {
            Ok(BlockRef {
                round: r.u64()?,
                author: r.u32()?,
                digest: Digest(r.array()?),
            })
        })?,
        transactions: reader.seq(1, |r| {
            let len = r.length()?;
            Ok(Transaction(bytes.slice_ref(r.take(len)?)))
        })?,
        commit_votes: reader.seq(COMMIT_REF_BYTES, |r| {
            Ok(CommitRef {
                index: r.u64()?,
                digest: Digest(r.array()?),
            })
        })?,
        system_messages: reader.seq(1, system_message)?,
    };
    let signature = Signature(reader.array()?);
    if !reader.rest.is_empty() {
        return Err(Error::RemainingInput);
    }
    Ok(SignedBlock { block, signature })
}

/// Encoded sizes, to bound what a length prefix may make us reserve.
const BLOCK_REF_BYTES: usize = 8 + 4 + 32;
const COMMIT_REF_BYTES: usize = 8 + 32;

/// Variants of [`SystemMessage`], in declaration order.
const SYSTEM_MESSAGE_VARIANTS: u32 = 3;

fn system_message(reader: &mut Reader<'_>) -> Result<SystemMessage> {
    match reader.uleb128_u32()? {
        0 => Ok(SystemMessage::CheckpointSignature {
            sequence: reader.u64()?,
            summary_digest: Digest(reader.array()?),
            signature: Signature(reader.array()?),
        }),
        1 => Ok(SystemMessage::RandomnessPartial {
            round: reader.u64()?,
            shares: reader.seq(48, |r| Ok(BlsSignature(r.array()?)))?,
        }),
        2 => Ok(SystemMessage::EndOfPublish),
        // serde's derived visitor refuses an unknown index with this error.
        other => Err(Error::invalid_value(
            Unexpected::Unsigned(u64::from(other)),
            &format!("variant index 0 <= i < {SYSTEM_MESSAGE_VARIANTS}").as_str(),
        )),
    }
}

/// The input not read yet.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8]> {
        if self.rest.len() < len {
            return Err(Error::Eof);
        }
        let (taken, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        Ok(self.take(N)?.try_into().expect("took N bytes"))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    /// A ULEB128 `u32`, canonical only, as `bcs` reads lengths and variant
    /// indices.
    fn uleb128_u32(&mut self) -> Result<u32> {
        let mut value: u64 = 0;
        for shift in (0..32).step_by(7) {
            let [byte] = self.array()?;
            let digit = byte & 0x7f;
            value |= u64::from(digit) << shift;
            if digit == byte {
                if shift > 0 && digit == 0 {
                    return Err(Error::NonCanonicalUleb128Encoding);
                }
                return u32::try_from(value)
                    .map_err(|_| Error::IntegerOverflowDuringUleb128Decoding);
            }
        }
        Err(Error::IntegerOverflowDuringUleb128Decoding)
    }

    fn length(&mut self) -> Result<usize> {
        let len = self.uleb128_u32()? as usize;
        if len > bcs::MAX_SEQUENCE_LENGTH {
            return Err(Error::ExceededMaxLen(len));
        }
        Ok(len)
    }

    /// A sequence of items of at least `min_bytes` each. What is reserved
    /// is bounded by the input left, whatever the length prefix says.
    fn seq<T>(
        &mut self,
        min_bytes: usize,
        mut item: impl FnMut(&mut Self) -> Result<T>,
    ) -> Result<Vec<T>> {
        let len = self.length()?;
        let mut items = Vec::with_capacity(len.min(self.rest.len() / min_bytes));
        for _ in 0..len {
            items.push(item(self)?);
        }
        Ok(items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn serde_decode(bytes: &[u8]) -> Result<SignedBlock> {
        bcs::from_bytes(bytes)
    }

    fn wire_decode(bytes: &[u8]) -> Result<SignedBlock> {
        decode_signed_block(&Bytes::copy_from_slice(bytes))
    }

    fn digest() -> impl Strategy<Value = Digest> {
        any::<[u8; 32]>().prop_map(Digest)
    }

    fn system_message() -> impl Strategy<Value = SystemMessage> {
        prop_oneof![
            (any::<u64>(), digest(), any::<[u8; 32]>()).prop_map(
                |(sequence, summary_digest, half)| {
                    let mut signature = [0u8; 64];
                    signature[..32].copy_from_slice(&half);
                    SystemMessage::CheckpointSignature {
                        sequence,
                        summary_digest,
                        signature: Signature(signature),
                    }
                }
            ),
            (
                any::<u64>(),
                proptest::collection::vec(any::<[u8; 16]>(), 0..4)
            )
                .prop_map(|(round, shares)| SystemMessage::RandomnessPartial {
                    round,
                    shares: shares
                        .iter()
                        .map(|seed| {
                            let mut share = [0u8; 48];
                            share[..16].copy_from_slice(seed);
                            share[32..].copy_from_slice(seed);
                            BlsSignature(share)
                        })
                        .collect(),
                }),
            Just(SystemMessage::EndOfPublish),
        ]
    }

    prop_compose! {
        fn signed_block()(
            epoch in any::<u64>(),
            round in any::<u64>(),
            author in any::<u32>(),
            timestamp_ms in any::<u64>(),
            ancestors in proptest::collection::vec((any::<u64>(), any::<u32>(), digest()), 0..6),
            // Lengths past 127 take two ULEB128 bytes.
            transactions in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..4),
            commit_votes in proptest::collection::vec((any::<u64>(), digest()), 0..3),
            system_messages in proptest::collection::vec(system_message(), 0..3),
            signature in any::<[u8; 32]>(),
        ) -> SignedBlock {
            let mut full = [0u8; 64];
            full[32..].copy_from_slice(&signature);
            SignedBlock {
                block: Block {
                    epoch,
                    round,
                    author,
                    timestamp_ms,
                    ancestors: ancestors
                        .into_iter()
                        .map(|(round, author, digest)| BlockRef { round, author, digest })
                        .collect(),
                    transactions: transactions.into_iter().map(|t| Transaction(t.into())).collect(),
                    commit_votes: commit_votes
                        .into_iter()
                        .map(|(index, digest)| CommitRef { index, digest })
                        .collect(),
                    system_messages,
                },
                signature: Signature(full),
            }
        }
    }

    /// One way to damage an encoding.
    #[derive(Clone, Debug)]
    enum Damage {
        Flip { at: prop::sample::Index, mask: u8 },
        Truncate { at: prop::sample::Index },
        Insert { at: prop::sample::Index, byte: u8 },
        Remove { at: prop::sample::Index },
        Append(Vec<u8>),
    }

    fn damage() -> impl Strategy<Value = Damage> {
        let at = any::<prop::sample::Index>();
        prop_oneof![
            (at.clone(), 1u8..=255).prop_map(|(at, mask)| Damage::Flip { at, mask }),
            at.clone().prop_map(|at| Damage::Truncate { at }),
            // Bytes that matter most: lengths, continuation bits, tags.
            (
                at.clone(),
                prop_oneof![Just(0u8), Just(0x80), Just(0xff), Just(3), any::<u8>()]
            )
                .prop_map(|(at, byte)| Damage::Insert { at, byte }),
            at.prop_map(|at| Damage::Remove { at }),
            proptest::collection::vec(any::<u8>(), 1..4).prop_map(Damage::Append),
        ]
    }

    fn apply(bytes: &mut Vec<u8>, damage: &Damage) {
        if bytes.is_empty() && !matches!(damage, Damage::Insert { .. } | Damage::Append(_)) {
            return;
        }
        match damage {
            Damage::Flip { at, mask } => {
                let at = at.index(bytes.len());
                bytes[at] ^= mask;
            }
            Damage::Truncate { at } => bytes.truncate(at.index(bytes.len())),
            Damage::Insert { at, byte } => bytes.insert(at.index(bytes.len() + 1), *byte),
            Damage::Remove { at } => {
                bytes.remove(at.index(bytes.len()));
            }
            Damage::Append(more) => bytes.extend_from_slice(more),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        #[test]
        fn valid_encodings_decode_to_the_same_block(block in signed_block()) {
            let bytes = bcs::to_bytes(&block).unwrap();
            prop_assert_eq!(wire_decode(&bytes), Ok(block));
        }

        #[test]
        fn damaged_encodings_get_the_same_answer(
            block in signed_block(),
            damages in proptest::collection::vec(damage(), 1..4),
        ) {
            let mut bytes = bcs::to_bytes(&block).unwrap();
            for damage in &damages {
                apply(&mut bytes, damage);
            }
            prop_assert_eq!(wire_decode(&bytes), serde_decode(&bytes));
        }

        #[test]
        fn arbitrary_bytes_get_the_same_answer(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            prop_assert_eq!(wire_decode(&bytes), serde_decode(&bytes));
        }
    }

    /// A block with nothing but `transactions`.
    fn block_of(transactions: Vec<Transaction>) -> SignedBlock {
        SignedBlock {
            block: Block {
                epoch: 1,
                round: 2,
                author: 3,
                timestamp_ms: 4,
                ancestors: vec![],
                transactions,
                commit_votes: vec![],
                system_messages: vec![],
            },
            signature: Signature([7; 64]),
        }
    }

    #[test]
    fn transactions_are_slices_of_the_wire_bytes_not_copies() {
        let block = block_of(vec![
            Transaction(vec![5; 300].into()),
            Transaction(vec![6; 2].into()),
        ]);
        let bytes = Bytes::from(bcs::to_bytes(&block).unwrap());
        let decoded = decode_signed_block(&bytes).unwrap();
        assert_eq!(decoded, block);
        let wire = bytes.as_ptr_range();
        for transaction in &decoded.block.transactions {
            let within = transaction.0.as_ptr_range();
            assert!(wire.start <= within.start && within.end <= wire.end);
        }
    }

    /// Refusals of each kind, spelled out: the same error as serde's.
    #[test]
    fn each_refusal_matches_serde() {
        let block = block_of(vec![]);
        let valid = bcs::to_bytes(&block).unwrap();
        // Offset of the ancestors' length, the first ULEB128.
        let lengths = 8 + 8 + 4 + 8;
        let with_lengths = |prefix: &[u8]| {
            let mut bytes = valid[..lengths].to_vec();
            bytes.extend_from_slice(prefix);
            bytes
        };
        let cases: Vec<(Vec<u8>, Error)> = vec![
            (valid[..valid.len() - 1].to_vec(), Error::Eof),
            ([valid.clone(), vec![0]].concat(), Error::RemainingInput),
            (
                with_lengths(&[0x80, 0x00]),
                Error::NonCanonicalUleb128Encoding,
            ),
            (
                with_lengths(&[0xff, 0xff, 0xff, 0xff, 0x1f]),
                Error::IntegerOverflowDuringUleb128Decoding,
            ),
            (
                with_lengths(&[0xff, 0xff, 0xff, 0xff, 0x0f]),
                Error::ExceededMaxLen(u32::MAX as usize),
            ),
            // No ancestors, transactions or votes; one system message of
            // variant 3.
            (
                with_lengths(&[0, 0, 0, 1, 3]),
                Error::invalid_value(Unexpected::Unsigned(3), &"variant index 0 <= i < 3"),
            ),
        ];
        for (bytes, expected) in cases {
            assert_eq!(serde_decode(&bytes), Err(expected.clone()), "{bytes:?}");
            assert_eq!(wire_decode(&bytes), Err(expected), "{bytes:?}");
        }
    }
}
