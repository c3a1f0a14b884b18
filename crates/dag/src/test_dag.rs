//! `DagBuilder`: a small DSL for building signed DAGs of any shape in tests.
//!
//! ```
//! use dagstream_dag::test_dag::DagBuilder;
//!
//! let mut dag = DagBuilder::new(4);
//! dag.layers(1..=3); // every authority references all of the round before
//! dag.round(4).skip_parent(2).build(); // nobody but 2 references 2's round-3 block
//! dag.round(5).producers(&[0, 1, 3]).build(); // authority 2 is silent
//! assert_eq!(dag.blocks().len(), 4 * 4 + 3);
//! ```

use crate::LeaderSchedule;
use dagstream_types::randomness::RandomnessDealing;
use dagstream_types::{
    Authority, AuthorityIndex, Block, BlockRef, Committee, Genesis, PublicKey, Round, Stake,
    VerifiedBlock, DEFAULT_GC_DEPTH_ROUNDS,
};
use ed25519_dalek::SigningKey;
use std::collections::{BTreeMap, HashMap};
use std::ops::RangeInclusive;
use std::sync::Arc;

/// Genesis time of builder DAGs.
pub const TEST_GENESIS_TIME_MS: u64 = 1_700_000_000_000;
/// Round interval of builder DAGs.
pub const TEST_ROUND_INTERVAL_MS: u64 = 100;

/// The fixed test key of authority `index`: 32 bytes of `index + 1`.
pub fn test_key(index: AuthorityIndex) -> SigningKey {
    SigningKey::from_bytes(&[index as u8 + 1; 32])
}

/// A committee with the given stakes and the [`test_key`]s.
pub fn test_committee(stakes: &[Stake], gc_depth_rounds: Round) -> Committee {
    let total: Stake = stakes.iter().sum();
    let genesis = Genesis {
        epoch: 0,
        genesis_time_ms: TEST_GENESIS_TIME_MS,
        round_interval_ms: TEST_ROUND_INTERVAL_MS,
        gc_depth_rounds,
        authorities: stakes
            .iter()
            .enumerate()
            .map(|(i, &stake)| Authority {
                index: i as AuthorityIndex,
                stake,
                public_key: PublicKey::from_signing_key(&test_key(i as AuthorityIndex)),
            })
            .collect(),
        // Dealt as for the wire-format vector committee, so that four
        // authorities of stake 1 are that committee.
        randomness: Some(
            RandomnessDealing::deal(&[7; 32], total, 2 * total / 3 + 1)
                .keys()
                .clone(),
        ),
    };
    Committee::new(genesis).expect("test committee is valid")
}

pub struct DagBuilder {
    committee: Arc<Committee>,
    keys: Vec<SigningKey>,
    schedule: LeaderSchedule,
    blocks: Vec<VerifiedBlock>,
    slots: HashMap<(Round, AuthorityIndex), VerifiedBlock>,
    /// Second blocks of equivocating authors, with the authors of the next
    /// round that reference them instead of the first.
    alternates: HashMap<(Round, AuthorityIndex), (VerifiedBlock, Vec<AuthorityIndex>)>,
    latest: Vec<BlockRef>,
}

impl DagBuilder {
    /// `n` authorities of stake 1.
    pub fn new(n: usize) -> Self {
        Self::with_committee(test_committee(&vec![1; n], DEFAULT_GC_DEPTH_ROUNDS))
    }

    pub fn with_committee(committee: Committee) -> Self {
        let committee = Arc::new(committee);
        let genesis = VerifiedBlock::genesis(&committee);
        DagBuilder {
            keys: committee.indexes().map(test_key).collect(),
            schedule: LeaderSchedule::new(&committee),
            latest: genesis.iter().map(|b| b.reference()).collect(),
            slots: genesis.into_iter().map(|b| ((0, b.author()), b)).collect(),
            alternates: HashMap::new(),
            blocks: Vec::new(),
            committee,
        }
    }

    pub fn committee(&self) -> Arc<Committee> {
        self.committee.clone()
    }

    pub fn leader(&self, round: Round) -> AuthorityIndex {
        self.schedule.leader(round)
    }

    /// Every block built so far (genesis excluded), in build order.
    pub fn blocks(&self) -> &[VerifiedBlock] {
        &self.blocks
    }

    /// The block of `author` at `round`. Panics if there is none.
    pub fn block(&self, round: Round, author: AuthorityIndex) -> VerifiedBlock {
        self.slots
            .get(&(round, author))
            .unwrap_or_else(|| panic!("no block of {author} at round {round}"))
            .clone()
    }

    /// Fully connected rounds: every authority references every block of the
    /// round before.
    pub fn layers(&mut self, rounds: RangeInclusive<Round>) -> &mut Self {
        for round in rounds {
            self.round(round).build();
        }
        self
    }

    /// Starts building `round`; finish with [`RoundBuilder::build`].
    pub fn round(&mut self, round: Round) -> RoundBuilder<'_> {
        RoundBuilder {
            producers: self.committee.indexes().collect(),
            parents: BTreeMap::new(),
            skipped: Vec::new(),
            late: Vec::new(),
            equivocations: Vec::new(),
            round,
            builder: self,
        }
    }
}

/// One round under construction.
pub struct RoundBuilder<'a> {
    builder: &'a mut DagBuilder,
    round: Round,
    producers: Vec<AuthorityIndex>,
    parents: BTreeMap<AuthorityIndex, Vec<AuthorityIndex>>,
    skipped: Vec<AuthorityIndex>,
    late: Vec<AuthorityIndex>,
    equivocations: Vec<(AuthorityIndex, Vec<AuthorityIndex>)>,
}

impl RoundBuilder<'_> {
    /// `author` also signs a second, different block for this round; the
    /// authors in `referenced_by` reference that one in the next round.
    pub fn equivocate(mut self, author: AuthorityIndex, referenced_by: &[AuthorityIndex]) -> Self {
        self.equivocations.push((author, referenced_by.to_vec()));
        self
    }

    /// Only these authorities produce a block this round.
    pub fn producers(mut self, authors: &[AuthorityIndex]) -> Self {
        self.producers = authors.to_vec();
        self
    }

    /// `author`'s block references exactly these authors' blocks of the
    /// previous round (and always its own previous block).
    pub fn parents(mut self, author: AuthorityIndex, parents: &[AuthorityIndex]) -> Self {
        self.parents.insert(author, parents.to_vec());
        self
    }

    /// No other author references `parent`'s block of the previous round.
    pub fn skip_parent(mut self, parent: AuthorityIndex) -> Self {
        self.skipped.push(parent);
        self
    }

    /// Other authors reference `parent`'s block from two rounds back instead
    /// of the previous round: `parent` is slow.
    pub fn late_parent(mut self, parent: AuthorityIndex) -> Self {
        self.late.push(parent);
        self
    }

    /// Signs the round's blocks.
    pub fn build(self) {
        let round = self.round;
        let b = self.builder;
        for &author in &self.producers {
            let chosen: Vec<AuthorityIndex> = match self.parents.get(&author) {
                Some(parents) => parents.clone(),
                None => b
                    .committee
                    .indexes()
                    .filter(|p| *p == author || !self.skipped.contains(p))
                    .collect(),
            };
            let mut ancestors: BTreeMap<AuthorityIndex, BlockRef> = BTreeMap::new();
            for parent in chosen {
                let parent_round = if parent != author && self.late.contains(&parent) {
                    round.saturating_sub(2)
                } else {
                    round - 1
                };
                let alternate = b
                    .alternates
                    .get(&(parent_round, parent))
                    .filter(|(_, referenced_by)| referenced_by.contains(&author))
                    .map(|(block, _)| block);
                if let Some(block) = alternate.or_else(|| b.slots.get(&(parent_round, parent))) {
                    ancestors.insert(parent, block.reference());
                }
            }
            ancestors.entry(author).or_insert(b.latest[author as usize]);
            let block = VerifiedBlock::sign(
                Block {
                    epoch: b.committee.epoch(),
                    round,
                    author,
                    timestamp_ms: b.committee.round_time_ms(round),
                    ancestors: ancestors.into_values().collect(),
                    transactions: vec![],
                    commit_votes: vec![],
                    system_messages: vec![],
                },
                &b.keys[author as usize],
            );
            if let Some((_, referenced_by)) = self.equivocations.iter().find(|(a, _)| *a == author)
            {
                let mut twin = block.block().clone();
                twin.transactions.push(dagstream_types::Transaction(
                    b"equivocation".to_vec().into(),
                ));
                let twin = VerifiedBlock::sign(twin, &b.keys[author as usize]);
                b.alternates
                    .insert((round, author), (twin.clone(), referenced_by.clone()));
                b.blocks.push(twin);
            }
            b.latest[author as usize] = block.reference();
            b.slots.insert((round, author), block.clone());
            b.blocks.push(block);
        }
    }
}
