//! The archive's small JSON objects (`docs/archive.md`): the manifest, the
//! writer's lease and the watermarks. Each is written whole and read with a
//! bound on its size; a read names the object it could not use.

use crate::error::{ArchiveError, Result};
use crate::layout::{parse_watermark_name, Manifest, Watermark, MANIFEST, WATERMARKS};
use crate::objects::Objects;
use crate::pool::BufferPool;
use bytes::Bytes;

/// The largest small object read: they are a few hundred bytes.
const MAX_SMALL_OBJECT: usize = 64 << 10;

/// `value` as the archive stores it.
pub(crate) fn json<T: serde::Serialize>(value: &T) -> Bytes {
    Bytes::from(serde_json::to_vec_pretty(value).expect("plain structs serialize"))
}

/// Small JSON object `name`, which must exist.
pub(crate) async fn read_json<T: serde::de::DeserializeOwned>(
    objects: &Objects,
    name: &str,
) -> Result<T> {
    let bytes = objects
        .get_existing(name, MAX_SMALL_OBJECT, &BufferPool::default())
        .await?;
    serde_json::from_slice(&bytes).map_err(|err| ArchiveError::Damaged {
        object: objects.object(name),
        reason: err.to_string(),
    })
}

/// The archive's manifest, which must exist.
pub(crate) async fn read_manifest(objects: &Objects) -> Result<Manifest> {
    read_json(objects, MANIFEST).await
}

/// Listings a reader retries when the highest watermark it listed is
/// deleted before it reads it (the writer advanced meanwhile).
const WATERMARK_ATTEMPTS: usize = 8;

/// The archive's watermark: the highest of `watermarks/`; `None` before the
/// first bundle is archived.
pub(crate) async fn read_watermark(objects: &Objects) -> Result<Option<Watermark>> {
    for _ in 0..WATERMARK_ATTEMPTS {
        let names = objects.list(WATERMARKS).await?;
        let Some((checkpoint, name)) = names
            .iter()
            .filter_map(|n| parse_watermark_name(n).map(|c| (c, n)))
            .max()
        else {
            return Ok(None);
        };
        let object = objects.object(name);
        let Some(bytes) = objects
            .get(name, MAX_SMALL_OBJECT, &BufferPool::default())
            .await?
        else {
            // Superseded and deleted since the listing: list again.
            continue;
        };
        let watermark: Watermark =
            serde_json::from_slice(&bytes).map_err(|err| ArchiveError::Damaged {
                object: object.clone(),
                reason: err.to_string(),
            })?;
        if watermark.checkpoint != checkpoint {
            return Err(ArchiveError::Damaged {
                object,
                reason: format!("it names checkpoint {}", watermark.checkpoint),
            });
        }
        return Ok(Some(watermark));
    }
    Err(ArchiveError::Missing {
        object: objects.object(WATERMARKS),
    })
}
