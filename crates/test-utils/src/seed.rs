//! [`test_seed`]: seeded randomness that a failing run can replay.

use std::hash::BuildHasher;

/// The environment variable that sets the seed of randomized tests.
pub const SEED_ENV: &str = "DAGSTREAM_TEST_SEED";

/// The seed of a randomized test: [`SEED_ENV`] if set, else a fresh one.
///
/// The seed is printed (the test harness shows it when the test fails), so
/// that `DAGSTREAM_TEST_SEED=<seed> cargo test <name>` replays the failure.
///
/// # Panics
/// If the variable is set but is not a `u64`: a replay must not quietly run
/// another seed.
pub fn test_seed() -> u64 {
    let seed = match std::env::var(SEED_ENV) {
        Ok(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{SEED_ENV}={text:?} is not a u64")),
        Err(_) => {
            std::collections::hash_map::RandomState::new().hash_one(std::time::SystemTime::now())
        }
    };
    println!("{SEED_ENV}={seed}");
    seed
}
