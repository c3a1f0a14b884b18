//! The local DAG: blocks accepted in causal order, and those still waiting
//! for their ancestors.

use crate::{DagError, Result};
use dagstream_types::{AuthorityIndex, BlockRef, Committee, RefMap, Round, VerifiedBlock};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The DAG of accepted blocks above the GC round.
///
/// A block is *accepted* once all its ancestors above the GC round are
/// accepted, so every accepted block's causal history is present. Blocks that
/// arrive early wait in a bounded pending set. Blocks at or below the GC round
/// can never be committed and are dropped; ancestors there count as present.
pub struct DagState {
    committee: Arc<Committee>,
    /// Accepted blocks, in `(round, author, digest)` order, with whether a
    /// commit already holds them.
    accepted: BTreeMap<BlockRef, Accepted>,
    /// Blocks waiting for ancestors, with how many are still missing.
    pending: RefMap<(VerifiedBlock, usize)>,
    /// Missing block → the pending blocks that wait for it.
    waiters: BTreeMap<BlockRef, Vec<BlockRef>>,
    max_pending_blocks: usize,
    gc_round: Round,
    highest_accepted_round: Round,
}

struct Accepted {
    block: VerifiedBlock,
    committed: bool,
}

impl DagState {
    /// A DAG holding only the genesis blocks, at the committee's genesis
    /// round, which is also its first GC round: nothing below belongs to
    /// this committee's epoch.
    pub fn new(committee: Arc<Committee>, max_pending_blocks: usize) -> Self {
        let genesis_round = committee.genesis_round();
        let accepted = VerifiedBlock::genesis(&committee)
            .into_iter()
            .map(|block| {
                (
                    block.reference(),
                    Accepted {
                        block,
                        committed: false,
                    },
                )
            })
            .collect();
        DagState {
            committee,
            accepted,
            pending: RefMap::default(),
            waiters: BTreeMap::new(),
            max_pending_blocks,
            gc_round: genesis_round,
            highest_accepted_round: genesis_round,
        }
    }

    pub fn committee(&self) -> &Arc<Committee> {
        &self.committee
    }

    /// Adds a verified block. Returns the blocks this made acceptable (the
    /// block itself and any pending descendants), in causal order. Duplicates
    /// and blocks at or below the GC round return nothing.
    pub fn add_block(&mut self, block: VerifiedBlock) -> Result<Vec<VerifiedBlock>> {
        let reference = block.reference();
        if reference.round <= self.gc_round
            || self.accepted.contains_key(&reference)
            || self.pending.contains_key(&reference)
        {
            return Ok(vec![]);
        }
        let missing: Vec<BlockRef> = block
            .ancestors()
            .iter()
            .filter(|a| a.round > self.gc_round && !self.accepted.contains_key(a))
            .copied()
            .collect();
        if missing.is_empty() {
            let mut out = Vec::new();
            self.accept(block, &mut out);
            return Ok(out);
        }
        if self.pending.len() >= self.max_pending_blocks {
            return Err(DagError::TooManyPendingBlocks {
                limit: self.max_pending_blocks,
                block: reference,
            });
        }
        for ancestor in &missing {
            self.waiters.entry(*ancestor).or_default().push(reference);
        }
        self.pending.insert(reference, (block, missing.len()));
        Ok(vec![])
    }

    /// Accepts `block` and, transitively, every pending block that waited
    /// only for it.
    fn accept(&mut self, block: VerifiedBlock, out: &mut Vec<VerifiedBlock>) {
        let mut ready = vec![block];
        while let Some(block) = ready.pop() {
            let reference = block.reference();
            self.highest_accepted_round = self.highest_accepted_round.max(reference.round);
            self.accepted.insert(
                reference,
                Accepted {
                    block: block.clone(),
                    committed: false,
                },
            );
            out.push(block);
            for waiter in self.waiters.remove(&reference).unwrap_or_default() {
                if let Some(next) = self.resolve_one(waiter) {
                    ready.push(next);
                }
            }
        }
    }

    /// One missing ancestor of pending `waiter` arrived (or was garbage
    /// collected). Returns the block once nothing is missing any more.
    fn resolve_one(&mut self, waiter: BlockRef) -> Option<VerifiedBlock> {
        let (_, missing) = self.pending.get_mut(&waiter)?;
        *missing -= 1;
        if *missing > 0 {
            return None;
        }
        self.pending.remove(&waiter).map(|(block, _)| block)
    }

    /// Raises the GC round: forgets accepted and pending blocks at or below
    /// it, and releases pending blocks that only waited for such blocks.
    /// Returns blocks that became accepted, in causal order.
    pub fn set_gc_round(&mut self, gc_round: Round) -> Vec<VerifiedBlock> {
        let mut out = Vec::new();
        if gc_round <= self.gc_round {
            return out;
        }
        self.gc_round = gc_round;
        let keep_from = BlockRef::round_start(gc_round + 1);
        self.accepted = self.accepted.split_off(&keep_from);
        self.pending.retain(|r, _| r.round > gc_round);
        let kept = self.waiters.split_off(&keep_from);
        let released = std::mem::replace(&mut self.waiters, kept);
        for waiter in released.into_values().flatten() {
            if let Some(block) = self.resolve_one(waiter) {
                self.accept(block, &mut out);
            }
        }
        out
    }

    pub fn gc_round(&self) -> Round {
        self.gc_round
    }

    pub fn highest_accepted_round(&self) -> Round {
        self.highest_accepted_round
    }

    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    pub fn accepted_len(&self) -> usize {
        self.accepted.len()
    }

    /// Every accepted block above the GC round, in `(round, author, digest)`
    /// order.
    pub fn blocks(&self) -> impl Iterator<Item = &VerifiedBlock> {
        self.accepted.values().map(|a| &a.block)
    }

    pub fn get(&self, reference: &BlockRef) -> Option<&VerifiedBlock> {
        self.accepted.get(reference).map(|a| &a.block)
    }

    pub fn contains(&self, reference: &BlockRef) -> bool {
        self.accepted.contains_key(reference)
    }

    /// Accepted blocks of `round`, by author then digest.
    pub fn blocks_at_round(&self, round: Round) -> impl Iterator<Item = &VerifiedBlock> {
        self.accepted
            .range(BlockRef::round_start(round)..BlockRef::round_start(round + 1))
            .map(|(_, a)| &a.block)
    }

    /// Accepted blocks of one author at one round: more than one only if the
    /// author equivocated.
    pub fn blocks_at_slot(
        &self,
        round: Round,
        author: AuthorityIndex,
    ) -> impl Iterator<Item = &VerifiedBlock> {
        self.blocks_at_round(round)
            .filter(move |b| b.author() == author)
    }

    pub fn is_committed(&self, reference: &BlockRef) -> bool {
        self.accepted.get(reference).is_some_and(|a| a.committed)
    }

    pub(crate) fn set_committed(&mut self, reference: &BlockRef) {
        if let Some(accepted) = self.accepted.get_mut(reference) {
            accepted.committed = true;
        }
    }
}
