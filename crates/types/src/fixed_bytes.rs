//! Serde for fixed-size byte arrays: raw bytes in BCS (a tuple, no length
//! prefix), lowercase hex in human-readable formats such as `genesis.json`.
//!
//! serde only implements `Serialize` for arrays up to 32 elements and encodes
//! them element by element; this module gives every `[u8; N]` field of the
//! data model one encoding whatever its length.

use serde::de::{Error as _, SeqAccess, Visitor};
use serde::ser::SerializeTuple;
use serde::{Deserializer, Serializer};

pub fn serialize<S: Serializer, const N: usize>(
    bytes: &[u8; N],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    if serializer.is_human_readable() {
        serializer.serialize_str(&hex::encode(bytes))
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
        deserializer.deserialize_tuple(N, ArrayVisitor::<N>)
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
        for (i, slot) in out.iter_mut().enumerate() {
            *slot = seq
                .next_element()?
                .ok_or_else(|| A::Error::invalid_length(i, &self))?;
        }
        Ok(out)
    }
}
