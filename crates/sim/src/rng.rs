//! Seeded, portable randomness.
//!
//! Every random choice of the simulator is read from a BLAKE3 extendable
//! output keyed by `(seed, purpose, round, author)`. The stream depends on
//! nothing but those values: no library's RNG algorithm, no platform, no
//! call order. Two processes, or two versions of dagstream, make the same
//! choices.

/// Key-derivation context of every simulator stream.
const CONTEXT: &str = "dagstream simulator v1";

/// A deterministic byte stream for one decision.
pub struct SeededStream(blake3::OutputReader);

impl SeededStream {
    pub fn new(seed: u64, purpose: &str, round: u64, author: u32) -> Self {
        let mut hasher = blake3::Hasher::new_derive_key(CONTEXT);
        hasher.update(&seed.to_le_bytes());
        hasher.update(&(purpose.len() as u64).to_le_bytes());
        hasher.update(purpose.as_bytes());
        hasher.update(&round.to_le_bytes());
        hasher.update(&author.to_le_bytes());
        SeededStream(hasher.finalize_xof())
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut bytes = [0u8; 8];
        self.0.fill(&mut bytes);
        u64::from_le_bytes(bytes)
    }

    /// A value in `0..bound` (`bound > 0`). The modulo bias is at most
    /// `bound / 2^64`: nothing a simulation can observe.
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }

    /// True with probability `percent / 100`.
    pub fn percent(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn fill(&mut self, out: &mut [u8]) {
        self.0.fill(out);
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}
