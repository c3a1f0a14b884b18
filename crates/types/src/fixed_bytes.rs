//! Serde for fixed-size byte arrays: raw bytes in BCS (a tuple, no length
//! prefix), lowercase hex in human-readable formats such as `genesis.json`.
//!
//! serde only implements `Serialize` for arrays up to 32 elements and encodes
//! them element by element; this module gives every `[u8; N]` field of the
//! data model one encoding whatever its length.
//!
//! Arrays whose length is a multiple of 8 (digests, keys, signatures) go
//! through serde as a tuple of little-endian `u64` words. In BCS, which
//! writes a `u64` as its 8 little-endian bytes and a tuple as its elements
//! back to back, those are exactly the array's bytes; decoding takes an
//! eighth of the calls, which matters for the hundred digests of a block's
//! ancestors.

use serde::de::{Error as _, SeqAccess, Visitor};
use serde::ser::SerializeTuple;
use serde::{Deserializer, Serializer};

pub fn serialize<S: Serializer, const N: usize>(
    bytes: &[u8; N],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    if serializer.is_human_readable() {
        serializer.serialize_str(&hex::encode(bytes))
    } else if N.is_multiple_of(8) {
        let mut tuple = serializer.serialize_tuple(N / 8)?;
        for word in bytes.chunks_exact(8) {
            let word: [u8; 8] = word.try_into().expect("chunks of 8");
            tuple.serialize_element(&u64::from_le_bytes(word))?;
        }
        tuple.end()
    } else {
        let mut tuple = serializer.serialize_tuple(N)?;
        for byte in bytes {
            tuple.serialize_element(byte)?;
        }
        tuple.end()
    }
}

pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
    deserializer: D,
) -> Result<[u8; N], D::Error> {
    if deserializer.is_human_readable() {
        let text: std::borrow::Cow<'de, str> = serde::Deserialize::deserialize(deserializer)?;
        let mut out = [0u8; N];
        hex::decode_to_slice(text.as_bytes(), &mut out).map_err(|err| {
            D::Error::custom(format!("expected {N} bytes as {} hex digits: {err}", 2 * N))
        })?;
        Ok(out)
    } else {
        let len = if N.is_multiple_of(8) { N / 8 } else { N };
        deserializer.deserialize_tuple(len, ArrayVisitor::<N>)
    }
}

struct ArrayVisitor<const N: usize>;

impl<'de, const N: usize> Visitor<'de> for ArrayVisitor<N> {
    type Value = [u8; N];

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "{N} bytes")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = [0u8; N];
        if N.is_multiple_of(8) {
            for (i, slot) in out.chunks_exact_mut(8).enumerate() {
                let word: u64 = seq
                    .next_element()?
                    .ok_or_else(|| A::Error::invalid_length(8 * i, &self))?;
                slot.copy_from_slice(&word.to_le_bytes());
            }
            return Ok(out);
        }
        for (i, slot) in out.iter_mut().enumerate() {
            *slot = seq
                .next_element()?
                .ok_or_else(|| A::Error::invalid_length(i, &self))?;
        }
        Ok(out)
    }
}
