//! [`SegmentStore`] beyond the conformance suite: its files on disk, what a
//! reopen repairs, and what it refuses.

mod common;

use common::{block, commit};
use dagstream_store::{SegmentOptions, SegmentStore, Store, StoreError, WriteBatch};
use dagstream_test_utils::store::damage_pages;
use dagstream_types::{BlockRef, CommitIndex, Digest, VerifiedBlock};
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Blocks of this many payload bytes: with [`SEGMENT_BYTES`], two rounds of
/// four blocks fill a segment.
const PAYLOAD: usize = 1000;
const SEGMENT_BYTES: u64 = 8 * 1200;

fn options() -> SegmentOptions {
    SegmentOptions {
        segment_bytes: SEGMENT_BYTES,
        ..SegmentOptions::default()
    }
}

fn open(dir: &Path) -> SegmentStore {
    SegmentStore::open_with(dir, &options()).unwrap()
}

/// Writes rounds `1..=rounds`, one batch and one commit per round.
fn write_rounds(store: &SegmentStore, rounds: CommitIndex) -> Vec<Vec<VerifiedBlock>> {
    let mut previous = store
        .last_commit()
        .unwrap()
        .map_or(Digest::ZERO, |c| c.digest());
    let first = store.last_commit_index().unwrap() + 1;
    (first..first + rounds)
        .map(|round| {
            let blocks: Vec<_> = (0..4).map(|a| block(round, a, PAYLOAD, 0)).collect();
            let mut batch = WriteBatch::new();
            blocks.iter().for_each(|b| {
                batch.add_block(b);
            });
            let commit = commit(round, previous, &blocks);
            previous = commit.digest();
            batch.add_commit(commit);
            store.write(batch).unwrap();
            blocks
        })
        .collect()
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

fn all_blocks(store: &SegmentStore) -> Result<Vec<(BlockRef, bytes::Bytes)>, StoreError> {
    store.scan_blocks(BlockRef::round_start(0), u64::MAX, usize::MAX)
}

#[test]
fn blocks_go_to_segments_that_pruning_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let rounds = write_rounds(&store, 10);
    // Two rounds per segment.
    assert_eq!(segment_files(dir.path()).len(), 5);
    assert_eq!(store.path(), dir.path());

    store.prune(5, 5).unwrap();
    // Segments 1 and 2 hold rounds 1 to 4 only; segment 3 holds rounds 5
    // and 6, and stays.
    let names: Vec<_> = segment_files(dir.path())
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "0000000000000003.seg",
            "0000000000000004.seg",
            "0000000000000005.seg"
        ]
    );
    let kept: Vec<_> = rounds[4..]
        .iter()
        .flatten()
        .map(|b| (b.reference(), b.serialized().clone()))
        .collect();
    assert_eq!(all_blocks(&store).unwrap(), kept);

    // Everything survives a reopen, and the sequence continues.
    drop(store);
    let store = open(dir.path());
    assert_eq!(all_blocks(&store).unwrap(), kept);
    assert_eq!(store.commit_range().unwrap(), Some((5, 10)));
    write_rounds(&store, 1);
    assert_eq!(store.last_commit_index().unwrap(), 11);
    assert_eq!(segment_files(dir.path()).len(), 4);
}

/// Pages of random bytes written into the index (a disk fault, a stray
/// `dd`): the store refuses to open, naming the file, instead of trusting
/// it (a plain redb open panicked on the first read of such a file).
#[test]
fn a_damaged_index_is_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    write_rounds(&store, 40);
    drop(store);
    let pages = damage_pages(&dir.path().join("index.redb"));
    assert!(pages > 4, "an index of {pages} pages");
    let err = SegmentStore::open_with(dir.path(), &options()).unwrap_err();
    assert!(
        matches!(&err, StoreError::Damaged { path, .. } if path.ends_with("index.redb")),
        "{err}"
    );
}

#[test]
fn a_damaged_block_is_corrupt_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let rounds = write_rounds(&store, 2);
    drop(store);
    // Flip one byte of the second block of segment 1.
    let segment = &segment_files(dir.path())[0];
    let file = OpenOptions::new().write(true).open(segment).unwrap();
    let offset = rounds[0][0].serialized().len() as u64 + 10;
    file.write_all_at(&[0xff], offset).unwrap();
    drop(file);

    let store = open(dir.path());
    let damaged = rounds[0][1].reference();
    let err = store.read_block(&damaged).unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { what: "block", reason } if reason.contains("do not match its digest")),
        "{err}"
    );
    assert!(matches!(
        all_blocks(&store),
        Err(StoreError::Corrupt { what: "block", .. })
    ));
    // Its neighbours are intact.
    assert_eq!(
        store
            .read_block(&rounds[0][0].reference())
            .unwrap()
            .as_ref(),
        Some(rounds[0][0].serialized())
    );
}

#[test]
fn a_torn_tail_is_cut_off_on_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let rounds = write_rounds(&store, 1);
    drop(store);
    // What a crash between the append and the index commit leaves: bytes
    // past the end the index knows, and a segment it never heard of.
    let segment = &segment_files(dir.path())[0];
    let acknowledged = std::fs::metadata(segment).unwrap().len();
    let file = OpenOptions::new().append(true).open(segment).unwrap();
    file.write_all_at(b"half a block", acknowledged).unwrap();
    std::fs::write(dir.path().join("segments/0000000000000002.seg"), b"x").unwrap();

    let store = open(dir.path());
    assert_eq!(std::fs::metadata(segment).unwrap().len(), acknowledged);
    assert_eq!(segment_files(dir.path()), std::slice::from_ref(segment));
    let next = write_rounds(&store, 1);
    let expected: Vec<_> = [rounds, next]
        .concat()
        .iter()
        .flatten()
        .map(|b| (b.reference(), b.serialized().clone()))
        .collect();
    assert_eq!(all_blocks(&store).unwrap(), expected);
}

#[test]
fn a_short_or_missing_segment_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    write_rounds(&store, 5);
    drop(store);
    let files = segment_files(dir.path());
    // The newest segment lost its tail: acknowledged blocks are gone.
    let newest = files.last().unwrap();
    let len = std::fs::metadata(newest).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(newest)
        .unwrap()
        .set_len(len - 1)
        .unwrap();
    let err = SegmentStore::open_with(dir.path(), &options()).unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { what: "segment", reason } if reason.contains(&format!("{} bytes, but {len} were written", len - 1))),
        "{err}"
    );

    std::fs::remove_file(&files[0]).unwrap();
    let err = SegmentStore::open_with(dir.path(), &options()).unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { what: "segment", reason } if reason.contains("0000000000000001.seg: the file is missing")),
        "{err}"
    );
}

#[test]
fn a_second_open_of_the_same_store_fails() {
    let dir = tempfile::tempdir().unwrap();
    let _first = open(dir.path());
    let err = SegmentStore::open_with(dir.path(), &options()).unwrap_err();
    assert!(matches!(&err, StoreError::InUse { .. }), "{err}");
    assert!(err
        .to_string()
        .contains("is a node running on this data dir?"));
}

#[test]
fn a_batch_of_more_blocks_than_one_write_call_takes_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let store = SegmentStore::open(dir.path()).unwrap();
    // Linux takes at most 1,024 buffers per gathering write.
    let blocks: Vec<VerifiedBlock> = (1..=1500).map(|round| block(round, 0, 10, 0)).collect();
    let mut batch = WriteBatch::new();
    blocks.iter().for_each(|b| {
        batch.add_block(b);
    });
    store.write(batch).unwrap();
    drop(store);
    let store = SegmentStore::open(dir.path()).unwrap();
    let expected: Vec<_> = blocks
        .iter()
        .map(|b| (b.reference(), b.serialized().clone()))
        .collect();
    assert_eq!(
        store
            .scan_blocks(BlockRef::round_start(0), u64::MAX, usize::MAX)
            .unwrap(),
        expected
    );
}
