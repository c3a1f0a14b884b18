//! `dagstream store repair`: checks a data dir's store, and moves a damaged
//! one aside so that the node can start over.
//!
//! A store is damaged when its index fails the integrity check on open, or
//! when its chain does not verify: a commit that does not follow the one
//! before, a block missing, or block bytes that do not match their digest.
//! Nothing of a damaged store is trusted or salvaged: block bytes are
//! content-addressed and a node gets them again, verified, from where it
//! got them first. An observer re-syncs from its upstreams, and its
//! `--output` file goes on from its last line (the file, not the store,
//! says what the consumer has); a validator makes the same chain again from
//! its genesis. The damaged store stays next to the new one for forensics.

use crate::chain;
use crate::cmd_inspect::check_chain;
use anyhow::{bail, Context, Result};
use dagstream_store::{StoreError, WriteBatch};
use dagstream_types::{Committee, Genesis};
use std::path::{Path, PathBuf};

/// What [`repair`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Repair {
    /// The store is sound.
    Sound,
    /// The store was damaged and moved to this path.
    MovedAside(PathBuf),
}

pub fn repair(data_dir: &Path) -> Result<Repair> {
    let Some(path) = chain::store_path(data_dir) else {
        bail!(
            "no store in {}: is it a dagstream data dir?",
            data_dir.display()
        );
    };
    let committee = Genesis::load(data_dir)
        .ok()
        .map(Committee::new)
        .transpose()?;
    let damage = match chain::open_checked(data_dir, true) {
        Err(err @ StoreError::InUse { .. }) => bail!("{err} Stop the node first."),
        Err(err @ (StoreError::Damaged { .. } | StoreError::Corrupt { .. })) => err.to_string(),
        Err(other) => return Err(other).with_context(|| format!("cannot open {}", path.display())),
        Ok(store) => match check_chain(store.as_ref(), committee.as_ref()) {
            Ok(_) => return Ok(Repair::Sound),
            Err(err) => format!("{err:#}"),
        },
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "store".into());
    let aside = path.with_file_name(format!(
        "{name}.damaged-{}",
        dagstream_types::unix_time_ms()
    ));
    std::fs::rename(&path, &aside)
        .with_context(|| format!("cannot move {} aside", path.display()))?;
    // A fresh store, marked: its node starts over, behind what its
    // consumer already has.
    let fresh = chain::open_store(data_dir)?;
    let mut batch = WriteBatch::new();
    batch.put_meta(chain::RESYNC_KEY, aside.display().to_string().into_bytes());
    fresh.write(batch)?;
    tracing::warn!(damage, moved_to = %aside.display(), "damaged store moved aside");
    Ok(Repair::MovedAside(aside))
}

pub fn run(data_dir: &Path) -> Result<()> {
    match repair(data_dir)? {
        Repair::Sound => println!(
            "the store in {} is sound: its index passed the integrity check and its chain \
             verified; nothing to do",
            data_dir.display()
        ),
        Repair::MovedAside(aside) => println!(
            "the store in {} was damaged and is now at {}. Start the node again: it starts \
             over from its genesis (an observer re-syncs from its upstreams and its --output \
             file goes on from its last line; a validator makes the same chain again). \
             Delete the damaged copy when it is no longer wanted.",
            data_dir.display(),
            aside.display()
        ),
    }
    Ok(())
}
