//! The committee every target checks against: 4 authorities, seed 0, the
//! same on every run.

use dagstream_sim::{generate, GenesisParams};
use dagstream_types::Committee;
use std::sync::OnceLock;

pub fn committee() -> &'static Committee {
    static COMMITTEE: OnceLock<Committee> = OnceLock::new();
    COMMITTEE.get_or_init(|| {
        let (genesis, _) = generate(&GenesisParams {
            authorities: 4,
            round_interval_ms: 100,
            genesis_time_ms: 0,
            gc_depth_rounds: 50,
            seed: 0,
        });
        Committee::new(genesis).expect("a valid generated committee")
    })
}
