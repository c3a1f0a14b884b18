//! Data directories: where a node's store is, and which chain it belongs to.

use anyhow::{bail, Context, Result};
use dagstream_store::{RedbStore, SegmentStore, Store, WriteBatch};
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
pub fn open_store(data_dir: &Path) -> Result<Arc<dyn Store>> {
    let context = || {
        format!(
            "cannot open the store in {}: is a node running on this data dir?",
            data_dir.display()
        )
    };
    let legacy = data_dir.join(LEGACY_STORE_FILE);
    if legacy.exists() && !data_dir.join(STORE_DIR).exists() {
        tracing::info!(path = %legacy.display(), "opening a single-file store of an earlier build");
        return Ok(Arc::new(RedbStore::open(&legacy).with_context(context)?));
    }
    Ok(Arc::new(
        SegmentStore::open(&data_dir.join(STORE_DIR)).with_context(context)?,
    ))
}

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
}
