//! Data directories: where a node's store is, and which chain it belongs to.

use anyhow::{bail, Result};
use dagstream_store::{
    RedbOptions, RedbStore, SegmentOptions, SegmentStore, Store, StoreError, WriteBatch,
};
use dagstream_types::Committee;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The store of a data dir: segment files and their index.
const STORE_DIR: &str = "store";
/// The single-file store of data dirs made by earlier builds.
const LEGACY_STORE_FILE: &str = "store.redb";

/// Where a data dir's store is, if it has one.
pub fn store_path(data_dir: &Path) -> Option<PathBuf> {
    [STORE_DIR, LEGACY_STORE_FILE]
        .map(|name| data_dir.join(name))
        .into_iter()
        .find(|path| path.exists())
}

/// Opens the store of a data dir, creating a [`SegmentStore`] in a new one.
/// A data dir made by an earlier build keeps its single-file [`RedbStore`].
/// Either is checked on open: a damaged store is refused, never read or
/// written, and the error says how to recover.
pub fn open_store(data_dir: &Path) -> Result<Arc<dyn Store>> {
    open_checked(data_dir, false).map_err(|err| explain(err, data_dir))
}

/// [`open_store`], with the store's own error. `whole`: check the index
/// whatever its size (a node's start skips the check of a very large one;
/// see [`SegmentOptions::max_checked_index_bytes`]).
pub fn open_checked(data_dir: &Path, whole: bool) -> Result<Arc<dyn Store>, StoreError> {
    let legacy = data_dir.join(LEGACY_STORE_FILE);
    let opened: Result<Arc<dyn Store>, StoreError> = if legacy.exists()
        && !data_dir.join(STORE_DIR).exists()
    {
        tracing::info!(path = %legacy.display(), "opening a single-file store of an earlier build");
        // The single file holds the blocks too: the same size limit as a
        // segment store's index keeps a start from taking minutes.
        let size = std::fs::metadata(&legacy).map_or(0, |m| m.len());
        let options = RedbOptions {
            check_integrity_on_open: whole
                || size <= SegmentOptions::default().max_checked_index_bytes,
            ..RedbOptions::default()
        };
        RedbStore::open_with(&legacy, &options).map(|s| Arc::new(s) as Arc<dyn Store>)
    } else {
        let mut options = SegmentOptions::default();
        if whole {
            options.max_checked_index_bytes = u64::MAX;
        }
        SegmentStore::open_with(&data_dir.join(STORE_DIR), &options)
            .map(|s| Arc::new(s) as Arc<dyn Store>)
    };
    opened
}

/// A store error at open, with what to do about it.
pub fn explain(err: StoreError, data_dir: &Path) -> anyhow::Error {
    match err {
        StoreError::Damaged { .. } | StoreError::Corrupt { .. } => anyhow::anyhow!(
            "{err}. To recover, run `dagstream store repair --data-dir {dir}`: it moves the \
             damaged store aside, and the node starts over from its genesis (an observer \
             re-syncs from its upstreams, and its --output file goes on from its last line; \
             a validator makes the same chain again)",
            dir = data_dir.display()
        ),
        StoreError::OtherFormat { found, expected } if found < expected => anyhow::anyhow!(
            "{err}: it was written by an earlier dagstream, whose chain this build cannot \
             read. Run `dagstream store repair --data-dir {dir}` to move it aside; the node \
             then starts over from its genesis",
            dir = data_dir.display()
        ),
        StoreError::OtherFormat { .. } => {
            anyhow::anyhow!("{err}: it was written by a newer dagstream; run that build on it")
        }
        other => anyhow::Error::new(other)
            .context(format!("cannot open the store in {}", data_dir.display())),
    }
}
/// Meta key set in the fresh store that `dagstream store repair` makes: its
/// node starts over from genesis, so an observer's `--output` file may be
/// ahead of it.
pub const RESYNC_KEY: &str = "store/resync";

/// Meta key of the committee digest of the chain a store holds.
const CHAIN_KEY: &str = "chain/genesis";

/// Marks a new store with its chain, or refuses a store of another chain.
pub fn claim(store: &dyn Store, committee: &Committee, data_dir: &Path) -> Result<()> {
    let digest = committee.digest();
    match store.read_meta(CHAIN_KEY)? {
        Some(stored) if stored.as_ref() == digest.as_bytes() => Ok(()),
        Some(stored) => bail!(
            "the data dir {} holds chain {} but this genesis is chain {digest}: use the genesis \
             that made this data dir, or another --data-dir",
            data_dir.display(),
            hex::encode(&stored)
        ),
        None => {
            let mut batch = WriteBatch::new();
            batch.put_meta(CHAIN_KEY, digest.as_bytes().to_vec());
            store.write(batch)?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_data_dir_gets_segments_and_an_old_one_keeps_its_file() {
        let fresh = tempfile::tempdir().unwrap();
        assert_eq!(store_path(fresh.path()), None);
        drop(open_store(fresh.path()).unwrap());
        assert_eq!(store_path(fresh.path()), Some(fresh.path().join(STORE_DIR)));
        assert!(fresh.path().join("store/index.redb").is_file());

        let old = tempfile::tempdir().unwrap();
        let legacy = RedbStore::open(&old.path().join(LEGACY_STORE_FILE)).unwrap();
        let mut batch = WriteBatch::new();
        batch.put_meta("k", &b"v"[..]);
        legacy.write(batch).unwrap();
        drop(legacy);
        let store = open_store(old.path()).unwrap();
        assert_eq!(store.read_meta("k").unwrap().as_deref(), Some(&b"v"[..]));
        assert!(!old.path().join(STORE_DIR).exists());
    }

    #[test]
    fn another_format_says_which_build_to_use() {
        let dir = Path::new("/var/lib/node");
        let older = explain(
            StoreError::OtherFormat {
                found: 1,
                expected: 2,
            },
            dir,
        )
        .to_string();
        assert!(
            older.starts_with("the store has format 1, and this build reads format 2")
                && older.contains("earlier dagstream")
                && older.contains("dagstream store repair --data-dir /var/lib/node"),
            "{older}"
        );
        let newer = explain(
            StoreError::OtherFormat {
                found: 3,
                expected: 2,
            },
            dir,
        )
        .to_string();
        assert!(
            newer.ends_with("written by a newer dagstream; run that build on it"),
            "{newer}"
        );
    }
}
