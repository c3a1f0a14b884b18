//! Any bytes as a received block: verified or rejected with an error, never
//! a panic or an unbounded allocation.
#![no_main]

mod committee;

use bytes::Bytes;
use dagstream_types::{BlockLimits, VerifiedBlock};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = VerifiedBlock::verify(
        Bytes::copy_from_slice(data),
        committee::committee(),
        &BlockLimits::default(),
    );
});
