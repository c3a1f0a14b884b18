//! [`ArchiveReader`]: an archive opened for reading, and its bundles
//! fetched in order.
//!
//! The reader checks what the archive says about itself (manifest,
//! watermark, names, that each bundle follows the one before) and nothing
//! more: the archive is untrusted, and a bundle's commits count only once
//! the observer has verified them as it verifies a validator's.

use crate::bundle::{self, MAX_BUNDLE_BYTES};
use crate::error::{ArchiveError, Result};
use crate::layout::{bundle_name, parse_bundle_name, Watermark, BUNDLES};
use crate::objects::Objects;
use crate::pool::BufferPool;
use crate::records::{read_manifest, read_watermark};
use dagstream_proto::v1::ArchiveBundle;
use dagstream_types::{CommitIndex, Digest};
use futures::stream::{self, Stream, StreamExt};

/// An archive opened for reading.
#[derive(Debug)]
pub struct ArchiveReader {
    objects: Objects,
    watermark: Option<Watermark>,
    /// The bundles under the watermark: first commit and name, ascending.
    bundles: Vec<(CommitIndex, String)>,
}

/// One bundle, fetched and decoded (not verified).
#[derive(Debug)]
pub struct Fetched {
    /// The object's name, with the archive's URL: what an error names.
    pub object: String,
    pub bundle: ArchiveBundle,
}

impl ArchiveReader {
    /// Opens the archive at `url`: its manifest must be of chain `chain`
    /// and of this format; then its watermark and the names of the bundles
    /// under it are read (one listing).
    pub async fn open(url: &str, chain: Digest) -> Result<Self> {
        let objects = Objects::open(url)?;
        read_manifest(&objects).await?.check(objects.url(), chain)?;
        let watermark = read_watermark(&objects).await?;
        let top = watermark.as_ref().map_or(0, |w| w.commit);
        let bundles = objects
            .list(BUNDLES)
            .await?
            .into_iter()
            .filter_map(|name| parse_bundle_name(&name).map(|first| (first, name)))
            .filter(|(first, _)| *first <= top)
            .collect();
        Ok(ArchiveReader {
            objects,
            watermark,
            bundles,
        })
    }

    pub fn url(&self) -> &str {
        self.objects.url()
    }

    /// The archive's watermark; `None` while it is empty.
    pub fn watermark(&self) -> Option<&Watermark> {
        self.watermark.as_ref()
    }

    /// The last commit the archive holds (0: none).
    pub fn last_commit(&self) -> CommitIndex {
        self.watermark.as_ref().map_or(0, |w| w.commit)
    }

    /// The bundles that hold the commits after `after` up to the
    /// watermark, fetched and decoded up to `concurrency` at once, yielded
    /// in order. A bundle that is missing, damaged, or does not follow the
    /// one before ends the stream with an error that names it.
    pub fn bundles_after(
        &self,
        after: CommitIndex,
        concurrency: usize,
    ) -> impl Stream<Item = Result<Fetched>> + Send + 'static {
        let last = self.last_commit();
        let start = self
            .bundles
            .iter()
            .rposition(|(first, _)| *first <= after + 1)
            .unwrap_or(0);
        let wanted: Vec<(CommitIndex, String)> = if after >= last {
            Vec::new()
        } else {
            self.bundles[start..].to_vec()
        };
        let objects = self.objects.clone();
        let url = self.objects.url().to_string();
        // Compressed and decompressed bundles differ in size: a pool each.
        let pools = Pools::default();
        let fetches = stream::iter(wanted)
            .map(move |(first, name)| {
                let (objects, pools) = (objects.clone(), pools.clone());
                async move { fetch(&objects, first, &name, pools).await }
            })
            .buffered(concurrency.max(1));
        // Each bundle must start where the one before ended (the first, at
        // or before `after + 1`), and the last must end at the watermark.
        let expected = ExpectedNext {
            commit: after + 1,
            first: true,
            last,
            url,
        };
        stream::unfold(
            (Box::pin(fetches), Some(expected)),
            |(mut fetches, expected)| async move {
                let mut expected = expected?;
                match fetches.next().await {
                    Some(Ok(fetched)) => {
                        let bundle = &fetched.bundle;
                        let follows = if expected.first {
                            bundle.first_commit <= expected.commit
                                && bundle.last_commit >= expected.commit
                        } else {
                            bundle.first_commit == expected.commit
                        };
                        if !follows || bundle.last_commit > expected.last {
                            let err = expected.missing();
                            return Some((Err(err), (fetches, None)));
                        }
                        expected.commit = bundle.last_commit + 1;
                        expected.first = false;
                        Some((Ok(fetched), (fetches, Some(expected))))
                    }
                    Some(Err(err)) => Some((Err(err), (fetches, None))),
                    None if expected.commit <= expected.last => {
                        Some((Err(expected.missing()), (fetches, None)))
                    }
                    None => None,
                }
            },
        )
    }
}

/// Where the next bundle must start.
struct ExpectedNext {
    commit: CommitIndex,
    first: bool,
    last: CommitIndex,
    url: String,
}

impl ExpectedNext {
    fn missing(&self) -> ArchiveError {
        ArchiveError::Missing {
            object: format!("{}/{}", self.url, bundle_name(self.commit)),
        }
    }
}

/// Buffers for bundles as read, and as decompressed.
#[derive(Clone, Default)]
struct Pools {
    read: BufferPool,
    decompressed: BufferPool,
}

async fn fetch(objects: &Objects, first: CommitIndex, name: &str, pools: Pools) -> Result<Fetched> {
    let bytes = objects
        .get_existing(name, MAX_BUNDLE_BYTES, &pools.read)
        .await?;
    let object = objects.object(name);
    let named = object.clone();
    let bundle = tokio::task::spawn_blocking(move || {
        bundle::decode_pooled(&named, first, &bytes, &pools.decompressed)
    })
    .await
    .expect("decoding a bundle does not panic")?;
    Ok(Fetched { object, bundle })
}
