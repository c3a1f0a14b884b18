//! The epochs a source has served: each committee, and the certified
//! hand-off that ended it.
//!
//! Rounds and commit indexes continue across epochs, so a block's epoch
//! follows from its round (above its committee's genesis round, at or
//! below the next one's) and a commit's from its index (at or below the
//! epoch's last commit). The streams use this to send each hand-off
//! before the first block or commit of the epoch after it, and to size a
//! block stream's Start by the committee of the epoch it names.
//!
//! The table holds every epoch since genesis: a committee and its
//! hand-off are some kilobytes (14 KB at the mainnet profile with
//! randomness), so even a chain that changes epoch daily adds a few
//! megabytes a year.

use crate::error::{PublisherError, Result};
use bytes::Bytes;
use dagstream_store::{epoch_change_key, Store};
use dagstream_types::{CommitIndex, Committee, Epoch, EpochChange, Round};
use std::sync::Arc;

/// How one epoch ended.
#[derive(Clone, Debug)]
pub struct HandOff {
    /// The epoch's last commit.
    pub last_commit: CommitIndex,
    /// The epoch's last round: the next committee's genesis round.
    pub last_round: Round,
    /// The [`EpochChange`] as stored and sent (BCS).
    pub bytes: Bytes,
}

#[derive(Clone, Debug)]
struct Entry {
    committee: Arc<Committee>,
    /// `None` while the epoch goes on.
    hand_off: Option<HandOff>,
}

/// The chain's epochs, from the genesis committee's on; the last is the
/// current one.
#[derive(Clone, Debug)]
pub struct Epochs {
    entries: Vec<Entry>,
}

impl Epochs {
    /// A chain in its first epoch.
    pub fn new(genesis: Arc<Committee>) -> Self {
        Epochs {
            entries: vec![Entry {
                committee: genesis,
                hand_off: None,
            }],
        }
    }

    /// The epochs a store holds: the genesis committee's, then each stored
    /// hand-off in turn. The store's writer verified them; a hand-off that
    /// does not decode or does not follow is corruption.
    pub fn load(store: &dyn Store, genesis: Arc<Committee>) -> Result<Self> {
        let mut epochs = Epochs::new(genesis);
        while let Some(bytes) = store.read_meta(&epoch_change_key(epochs.current().epoch()))? {
            epochs.push(bytes)?;
        }
        Ok(epochs)
    }

    /// Ends the current epoch with the hand-off `bytes` (BCS of an
    /// [`EpochChange`]) and starts the next.
    pub fn push(&mut self, bytes: Bytes) -> Result<()> {
        self.push_validated(bytes, None)
    }

    /// [`push`](Self::push), with the next committee as the caller already
    /// validated it (`None`: validate it here). Validating decodes every
    /// key, some 14 ms at the mainnet profile with randomness: a node that
    /// verified the hand-off need not pay it again.
    pub fn push_validated(&mut self, bytes: Bytes, next: Option<Arc<Committee>>) -> Result<()> {
        let epoch = self.current().epoch();
        let corrupt = |reason: String| PublisherError::CorruptEpochs { epoch, reason };
        let change = EpochChange::decode(&bytes).map_err(|err| corrupt(err.to_string()))?;
        if change.epoch() != epoch {
            return Err(corrupt(format!(
                "the stored hand-off is of epoch {}",
                change.epoch()
            )));
        }
        let committee = match next {
            Some(committee)
                if committee.genesis() == &change.next.committee
                    && committee.genesis_round() == change.next.genesis_round =>
            {
                committee
            }
            _ => Arc::new(
                change
                    .next
                    .committee()
                    .map_err(|err| corrupt(err.to_string()))?,
            ),
        };
        let last = self.entries.last_mut().expect("at least the genesis epoch");
        last.hand_off = Some(HandOff {
            last_commit: change.certificate.summary.last_commit,
            last_round: change.next.genesis_round,
            bytes,
        });
        self.entries.push(Entry {
            committee,
            hand_off: None,
        });
        Ok(())
    }

    /// The genesis committee: the chain's identity.
    pub fn genesis(&self) -> &Arc<Committee> {
        &self.entries[0].committee
    }

    /// The committee of the current epoch.
    pub fn current(&self) -> &Arc<Committee> {
        &self
            .entries
            .last()
            .expect("at least the genesis epoch")
            .committee
    }

    fn entry(&self, epoch: Epoch) -> Option<&Entry> {
        let first = self.genesis().epoch();
        let position = usize::try_from(epoch.checked_sub(first)?).ok()?;
        self.entries.get(position)
    }

    /// The committee of `epoch`, if the chain has reached it.
    pub fn committee(&self, epoch: Epoch) -> Option<&Arc<Committee>> {
        self.entry(epoch).map(|e| &e.committee)
    }

    /// How `epoch` ended; `None` while it goes on (or for an epoch the
    /// chain has not reached).
    pub fn hand_off(&self, epoch: Epoch) -> Option<&HandOff> {
        self.entry(epoch)?.hand_off.as_ref()
    }

    /// The epoch of a block at `round`: the first whose last round is not
    /// below it (ended epochs are in round order, the current one last).
    pub fn of_round(&self, round: Round) -> Epoch {
        self.first_where(|h| round <= h.last_round)
    }

    /// The epoch of commit `index`.
    pub fn of_commit(&self, index: CommitIndex) -> Epoch {
        self.first_where(|h| index <= h.last_commit)
    }

    /// The first epoch that goes on or whose hand-off satisfies `reaches`,
    /// by binary search: one lookup per block read stays cheap after
    /// years of epochs.
    fn first_where(&self, reaches: impl Fn(&HandOff) -> bool) -> Epoch {
        let position = self
            .entries
            .partition_point(|e| e.hand_off.as_ref().is_some_and(|h| !reaches(h)));
        self.entries[position.min(self.entries.len() - 1)]
            .committee
            .epoch()
    }

    /// The hand-offs of the epochs from `from` up to, not including,
    /// `to`, in order: what a subscriber in epoch `from` needs before
    /// anything of epoch `to`.
    pub fn hand_offs(&self, from: Epoch, to: Epoch) -> Result<Vec<Bytes>> {
        (from..to)
            .map(|epoch| {
                self.hand_off(epoch)
                    .map(|h| h.bytes.clone())
                    .ok_or(PublisherError::MissingHandOff { epoch })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dagstream_sim::{generate, GenesisParams, Profile, SimConfig, Simulator};
    use dagstream_store::MemStore;
    use dagstream_types::BlockLimits;

    #[test]
    fn epochs_place_rounds_and_commits_and_load_from_the_store() {
        let (genesis, keys) = generate(&GenesisParams {
            authorities: 4,
            round_interval_ms: 100,
            genesis_time_ms: 0,
            gc_depth_rounds: 50,
            seed: 3,
        });
        let genesis = Arc::new(Committee::new(genesis).unwrap());
        let config = SimConfig {
            epoch_rounds: 10,
            ..Profile::Small.sim_config(3)
        };
        let store = MemStore::new();
        let mut sim =
            Simulator::new(genesis.clone(), keys, config, &BlockLimits::default()).unwrap();
        let mut epochs = Epochs::new(genesis.clone());
        let mut blocks = Vec::new();
        let mut commits = Vec::new();
        for _ in 0..40 {
            let output = sim.produce_round().unwrap();
            store.write(sim.batch_for(&output)).unwrap();
            blocks.extend(output.blocks.iter().map(|b| (b.round(), b.epoch())));
            commits.extend(output.commits.iter().map(|c| (c.index(), output.round)));
            if let Some(change) = &output.epoch_change {
                epochs.push(Bytes::from(change.encode())).unwrap();
            }
        }
        let current = epochs.current().epoch();
        assert!(current >= 2, "epochs in 40 rounds: {current}");
        for (round, epoch) in blocks {
            assert_eq!(epochs.of_round(round), epoch, "round {round}");
        }
        // A commit belongs to the epoch of the blocks that decided it.
        for (index, decided) in commits {
            assert_eq!(epochs.of_commit(index), epochs.of_round(decided));
        }
        assert_eq!(
            epochs.hand_offs(0, current).unwrap().len(),
            current as usize
        );
        assert!(matches!(
            epochs.hand_offs(0, current + 1),
            Err(PublisherError::MissingHandOff { epoch }) if epoch == current
        ));
        assert_eq!(epochs.committee(current + 1).map(|c| c.epoch()), None);
        let loaded = Epochs::load(&store, genesis).unwrap();
        assert_eq!(loaded.current().epoch(), current);
        assert_eq!(
            loaded.hand_offs(0, current).unwrap(),
            epochs.hand_offs(0, current).unwrap()
        );
    }
}
