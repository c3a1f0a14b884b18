//! Any bytes as a commit-stream response: decoded and verified from the
//! chain's start, or rejected with an error. An accepted batch would need a
//! quorum's signatures, so nothing random is ever accepted.
#![no_main]

mod committee;

use dagstream_observer::verify::verify_commit_batch;
use dagstream_proto::v1::CommitStreamResponse;
use dagstream_types::BlockLimits;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(response) = CommitStreamResponse::decode(data) {
        let verified = verify_commit_batch(
            committee::committee(),
            &BlockLimits::default(),
            None,
            &response,
        );
        if let Ok(commits) = verified {
            assert!(commits.is_empty(), "a random batch was accepted");
        }
    }
});
