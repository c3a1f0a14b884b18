//! The cryptography of randomness: dealing shares (the simulator's
//! stand-in for a DKG), signing partials, interpolating them, and
//! verifying signatures under the group key.

use super::{
    round_message, BlsPublicKey, BlsSignature, RandomnessKeys, RandomnessOutput, RandomnessRound,
    MAX_RANDOMNESS_SHARES, RANDOMNESS_DST,
};
use crate::{AuthorityIndex, Epoch, Result, Stake, TypesError};
use blstrs::{Bls12, G1Affine, G1Projective, G2Affine, G2Prepared, G2Projective, Scalar};
use ff::{BatchInvert, Field};
use group::prime::PrimeCurveAffine;
use group::{Curve, Group};
use pairing::{MillerLoopResult, MultiMillerLoop};
use std::ops::Range;
use std::sync::OnceLock;

/// A round's message hashed to G1: computed once, signed by every share.
#[derive(Clone, Copy, Debug)]
pub struct HashedRound {
    round: RandomnessRound,
    point: G1Projective,
}

impl HashedRound {
    pub fn new(epoch: Epoch, round: RandomnessRound) -> Self {
        let point = G1Projective::hash_to_curve(&round_message(epoch, round), RANDOMNESS_DST, &[]);
        HashedRound { round, point }
    }

    pub fn round(&self) -> RandomnessRound {
        self.round
    }
}

/// Every share's secret, dealt from a seed by evaluating one random
/// polynomial of degree `threshold - 1` (Shamir): a trusted dealer, which a
/// real chain replaces with a DKG. For the simulator and tests only.
#[derive(Clone)]
pub struct RandomnessDealing {
    secret: Scalar,
    shares: Vec<Scalar>,
    keys: RandomnessKeys,
}

impl RandomnessDealing {
    /// Deals `total_shares` shares, any `threshold` of which sign, from
    /// `seed`. Panics on `threshold` outside `1..=total_shares`: the dealer
    /// is given a committee's own numbers.
    pub fn deal(seed: &[u8; 32], total_shares: u64, threshold: u64) -> Self {
        assert!(
            (1..=total_shares).contains(&threshold),
            "threshold {threshold} of {total_shares} shares"
        );
        let coefficients: Vec<Scalar> = (0..threshold)
            .map(|k| {
                let mut material = seed.to_vec();
                material.extend_from_slice(&k.to_le_bytes());
                let mut bytes = blake3::derive_key("dagstream randomness dealing v1", &material);
                // Below 2^254 < r: always a canonical scalar.
                bytes[31] &= 0x3f;
                Option::from(Scalar::from_bytes_le(&bytes)).expect("below the group order")
            })
            .collect();
        // p(x) by Horner; share i is p(i + 1), the secret p(0).
        let evaluate = |x: Scalar| {
            coefficients
                .iter()
                .rev()
                .fold(Scalar::ZERO, |acc, c| acc * x + c)
        };
        let shares: Vec<Scalar> = (1..=total_shares)
            .map(|x| evaluate(Scalar::from(x)))
            .collect();
        let public = |s: &Scalar| BlsPublicKey((G2Projective::generator() * s).to_compressed());
        let keys = RandomnessKeys {
            group_key: public(&coefficients[0]),
            share_keys: shares.iter().map(public).collect(),
        };
        RandomnessDealing {
            secret: coefficients[0],
            shares,
            keys,
        }
    }

    pub fn keys(&self) -> &RandomnessKeys {
        &self.keys
    }

    /// The partial signatures of `shares` (an authority's range) on
    /// `round`.
    pub fn sign_shares(&self, round: &HashedRound, shares: Range<u64>) -> Vec<BlsSignature> {
        shares
            .filter_map(|share| self.shares.get(share as usize))
            .map(|secret| BlsSignature((round.point * secret).to_compressed()))
            .collect()
    }

    /// The group's signature on `round`, signed with the dealt secret: the
    /// same bytes as any threshold of partials interpolates to.
    pub fn sign_group(&self, round: &HashedRound) -> RandomnessOutput {
        RandomnessOutput {
            round: round.round,
            signature: BlsSignature((round.point * self.secret).to_compressed()),
        }
    }
}

/// What interpolating a round's partials gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Aggregation {
    /// The round's signature, verified; `None` if the partials that are
    /// valid do not reach the threshold.
    pub output: Option<RandomnessOutput>,
    /// Authorities whose partials failed verification, in the order given.
    pub forgers: Vec<AuthorityIndex>,
}

/// The public side of a committee's randomness. The group key is decoded
/// and checked when the committee is built; the share keys are needed only
/// to single out forged partials (when interpolation fails), so each is
/// decoded, checked and prepared the first time it is needed, and kept.
/// An observer that takes a new committee at every epoch so pays nothing
/// for the shares (at the mainnet profile, 110 G2 points checked for the
/// subgroup and prepared for pairings: 18 ms a hand-off, and 2 MB held).
#[derive(Clone, Debug)]
pub struct RandomnessVerifier {
    epoch: Epoch,
    threshold: u64,
    group_key: G2Prepared,
    share_keys: Vec<BlsPublicKey>,
    /// `share_keys`, decoded on first use; `None` for a key that is not a
    /// valid point (every partial of that share is then refused).
    prepared_share_keys: Vec<OnceLock<Option<G2Prepared>>>,
    /// `-g2`, the other side of every pairing check.
    negative_generator: G2Prepared,
    /// Authority `i` holds shares `first_share[i]..first_share[i + 1]`.
    first_share: Vec<u64>,
}

impl RandomnessVerifier {
    /// Decodes `keys` for a committee of `epoch` with `stakes`, in
    /// committee order, whose quorum is `threshold` stake. A committee that
    /// cannot run randomness is an [`TypesError::InvalidCommittee`].
    pub(crate) fn new(
        keys: &RandomnessKeys,
        epoch: Epoch,
        stakes: impl ExactSizeIterator<Item = Stake>,
        threshold: Stake,
    ) -> Result<Self> {
        let invalid = |reason: String| TypesError::InvalidCommittee { reason };
        let mut first_share = Vec::with_capacity(stakes.len() + 1);
        let mut total: u64 = 0;
        for stake in stakes {
            first_share.push(total);
            total = total.saturating_add(stake);
        }
        first_share.push(total);
        if total > MAX_RANDOMNESS_SHARES {
            return Err(invalid(format!(
                "randomness needs one share per unit of stake, at most \
                 {MAX_RANDOMNESS_SHARES}; the total stake is {total}"
            )));
        }
        if keys.share_keys.len() as u64 != total {
            return Err(invalid(format!(
                "randomness has {} share keys for a total stake of {total}",
                keys.share_keys.len()
            )));
        }
        let group_key = decode_key(&keys.group_key)
            .ok_or_else(|| invalid("randomness group key is not a valid G2 point".into()))?;
        Ok(RandomnessVerifier {
            epoch,
            threshold,
            group_key,
            share_keys: keys.share_keys.clone(),
            prepared_share_keys: keys.share_keys.iter().map(|_| OnceLock::new()).collect(),
            negative_generator: G2Prepared::from(-G2Affine::generator()),
            first_share,
        })
    }

    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// The shares a signature needs: the quorum, in stake.
    pub fn threshold(&self) -> u64 {
        self.threshold
    }

    /// The shares `author` holds; empty outside the committee.
    pub fn shares_of(&self, author: AuthorityIndex) -> Range<u64> {
        let i = author as usize;
        match (self.first_share.get(i), self.first_share.get(i + 1)) {
            (Some(&first), Some(&end)) => first..end,
            _ => 0..0,
        }
    }

    /// Checks a round's signature against the group key.
    pub fn verify(&self, output: &RandomnessOutput) -> Result<()> {
        let hashed = HashedRound::new(self.epoch, output.round);
        let invalid = TypesError::InvalidRandomness {
            round: output.round,
        };
        let signature = decode_signature(&output.signature).ok_or(invalid.clone())?;
        if pairing_holds(
            &signature,
            &hashed.point.to_affine(),
            &self.group_key,
            &self.negative_generator,
        ) {
            Ok(())
        } else {
            Err(invalid)
        }
    }

    /// Checks many rounds' signatures at once: with random weights `w_i`,
    /// `e(Σ w_i·σ_i, g2) = e(Σ w_i·H(m_i), group key)`, two pairings for
    /// the lot. The weights are derived from every signature checked, so a
    /// sender cannot pick forgeries that cancel out. On failure each is
    /// checked alone, to name the first that is wrong.
    pub fn verify_batch(&self, outputs: &[RandomnessOutput]) -> Result<()> {
        match outputs {
            [] => return Ok(()),
            [one] => return self.verify(one),
            _ => {}
        }
        let mut transcript = blake3::Hasher::new_derive_key("dagstream randomness batch v1");
        let mut signatures = Vec::with_capacity(outputs.len());
        let mut hashes = Vec::with_capacity(outputs.len());
        for output in outputs {
            let signature =
                decode_signature(&output.signature).ok_or(TypesError::InvalidRandomness {
                    round: output.round,
                })?;
            transcript.update(&output.round.to_le_bytes());
            transcript.update(&output.signature.0);
            signatures.push(signature);
            hashes.push(HashedRound::new(self.epoch, output.round).point);
        }
        // 128-bit weights: a forgery passes with probability 2^-128.
        let mut weights = vec![0u8; 16 * outputs.len()];
        transcript.finalize_xof().fill(&mut weights);
        let mut hashes_affine = vec![G1Affine::identity(); hashes.len()];
        G1Projective::batch_normalize(&hashes, &mut hashes_affine);
        let signature = weighted_sum(&signatures, &weights, 128).to_affine();
        let hash = weighted_sum(&hashes_affine, &weights, 128).to_affine();
        if pairing_holds(&signature, &hash, &self.group_key, &self.negative_generator) {
            return Ok(());
        }
        outputs.iter().try_for_each(|output| self.verify(output))
    }

    /// Whether every share of `author`'s partial on `round` is its own
    /// share's signature (and there is one per share).
    pub fn verify_partial(
        &self,
        round: &HashedRound,
        author: AuthorityIndex,
        partial: &[BlsSignature],
    ) -> bool {
        let shares = self.shares_of(author);
        if partial.len() as u64 != shares.end - shares.start || shares.is_empty() {
            return false;
        }
        let hash = round.point.to_affine();
        shares.zip(partial).all(|(share, signature)| {
            let (Some(key), Some(signature)) = (self.share_key(share), decode_signature(signature))
            else {
                return false;
            };
            pairing_holds(&signature, &hash, key, &self.negative_generator)
        })
    }

    /// Share `share`'s key, decoded and prepared on first use; `None` if
    /// it is not a valid point (or there is no such share).
    fn share_key(&self, share: u64) -> Option<&G2Prepared> {
        let i = usize::try_from(share).ok()?;
        let (key, prepared) = (self.share_keys.get(i)?, self.prepared_share_keys.get(i)?);
        prepared.get_or_init(|| decode_key(key)).as_ref()
    }

    /// Interpolates `round`'s signature from partials, each an author and
    /// its signatures, one per share. The first partials that reach the
    /// threshold are interpolated and the result verified; if it is wrong,
    /// every partial is verified alone, the forged ones set aside, and the
    /// rest interpolated if they still reach it.
    pub fn aggregate(
        &self,
        round: &HashedRound,
        partials: &[(AuthorityIndex, &[BlsSignature])],
    ) -> Aggregation {
        if let Some(output) = self.interpolate(round, partials.iter().copied()) {
            return Aggregation {
                output: Some(output),
                forgers: Vec::new(),
            };
        }
        let (valid, forged): (Vec<_>, Vec<_>) = partials
            .iter()
            .partition(|(author, partial)| self.verify_partial(round, *author, partial));
        Aggregation {
            output: self.interpolate(round, valid.into_iter().copied()),
            forgers: forged.into_iter().map(|(author, _)| *author).collect(),
        }
    }

    /// Lagrange interpolation at 0 of the first `threshold` shares, then a
    /// check against the group key. `None` if they do not reach the
    /// threshold, or the result is wrong.
    fn interpolate<'a>(
        &self,
        round: &HashedRound,
        partials: impl Iterator<Item = (AuthorityIndex, &'a [BlsSignature])>,
    ) -> Option<RandomnessOutput> {
        let threshold = self.threshold as usize;
        let mut points = Vec::with_capacity(threshold);
        let mut xs = Vec::with_capacity(threshold);
        'partials: for (author, partial) in partials {
            let shares = self.shares_of(author);
            if partial.len() as u64 != shares.end - shares.start || xs.contains(&(shares.start + 1))
            {
                continue;
            }
            for (share, signature) in shares.zip(partial) {
                points.push(decode_signature(signature)?);
                xs.push(share + 1);
                if xs.len() == threshold {
                    break 'partials;
                }
            }
        }
        if xs.len() < threshold {
            return None;
        }
        let xs: Vec<Scalar> = xs.into_iter().map(Scalar::from).collect();
        // λ_i = Π_{j≠i} x_j / (x_j - x_i): the numerators are the product of
        // all x over x_i; the denominators are inverted in one batch.
        let product: Scalar = xs.iter().product();
        let mut denominators: Vec<Scalar> = xs
            .iter()
            .map(|xi| {
                xs.iter()
                    .filter(|xj| *xj != xi)
                    .map(|xj| *xj - xi)
                    .product::<Scalar>()
                    * xi
            })
            .collect();
        denominators.iter_mut().batch_invert();
        let coefficients: Vec<u8> = denominators
            .iter()
            .flat_map(|d| (product * d).to_bytes_le())
            .collect();
        let output = RandomnessOutput {
            round: round.round,
            signature: BlsSignature(weighted_sum(&points, &coefficients, 256).to_compressed()),
        };
        self.verify(&output).ok().map(|()| output)
    }
}

/// A public key in G2, decoded, checked to be in the subgroup and not the
/// identity, and prepared for pairings.
fn decode_key(key: &BlsPublicKey) -> Option<G2Prepared> {
    Option::<G2Affine>::from(G2Affine::from_compressed(&key.0))
        .filter(|point| !bool::from(point.is_identity()))
        .map(G2Prepared::from)
}

/// `Σ s_i·P_i` for the `nbits`-bit scalars `s_i` (little-endian, `nbits /
/// 8` bytes each, back to back): blst's multi-scalar multiplication, on
/// this thread. (blstrs's `multi_exp` takes 255-bit scalars always, and
/// spreads small sums over a thread pool at a higher cost in CPU.)
fn weighted_sum(points: &[G1Affine], scalars: &[u8], nbits: usize) -> G1Projective {
    let mut sum = G1Projective::identity();
    let Some(first) = points.first() else {
        return sum;
    };
    assert_eq!(
        scalars.len(),
        points.len() * nbits.div_ceil(8),
        "one scalar a point"
    );
    // blst reads a contiguous array through its first pointer when the
    // second is null.
    let points_ptrs: [*const blst::blst_p1_affine; 2] = [first.as_ref(), std::ptr::null()];
    let scalars_ptrs: [*const u8; 2] = [scalars.as_ptr(), std::ptr::null()];
    // SAFETY: `G1Affine` is a `repr(transparent)` `blst_p1_affine`, so
    // `points` is a contiguous array of `points.len()` of them; `scalars`
    // holds that many scalars of `nbits` bits (checked above); the
    // scratch space has the size blst asks for, in its limbs; and `sum`
    // is a `repr(transparent)` `blst_p1`, written once.
    unsafe {
        let words = blst::blst_p1s_mult_pippenger_scratch_sizeof(points.len()) / 8;
        let mut scratch = vec![0u64; words.max(1)];
        blst::blst_p1s_mult_pippenger(
            sum.as_mut(),
            points_ptrs.as_ptr(),
            points.len(),
            scalars_ptrs.as_ptr(),
            nbits,
            scratch.as_mut_ptr(),
        );
    }
    sum
}

/// A G1 point in its subgroup, or `None`.
fn decode_signature(signature: &BlsSignature) -> Option<G1Affine> {
    Option::from(G1Affine::from_compressed(&signature.0))
}

/// `e(signature, -g2) · e(hash, key) = 1`, i.e. `e(signature, g2) = e(hash,
/// key)`.
fn pairing_holds(
    signature: &G1Affine,
    hash: &G1Affine,
    key: &G2Prepared,
    negative_generator: &G2Prepared,
) -> bool {
    Bls12::multi_miller_loop(&[(signature, negative_generator), (hash, key)])
        .final_exponentiation()
        .is_identity()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sum blst computes is the one of blstrs's group operations, for
    /// both scalar sizes used, one point, a few (blst's window method), and
    /// more than 32 (its Pippenger buckets).
    #[test]
    fn weighted_sum_is_the_sum_of_the_multiples() {
        let mut reader =
            blake3::Hasher::new_derive_key("dagstream weighted sum test").finalize_xof();
        for (count, nbits) in [(1, 128), (3, 128), (40, 128), (1, 256), (5, 256), (33, 256)] {
            let points: Vec<G1Affine> = (0..count)
                .map(|i: u64| HashedRound::new(0, i).point.to_affine())
                .collect();
            let scalars: Vec<Scalar> = (0..count)
                .map(|_| {
                    let mut bytes = [0u8; 32];
                    // Below the group order: the top byte stays small.
                    reader.fill(&mut bytes[..nbits / 8 - 1]);
                    Option::from(Scalar::from_bytes_le(&bytes)).expect("below the order")
                })
                .collect();
            let bytes: Vec<u8> = scalars
                .iter()
                .flat_map(|s| s.to_bytes_le()[..nbits / 8].to_vec())
                .collect();
            let expected: G1Projective = points.iter().zip(&scalars).map(|(p, s)| p * s).sum();
            assert_eq!(
                weighted_sum(&points, &bytes, nbits),
                expected,
                "{count} points"
            );
        }
        assert_eq!(weighted_sum(&[], &[], 128), G1Projective::identity());
    }
}
