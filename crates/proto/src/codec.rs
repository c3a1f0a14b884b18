//! The codec of the generated clients and servers: prost, with the buffer
//! of each encoded message reserved at the message's exact length.
//!
//! tonic encodes a message into a buffer that starts small, so a batch of a
//! few megabytes grew it by doubling: each batch was copied several times
//! on the way, and its buffer ended up to twice its size. For a stalled
//! subscriber, that buffer is held until the subscriber reads: it was about
//! 8.5 MB of the memory each one cost, for a 4 MB batch (heaptrack,
//! `docs/benchmarks.md`). Decoding is prost's, unchanged.

use prost::Message;
use std::marker::PhantomData;
use tonic::codec::{Codec, EncodeBuf, Encoder};
use tonic::Status;
use tonic_prost::ProstCodec;

/// [`ProstCodec`] with exact-size encode buffers.
#[derive(Debug, Clone)]
pub struct ExactCodec<T, U> {
    prost: ProstCodec<T, U>,
}

impl<T, U> Default for ExactCodec<T, U> {
    fn default() -> Self {
        ExactCodec {
            prost: ProstCodec::default(),
        }
    }
}

impl<T, U> Codec for ExactCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ExactEncoder<T>;
    type Decoder = <ProstCodec<T, U> as Codec>::Decoder;

    fn encoder(&mut self) -> Self::Encoder {
        ExactEncoder {
            _message: PhantomData,
        }
    }

    fn decoder(&mut self) -> Self::Decoder {
        self.prost.decoder()
    }
}

/// Encodes a prost message after reserving its length in the buffer.
#[derive(Debug, Clone)]
pub struct ExactEncoder<T> {
    _message: PhantomData<T>,
}

impl<T: Message> Encoder for ExactEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.reserve(item.encoded_len());
        item.encode(buf)
            .map_err(|err| Status::internal(format!("encoding a message: {err}")))
    }
}
