//! Which authority leads each round.

use dagstream_types::{AuthorityIndex, Committee, Digest, Round, Stake};

/// Domain separator of the leader schedule hash.
const LEADER_DOMAIN: &[u8] = b"DAGSTREAM_LEADER_V1";

/// A stake-weighted, pseudo-random leader per round, known from the genesis
/// alone.
///
/// The leader of round `r` is found by hashing
/// `"DAGSTREAM_LEADER_V1" || committee digest || LE64(r)` with BLAKE3, reading
/// the first 8 bytes as a little-endian `u64`, taking it modulo the total
/// stake, and picking the authority whose cumulative stake range (in committee
/// order) contains that value. The modulo bias is below 2^-40 for any real
/// committee.
#[derive(Clone, Debug)]
pub struct LeaderSchedule {
    committee_digest: Digest,
    /// `cumulative[i]` is the stake of authorities `0..=i`.
    cumulative: Vec<Stake>,
}

impl LeaderSchedule {
    pub fn new(committee: &Committee) -> Self {
        let cumulative = committee
            .authorities()
            .scan(0, |sum, a| {
                *sum += a.stake;
                Some(*sum)
            })
            .collect();
        LeaderSchedule {
            committee_digest: committee.digest(),
            cumulative,
        }
    }

    pub fn leader(&self, round: Round) -> AuthorityIndex {
        let mut hasher = blake3::Hasher::new();
        hasher.update(LEADER_DOMAIN);
        hasher.update(self.committee_digest.as_bytes());
        hasher.update(&round.to_le_bytes());
        let hash = hasher.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&hash.as_bytes()[..8]);
        let total = *self.cumulative.last().expect("a committee is never empty");
        let point = u64::from_le_bytes(first) % total;
        self.cumulative.partition_point(|&sum| sum <= point) as AuthorityIndex
    }
}
