//! Any bytes as a stored commit: decoded or rejected with an error.
#![no_main]

use bytes::Bytes;
use dagstream_types::TrustedCommit;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = TrustedCommit::decode(Bytes::copy_from_slice(data));
});
