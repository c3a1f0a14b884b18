//! The segment files alone: locations, appends (direct and buffered),
//! rotation, reads and recovery.

use super::*;

fn appender(dir: &Path, log_end: Option<(u64, u64)>, indexed: &[u64]) -> Result<Appender> {
    Appender::recover(dir, 100, log_end, &indexed.iter().copied().collect())
}

#[test]
fn location_round_trips_and_rejects_bad_lengths() {
    let location = Location {
        segment: 7,
        offset: 1 << 40,
        len: 99,
    };
    assert_eq!(Location::decode(&location.encode()).unwrap(), location);
    assert!(matches!(
        Location::decode(&[0; 19]),
        Err(StoreError::Corrupt {
            what: "block location",
            ..
        })
    ));
    let overflowing = Location {
        segment: 1,
        offset: u64::MAX - 5,
        len: 10,
    };
    assert!(matches!(
        Location::decode(&overflowing.encode()),
        Err(StoreError::Corrupt {
            what: "block location",
            ..
        })
    ));
}

#[test]
fn appends_rotate_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = appender(dir.path(), None, &[]).unwrap();
    let a = Bytes::from(vec![1u8; 60]);
    let b = Bytes::from(vec![2u8; 30]);
    let c = Bytes::from(vec![3u8; 50]);
    let first = log.append(&[&a, &b]).unwrap();
    // 90 + 50 > 100: the next batch starts segment 2.
    let second = log.append(&[&c]).unwrap();
    assert_eq!(
        [first, second].concat(),
        [(1, 0, 60), (1, 60, 30), (2, 0, 50)].map(|(segment, offset, len)| Location {
            segment,
            offset,
            len
        })
    );
    assert_eq!(log.position(), (2, 50));
    assert_eq!(list(dir.path()).unwrap(), BTreeSet::from([1, 2]));
    let readers = Readers::new(dir.path());
    assert_eq!(readers.read(1, 60, 30).unwrap(), b);
    assert_eq!(readers.read(2, 0, 50).unwrap(), c);
    assert!(matches!(
        readers.read(2, 40, 20),
        Err(StoreError::Corrupt {
            what: "segment",
            ..
        })
    ));
}

/// Two appends to one segment, as direct I/O (`direct`) or buffered:
/// where the second starts, and that both read back, with the file as
/// long as the end.
fn two_appends(direct: bool) -> (Option<bool>, u64) {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Appender::recover(dir.path(), 1 << 20, None, &BTreeSet::new()).unwrap();
    log.direct_io = direct;
    let a = Bytes::from(vec![1u8; 60]);
    let b = Bytes::from((0..5000u32).map(|i| i as u8).collect::<Vec<u8>>());
    let first = log.append(&[&a]).unwrap();
    let second = log.append(&[&b]).unwrap();
    assert_eq!(first[0].offset, 0);
    let readers = Readers::new(dir.path());
    assert_eq!(readers.read(1, 0, 60).unwrap(), a);
    assert_eq!(readers.read(1, second[0].offset, 5000).unwrap(), b);
    let end = second[0].offset + 5000;
    assert_eq!(log.position(), (1, end));
    let len = std::fs::metadata(segment_path(dir.path(), 1))
        .unwrap()
        .len();
    assert_eq!(len, end, "the file ends where the log does");
    // Reopened at that end, nothing is cut and the next append follows.
    drop(log);
    let mut log = appender(dir.path(), Some((1, end)), &[1]).unwrap();
    let third = log.append(&[&a]).unwrap();
    assert_eq!(readers.read(1, third[0].offset, 60).unwrap(), a);
    assert_eq!(readers.read(1, second[0].offset, 5000).unwrap(), b);
    (direct.then_some(log.direct_io), second[0].offset)
}

#[test]
fn direct_appends_start_on_a_block_boundary_and_read_back() {
    match two_appends(true) {
        // The file system takes O_DIRECT: the second batch starts at
        // the next 4 KiB boundary.
        (Some(true), second) => assert_eq!(second, DIRECT_ALIGN as u64),
        // It refused (tmpfs): the appender fell back to buffered writes.
        (Some(false), second) => assert_eq!(second, 60),
        (None, _) => unreachable!("asked for direct I/O"),
    }
}

#[test]
fn buffered_appends_are_contiguous() {
    assert_eq!(two_appends(false), (None, 60));
}

#[test]
fn recovery_cuts_the_unacknowledged_tail_and_drops_unknown_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = appender(dir.path(), None, &[]).unwrap();
    log.append(&[&Bytes::from(vec![1u8; 40])]).unwrap();
    log.append(&[&Bytes::from(vec![2u8; 40])]).unwrap();
    // Segment 2 was started but the index never learned of it.
    log.append(&[&Bytes::from(vec![3u8; 40])]).unwrap();
    drop(log);

    // The index acknowledged only the first 40 bytes of segment 1.
    let log = appender(dir.path(), Some((1, 40)), &[1]).unwrap();
    assert_eq!(log.position(), (1, 40));
    assert_eq!(list(dir.path()).unwrap(), BTreeSet::from([1]));
    let len = std::fs::metadata(segment_path(dir.path(), 1))
        .unwrap()
        .len();
    assert_eq!(len, 40);
}

#[test]
fn recovery_refuses_missing_or_short_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = appender(dir.path(), None, &[]).unwrap();
    log.append(&[&Bytes::from(vec![1u8; 40])]).unwrap();
    drop(log);
    let short = appender(dir.path(), Some((1, 41)), &[1]).unwrap_err();
    assert!(
        matches!(&short, StoreError::Corrupt { what: "segment", reason } if reason.contains("41 were written")),
        "{short}"
    );
    let gone = appender(dir.path(), Some((2, 0)), &[1, 3]).unwrap_err();
    assert!(
        matches!(&gone, StoreError::Corrupt { what: "segment", reason } if reason.contains("0000000000000003.seg: the file is missing")),
        "{gone}"
    );
}
