//! Making a simulated committee: its genesis and its private keys.

use crate::{Result, SimError};
use dagstream_types::randomness::RandomnessDealing;
use dagstream_types::{Authority, AuthorityIndex, Committee, Genesis, PublicKey, Round};
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

/// What a new simulated chain looks like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenesisParams {
    pub authorities: usize,
    pub round_interval_ms: u64,
    pub genesis_time_ms: u64,
    pub gc_depth_rounds: Round,
    /// Seed of the authorities' keys.
    pub seed: u64,
}

/// The private key of authority `index` of the committee made from `seed`:
/// BLAKE3 key derivation, so keys are reproducible from the seed alone.
pub fn derive_key(seed: u64, index: AuthorityIndex) -> SigningKey {
    let mut material = [0u8; 12];
    material[..8].copy_from_slice(&seed.to_le_bytes());
    material[8..].copy_from_slice(&index.to_le_bytes());
    SigningKey::from_bytes(&blake3::derive_key(
        "dagstream simulated authority key v1",
        &material,
    ))
}

/// A genesis of equal-stake authorities with keys derived from the seed.
pub fn generate(params: &GenesisParams) -> (Genesis, CommitteeKeys) {
    let keys: Vec<SigningKey> = (0..params.authorities as AuthorityIndex)
        .map(|i| derive_key(params.seed, i))
        .collect();
    let genesis = Genesis {
        epoch: 0,
        genesis_time_ms: params.genesis_time_ms,
        round_interval_ms: params.round_interval_ms,
        gc_depth_rounds: params.gc_depth_rounds,
        authorities: keys
            .iter()
            .enumerate()
            .map(|(i, key)| Authority {
                index: i as AuthorityIndex,
                stake: 1,
                public_key: PublicKey::from_signing_key(key),
            })
            .collect(),
        randomness: None,
    };
    let keys = CommitteeKeys { keys };
    let total_stake = params.authorities as u64;
    let dealing = keys.randomness_dealing(total_stake, quorum_threshold(total_stake));
    let genesis = Genesis {
        randomness: Some(dealing.keys().clone()),
        ..genesis
    };
    (genesis, keys)
}

/// 2f+1 of `total_stake`, as [`Committee::quorum_threshold`] computes it.
fn quorum_threshold(total_stake: u64) -> u64 {
    2 * total_stake / 3 + 1
}

/// The simulated committee's private keys, as in `committee-keys.json`.
#[derive(Clone)]
pub struct CommitteeKeys {
    keys: Vec<SigningKey>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    /// Hex private keys, in committee order.
    private_keys: Vec<String>,
}

impl CommitteeKeys {
    pub fn new(keys: Vec<SigningKey>) -> Self {
        CommitteeKeys { keys }
    }

    pub fn keys(&self) -> &[SigningKey] {
        &self.keys
    }

    /// The committee's randomness shares, dealt from its private keys (so
    /// from the seed they were derived from): the simulator's trusted
    /// dealer, which stands in for the DKG a real committee runs.
    pub fn randomness_dealing(&self, total_shares: u64, threshold: u64) -> RandomnessDealing {
        let mut material = Vec::with_capacity(32 * self.keys.len());
        for key in &self.keys {
            material.extend_from_slice(&key.to_bytes());
        }
        let seed = blake3::derive_key("dagstream simulated randomness dealer v1", &material);
        RandomnessDealing::deal(&seed, total_shares, threshold)
    }

    /// Checks that there is one key per authority and that each matches its
    /// public key in the committee.
    pub fn check(&self, committee: &Committee) -> Result<()> {
        if self.keys.len() != committee.size() {
            return Err(SimError::WrongKeyCount {
                expected: committee.size(),
                got: self.keys.len(),
            });
        }
        for (authority, key) in committee.authorities().zip(&self.keys) {
            if PublicKey::from_signing_key(key) != authority.public_key {
                return Err(SimError::KeyMismatch {
                    authority: authority.index,
                });
            }
        }
        Ok(())
    }

    pub fn to_json_pretty(&self) -> String {
        let file = KeysFile {
            private_keys: self
                .keys
                .iter()
                .map(|k| hex::encode(k.to_bytes()))
                .collect(),
        };
        serde_json::to_string_pretty(&file).expect("keys always serialize to JSON")
    }

    /// Writes `committee-keys.json` readable by its owner only (mode 0600 on
    /// Unix): these are the committee's private keys.
    pub fn save(&self, path: &Path) -> Result<()> {
        let io_error = |err: std::io::Error| SimError::KeysFile {
            path: path.display().to_string(),
            reason: err.to_string(),
        };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(io_error)?;
        file.write_all(self.to_json_pretty().as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(io_error)
    }

    /// Reads `committee-keys.json`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|err| SimError::KeysFile {
            path: path.display().to_string(),
            reason: err.to_string(),
        })?;
        Self::from_json(&text)
    }

    pub fn from_json(text: &str) -> Result<Self> {
        let invalid = |reason: String| SimError::InvalidConfig { reason };
        let file: KeysFile = serde_json::from_str(text)
            .map_err(|err| invalid(format!("committee-keys.json: {err}")))?;
        let keys = file
            .private_keys
            .iter()
            .enumerate()
            .map(|(i, text)| {
                let mut bytes = [0u8; 32];
                hex::decode_to_slice(text, &mut bytes)
                    .map(|()| SigningKey::from_bytes(&bytes))
                    .map_err(|err| invalid(format!("committee-keys.json key {i}: {err}")))
            })
            .collect::<Result<_>>()?;
        Ok(CommitteeKeys { keys })
    }
}
