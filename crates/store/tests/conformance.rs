//! One behaviour suite, run against every [`Store`] implementation.
//!
//! Each case is a function of `&dyn Store`; [`conformance!`] instantiates it
//! as a test per implementation (`mem_store::<case>`, `redb_store::<case>`,
//! `segment_store::<case>`).

mod common;

use bytes::Bytes;
use common::{block, commit, AUTHORS};
use dagstream_store::{
    randomness_key, PruneStats, RedbOptions, RedbStore, Store, StoreError, WriteBatch,
};
use dagstream_types::{BlockRef, CommitIndex, Digest, TrustedCommit, VerifiedBlock};
use std::path::Path;

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod mem_store {
            $(
                #[test]
                fn $case() {
                    super::$case(&dagstream_store::MemStore::new());
                }
            )*
        }
        mod redb_store {
            $(
                #[test]
                fn $case() {
                    let dir = tempfile::tempdir().unwrap();
                    let store = dagstream_store::RedbStore::open(&dir.path().join("store.redb"))
                        .unwrap();
                    super::$case(&store);
                }
            )*
        }
        mod segment_store {
            $(
                #[test]
                fn $case() {
                    let dir = tempfile::tempdir().unwrap();
                    // Small segments, so that the suite crosses segment ends.
                    let options = dagstream_store::SegmentOptions {
                        segment_bytes: 4096,
                        ..Default::default()
                    };
                    let store = dagstream_store::SegmentStore::open_with(dir.path(), &options)
                        .unwrap();
                    super::$case(&store);
                }
            )*
        }
    };
}

conformance!(
    empty_store_has_nothing,
    blocks_round_trip_byte_equal,
    writing_a_present_block_is_a_no_op,
    scan_blocks_respects_order_bounds_and_limit,
    commits_round_trip,
    non_contiguous_commits_reject_the_whole_batch,
    meta_last_write_wins,
    prune_deletes_below_bounds_and_keeps_the_sequence,
    readers_see_whole_batches,
);

/// Blocks of `round`, one per author, the leader (`round % AUTHORS`) last:
/// the shape of a commit's sub-DAG.
fn round_blocks(round: u64) -> Vec<VerifiedBlock> {
    let leader = (round % u64::from(AUTHORS)) as u32;
    let mut blocks: Vec<_> = (0..AUTHORS)
        .filter(|&a| a != leader)
        .chain([leader])
        .map(|author| block(round, author, 64, 0))
        .collect();
    blocks[..AUTHORS as usize - 1].sort_by_key(|b| b.reference());
    blocks
}

/// Commits `1..=n`, each of the blocks of its own round, chained by digest.
fn chain(n: CommitIndex) -> Vec<(Vec<VerifiedBlock>, TrustedCommit)> {
    let mut previous = Digest::ZERO;
    (1..=n)
        .map(|index| {
            let blocks = round_blocks(index);
            let commit = commit(index, previous, &blocks);
            previous = commit.digest();
            (blocks, commit)
        })
        .collect()
}

/// A batch of the blocks and commit of each step, with meta progress.
fn batch_of(steps: &[(Vec<VerifiedBlock>, TrustedCommit)]) -> WriteBatch {
    let mut batch = WriteBatch::new();
    for (blocks, commit) in steps {
        for block in blocks {
            batch.add_block(block);
        }
        batch.add_commit(commit.clone());
        batch.put_meta("progress", commit.index().to_be_bytes().to_vec());
    }
    batch
}

fn refs(blocks: &[(BlockRef, Bytes)]) -> Vec<BlockRef> {
    blocks.iter().map(|(r, _)| *r).collect()
}

fn indexes(commits: &[TrustedCommit]) -> Vec<CommitIndex> {
    commits.iter().map(|c| c.index()).collect()
}

fn all_blocks(store: &dyn Store) -> Vec<(BlockRef, Bytes)> {
    store
        .scan_blocks(BlockRef::round_start(0), u64::MAX, usize::MAX)
        .unwrap()
}

fn empty_store_has_nothing(store: &dyn Store) {
    let any = block(1, 0, 8, 0).reference();
    assert_eq!(store.read_block(&any).unwrap(), None);
    assert!(!store.contains_block(&any).unwrap());
    assert!(all_blocks(store).is_empty());
    assert_eq!(store.highest_block_round().unwrap(), None);
    assert_eq!(store.read_commit(1).unwrap(), None);
    assert!(store.scan_commits(0, 10).unwrap().is_empty());
    assert_eq!(store.last_commit().unwrap(), None);
    assert_eq!(store.last_commit_index().unwrap(), 0);
    assert_eq!(store.commit_range().unwrap(), None);
    assert_eq!(store.read_meta("progress").unwrap(), None);
    assert_eq!(store.prune(10, 10).unwrap(), PruneStats::default());
    // An empty batch is accepted and changes nothing.
    store.write(WriteBatch::new()).unwrap();
    assert_eq!(store.last_commit_index().unwrap(), 0);
}

fn blocks_round_trip_byte_equal(store: &dyn Store) {
    let blocks: Vec<_> = (1..=3)
        .flat_map(|round| (0..AUTHORS).map(move |author| block(round, author, 100, 0)))
        .collect();
    let mut batch = WriteBatch::new();
    for b in &blocks {
        batch.add_block(b);
    }
    store.write(batch).unwrap();

    for b in &blocks {
        let bytes = store.read_block(&b.reference()).unwrap().expect("stored");
        assert_eq!(&bytes, b.serialized(), "exact wire bytes of {b:?}");
        assert!(store.contains_block(&b.reference()).unwrap());
        let decoded = VerifiedBlock::decode_trusted(bytes).unwrap();
        assert_eq!(decoded.reference(), b.reference());
    }
    // Same slot, other digest: a different block, not stored.
    let other = block(2, 1, 100, 7);
    assert_ne!(other.reference(), blocks[5].reference());
    assert_eq!(store.read_block(&other.reference()).unwrap(), None);
    assert!(!store.contains_block(&other.reference()).unwrap());
    assert_eq!(store.highest_block_round().unwrap(), Some(3));
    // Many at once, in the order asked, missing ones and repeats included.
    let asked = [
        blocks[7].reference(),
        other.reference(),
        blocks[0].reference(),
        blocks[7].reference(),
        blocks[1].reference(),
    ];
    let expected = [
        Some(blocks[7].serialized().clone()),
        None,
        Some(blocks[0].serialized().clone()),
        Some(blocks[7].serialized().clone()),
        Some(blocks[1].serialized().clone()),
    ];
    assert_eq!(store.read_blocks(&asked).unwrap(), expected);
    assert_eq!(store.read_blocks(&[]).unwrap(), vec![]);
    // Blocks alone do not touch the commit sequence.
    assert_eq!(store.last_commit_index().unwrap(), 0);
}

fn writing_a_present_block_is_a_no_op(store: &dyn Store) {
    let b = block(4, 2, 50, 0);
    let mut batch = WriteBatch::new();
    batch.add_block(&b).add_block(&b);
    store.write(batch).unwrap();
    let mut again = WriteBatch::new();
    again.add_block(&b);
    store.write(again).unwrap();
    assert_eq!(
        all_blocks(store),
        vec![(b.reference(), b.serialized().clone())]
    );
}

fn scan_blocks_respects_order_bounds_and_limit(store: &dyn Store) {
    // Two blocks per slot (equivocations) so that digests order too; written
    // newest round first, in several batches.
    let mut blocks: Vec<_> = (1..=5)
        .flat_map(|round| {
            (0..AUTHORS)
                .flat_map(move |author| [block(round, author, 10, 0), block(round, author, 10, 1)])
        })
        .collect();
    for chunk in blocks.rchunks(7) {
        let mut batch = WriteBatch::new();
        for b in chunk {
            batch.add_block(b);
        }
        store.write(batch).unwrap();
    }
    blocks.sort_by_key(|b| b.reference());
    let sorted: Vec<BlockRef> = blocks.iter().map(|b| b.reference()).collect();
    let in_rounds = |lo: u64, hi: u64| -> Vec<BlockRef> {
        sorted
            .iter()
            .copied()
            .filter(|r| (lo..=hi).contains(&r.round))
            .collect()
    };

    let all = all_blocks(store);
    assert_eq!(refs(&all), sorted);
    for ((reference, bytes), b) in all.iter().zip(&blocks) {
        assert_eq!(*reference, b.reference());
        assert_eq!(bytes, b.serialized());
    }
    // Round bounds are inclusive at both ends.
    let scanned = store.scan_blocks(BlockRef::round_start(2), 4, 100).unwrap();
    assert_eq!(refs(&scanned), in_rounds(2, 4));
    let scanned = store.scan_blocks(BlockRef::round_start(5), 5, 100).unwrap();
    assert_eq!(refs(&scanned), in_rounds(5, 5));
    // `from` is inclusive and may sit in the middle of a round.
    let from = sorted[11];
    let scanned = store.scan_blocks(from, 3, 100).unwrap();
    let expected: Vec<_> = in_rounds(0, 3).into_iter().filter(|r| *r >= from).collect();
    assert_eq!(refs(&scanned), expected);
    assert_eq!(scanned[0].0, from);
    // Just after an existing ref: starts at the next one.
    let mut after = sorted[11];
    after.digest.0[31] = after.digest.0[31].wrapping_add(1);
    let scanned = store.scan_blocks(after, 5, 1).unwrap();
    assert!(scanned[0].0 > sorted[11] && scanned[0].0 <= sorted[12]);
    // The limit stops the scan.
    let scanned = store.scan_blocks(BlockRef::round_start(1), 5, 3).unwrap();
    assert_eq!(refs(&scanned), sorted[..3]);
    assert!(store
        .scan_blocks(BlockRef::round_start(1), 5, 0)
        .unwrap()
        .is_empty());
    // Empty ranges.
    assert!(store
        .scan_blocks(BlockRef::round_start(4), 3, 100)
        .unwrap()
        .is_empty());
    assert!(store
        .scan_blocks(BlockRef::round_start(6), u64::MAX, 100)
        .unwrap()
        .is_empty());
    assert!(store
        .scan_blocks(BlockRef::round_start(0), 0, 100)
        .unwrap()
        .is_empty());
    assert_eq!(store.highest_block_round().unwrap(), Some(5));
}

fn commits_round_trip(store: &dyn Store) {
    let steps = chain(6);
    // Batches of 1, 2 and 3 commits.
    store.write(batch_of(&steps[..1])).unwrap();
    store.write(batch_of(&steps[1..3])).unwrap();
    store.write(batch_of(&steps[3..])).unwrap();

    for (_, expected) in &steps {
        let stored = store
            .read_commit(expected.index())
            .unwrap()
            .expect("stored");
        assert_eq!(&stored, expected);
        assert_eq!(stored.serialized(), expected.serialized());
        assert_eq!(stored.digest(), expected.digest());
    }
    assert_eq!(store.read_commit(0).unwrap(), None);
    assert_eq!(store.read_commit(7).unwrap(), None);
    assert_eq!(
        indexes(&store.scan_commits(0, 100).unwrap()),
        [1, 2, 3, 4, 5, 6]
    );
    assert_eq!(indexes(&store.scan_commits(2, 2).unwrap()), [2, 3]);
    assert_eq!(indexes(&store.scan_commits(5, 100).unwrap()), [5, 6]);
    assert!(store.scan_commits(7, 100).unwrap().is_empty());
    assert!(store.scan_commits(1, 0).unwrap().is_empty());
    assert_eq!(
        store.scan_commits(1, 100).unwrap(),
        steps.iter().map(|(_, c)| c.clone()).collect::<Vec<_>>()
    );
    assert_eq!(store.last_commit().unwrap().as_ref(), Some(&steps[5].1));
    assert_eq!(store.last_commit_index().unwrap(), 6);
    assert_eq!(store.commit_range().unwrap(), Some((1, 6)));
    // Every block of every commit came with it.
    for (_, commit) in &steps {
        for reference in &commit.commit().blocks {
            assert!(store.contains_block(reference).unwrap());
        }
    }
}

fn non_contiguous_commits_reject_the_whole_batch(store: &dyn Store) {
    let steps = chain(4);
    let extra = block(90, 0, 10, 0);
    // A batch that would be fine but for its commits, carrying an extra block
    // and meta key of its own so that nothing of it can hide.
    let tagged = |steps: &[(Vec<VerifiedBlock>, TrustedCommit)]| {
        let mut batch = batch_of(steps);
        batch.add_block(&extra).put_meta("rejected", &b"yes"[..]);
        batch
    };
    let assert_rejected = |batch: WriteBatch, expected: CommitIndex, got: CommitIndex| {
        let before_blocks = all_blocks(store);
        let before_last = store.last_commit_index().unwrap();
        let before_progress = store.read_meta("progress").unwrap();
        let err = store.write(batch).unwrap_err();
        assert_eq!(err, StoreError::NonContiguousCommit { expected, got });
        assert_eq!(err.name(), "non_contiguous_commit");
        assert_eq!(all_blocks(store), before_blocks, "no block of the batch");
        assert!(!store.contains_block(&extra.reference()).unwrap());
        assert_eq!(store.read_meta("rejected").unwrap(), None);
        assert_eq!(store.read_meta("progress").unwrap(), before_progress);
        assert_eq!(store.last_commit_index().unwrap(), before_last);
        assert_eq!(
            store.last_commit().unwrap().map(|c| c.index()),
            (before_last > 0).then_some(before_last)
        );
    };

    // A fresh store starts at 1.
    assert_rejected(tagged(&steps[1..2]), 1, 2);
    store.write(batch_of(&steps[..1])).unwrap();
    // A gap.
    assert_rejected(tagged(&steps[2..3]), 2, 3);
    // Writing a commit again.
    assert_rejected(tagged(&steps[..1]), 2, 1);
    // A valid first commit does not save a batch whose second is wrong.
    assert_rejected(tagged(&[steps[1].clone(), steps[1].clone()]), 3, 2);
    assert_rejected(tagged(&[steps[1].clone(), steps[3].clone()]), 3, 4);
    assert_eq!(store.read_commit(2).unwrap(), None);
    // Still accepting the right one.
    store.write(tagged(&steps[1..4])).unwrap();
    assert_eq!(store.commit_range().unwrap(), Some((1, 4)));
    assert!(store.contains_block(&extra.reference()).unwrap());
    assert_eq!(
        store.read_meta("rejected").unwrap().as_deref(),
        Some(&b"yes"[..])
    );
}

fn meta_last_write_wins(store: &dyn Store) {
    assert_eq!(store.read_meta("a").unwrap(), None);
    let mut batch = WriteBatch::new();
    batch
        .put_meta("a", &b"1"[..])
        .put_meta("b", Bytes::new())
        .put_meta("a", &b"2"[..])
        .put_meta("ünïcode/key", vec![0u8, 255]);
    store.write(batch).unwrap();
    assert_eq!(store.read_meta("a").unwrap().as_deref(), Some(&b"2"[..]));
    assert_eq!(store.read_meta("b").unwrap().as_deref(), Some(&b""[..]));
    assert_eq!(
        store.read_meta("ünïcode/key").unwrap().as_deref(),
        Some(&[0u8, 255][..])
    );
    assert_eq!(store.read_meta("c").unwrap(), None);

    let mut batch = WriteBatch::new();
    batch.put_meta("a", &b"3"[..]);
    store.write(batch).unwrap();
    assert_eq!(store.read_meta("a").unwrap().as_deref(), Some(&b"3"[..]));
    assert_eq!(store.read_meta("b").unwrap().as_deref(), Some(&b""[..]));
}

fn prune_deletes_below_bounds_and_keeps_the_sequence(store: &dyn Store) {
    let steps = chain(7);
    let mut batch = batch_of(&steps[..6]);
    for index in 1..=6 {
        batch.put_meta(randomness_key(index), vec![index as u8]);
    }
    batch.put_meta("other", vec![1]);
    store.write(batch).unwrap();

    let stats = store.prune(3, 4).unwrap();
    assert_eq!(
        stats,
        PruneStats {
            commits: 2,
            blocks: 3 * u64::from(AUTHORS)
        }
    );
    assert_eq!(store.commit_range().unwrap(), Some((3, 6)));
    assert_eq!(store.read_commit(2).unwrap(), None);
    assert_eq!(indexes(&store.scan_commits(0, 100).unwrap()), [3, 4, 5, 6]);
    // The randomness of the commits pruned goes with them; other metadata
    // stays.
    for index in 1..=6 {
        let kept = store.read_meta(&randomness_key(index)).unwrap().is_some();
        assert_eq!(kept, index >= 3, "randomness of commit {index}");
    }
    assert!(store.read_meta("other").unwrap().is_some());
    for (blocks, _) in &steps[..6] {
        for b in blocks {
            let kept = b.round() >= 4;
            assert_eq!(store.contains_block(&b.reference()).unwrap(), kept, "{b:?}");
        }
    }
    assert_eq!(all_blocks(store).len(), 3 * AUTHORS as usize);
    assert_eq!(store.highest_block_round().unwrap(), Some(6));
    // Pruning again below the same bounds finds nothing.
    assert_eq!(store.prune(3, 4).unwrap(), PruneStats::default());

    // Pruning everything keeps the sequence position.
    let stats = store.prune(100, 100).unwrap();
    assert_eq!(
        stats,
        PruneStats {
            commits: 4,
            blocks: 3 * u64::from(AUTHORS)
        }
    );
    assert_eq!(store.commit_range().unwrap(), None);
    assert_eq!(store.last_commit().unwrap(), None);
    assert_eq!(store.highest_block_round().unwrap(), None);
    assert_eq!(store.last_commit_index().unwrap(), 6);
    let err = store.write(batch_of(&steps[..1])).unwrap_err();
    assert_eq!(
        err,
        StoreError::NonContiguousCommit {
            expected: 7,
            got: 1
        }
    );
    store.write(batch_of(&steps[6..])).unwrap();
    assert_eq!(store.commit_range().unwrap(), Some((7, 7)));
    assert_eq!(store.last_commit().unwrap().as_ref(), Some(&steps[6].1));
}

/// While one thread writes, others read: a visible commit always comes with
/// its blocks and its meta.
fn readers_see_whole_batches(store: &dyn Store) {
    const BATCHES: u64 = 30;
    let steps = chain(BATCHES);
    std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let mut seen = 0;
            while seen < BATCHES {
                let Some(last) = store.last_commit().unwrap() else {
                    continue;
                };
                assert!(last.index() >= seen, "commits never go back");
                seen = last.index();
                for reference in &last.commit().blocks {
                    assert!(store.contains_block(reference).unwrap(), "{reference:?}");
                }
                let progress = store
                    .read_meta("progress")
                    .unwrap()
                    .expect("meta with commit");
                assert!(u64::from_be_bytes(progress[..].try_into().unwrap()) >= seen);
            }
        });
        for step in steps.chunks(1) {
            store.write(batch_of(step)).unwrap();
        }
        reader.join().unwrap();
    });
}

// Implementation-specific behaviour.

fn open(path: &Path) -> RedbStore {
    RedbStore::open(path).unwrap()
}

#[test]
fn redb_reopen_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    // The parent directories do not exist yet.
    let path = dir.path().join("nested/dirs/store.redb");
    let steps = chain(5);
    let loose = block(9, 3, 20, 0);
    {
        let store = open(&path);
        store.write(batch_of(&steps)).unwrap();
        let mut batch = WriteBatch::new();
        batch.add_block(&loose).put_meta("k", &b"v"[..]);
        store.write(batch).unwrap();
        store.prune(2, 2).unwrap();
    }
    let store = RedbStore::open_with(
        &path,
        &RedbOptions {
            check_integrity_on_open: true,
            ..RedbOptions::default()
        },
    )
    .unwrap();
    assert_eq!(store.path(), path);
    assert_eq!(store.commit_range().unwrap(), Some((2, 5)));
    assert_eq!(store.last_commit_index().unwrap(), 5);
    for (blocks, commit) in &steps[1..] {
        assert_eq!(
            store.read_commit(commit.index()).unwrap().as_ref(),
            Some(commit)
        );
        for b in blocks {
            assert_eq!(
                store.read_block(&b.reference()).unwrap().as_ref(),
                Some(b.serialized())
            );
        }
    }
    assert!(!store.contains_block(&steps[0].0[0].reference()).unwrap());
    assert_eq!(
        store.read_block(&loose.reference()).unwrap().as_ref(),
        Some(loose.serialized())
    );
    assert_eq!(store.highest_block_round().unwrap(), Some(9));
    assert_eq!(store.read_meta("k").unwrap().as_deref(), Some(&b"v"[..]));
    assert_eq!(
        store.read_meta("progress").unwrap().as_deref(),
        Some(&5u64.to_be_bytes()[..])
    );
    // The sequence continues after the reopen.
    let next = chain(6).pop().unwrap();
    store.write(batch_of(&[next])).unwrap();
    assert_eq!(store.last_commit_index().unwrap(), 6);
}

#[test]
fn redb_refuses_a_second_open_of_the_same_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let _first = open(&path);
    let err = RedbStore::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::InUse { .. }), "{err}");
    assert_eq!(err.name(), "in_use");
}

#[test]
fn redb_open_of_a_file_that_is_not_a_database_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    std::fs::write(
        &path,
        b"definitely not a redb file, but long enough to look like one?",
    )
    .unwrap();
    let err = RedbStore::open(&path).unwrap_err();
    assert_eq!(err.name(), "database", "{err}");
}
