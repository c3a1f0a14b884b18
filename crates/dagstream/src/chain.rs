//! Data directories: which chain a store belongs to.

use anyhow::{bail, Result};
use dagstream_store::{Store, WriteBatch};
use dagstream_types::Committee;

/// Meta key of the committee digest of the chain a store holds.
const CHAIN_KEY: &str = "chain/genesis";

/// Marks a new store with its chain, or refuses a store of another chain.
pub fn claim(store: &dyn Store, committee: &Committee, data_dir: &std::path::Path) -> Result<()> {
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
