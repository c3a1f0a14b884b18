//! [`Objects`]: an archive's location, opened from its URL, and the few
//! operations the archive needs, each error naming its object.
//!
//! - `file:///path`: a directory on this machine. Every write goes to a
//!   temporary file that is renamed into place, so a half-written object
//!   is never visible; a conditional create is a hard link, which fails if
//!   the name exists.
//! - `s3://bucket/prefix`: any S3-compatible service, configured by the
//!   standard AWS variables (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`,
//!   `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ALLOW_HTTP`). A PUT is
//!   atomic; a conditional create sends `If-None-Match: *`.

use crate::error::{ArchiveError, Result};
use crate::pool::BufferPool;
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    BackoffConfig, GetResultPayload, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    RetryConfig,
};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Duration;

/// Retries of one request inside the client, before the error reaches the
/// archive's own loop (which retries without end, with its own backoff):
/// a few, so that an outage shows as lag and a metric within seconds.
const CLIENT_RETRIES: usize = 2;
/// How long the client retries one request at most.
const CLIENT_RETRY_TIMEOUT: Duration = Duration::from_secs(10);

/// An archive's objects.
#[derive(Clone)]
pub struct Objects {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    url: String,
}

/// Where an archive URL points, checked.
enum Location<'a> {
    File {
        path: &'a str,
    },
    S3 {
        bucket: &'a str,
        prefix: Path,
        /// `bucket/prefix`, without trailing slashes.
        rest: &'a str,
    },
}

impl<'a> Location<'a> {
    fn parse(url: &'a str) -> Result<Location<'a>> {
        let invalid = |reason: &str| ArchiveError::Url {
            url: url.into(),
            reason: reason.into(),
        };
        if let Some(path) = url.strip_prefix("file://") {
            let path = match path.trim_end_matches('/') {
                "" => "/",
                trimmed => trimmed,
            };
            if !path.starts_with('/') {
                return Err(invalid(
                    "a file URL needs an absolute path, as in file:///var/lib/archive",
                ));
            }
            return Ok(Location::File { path });
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            let rest = rest.trim_end_matches('/');
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(invalid("no bucket: use s3://bucket/prefix"));
            }
            let prefix = Path::parse(prefix).map_err(|err| ArchiveError::Url {
                url: url.into(),
                reason: format!("the prefix: {err}"),
            })?;
            return Ok(Location::S3 {
                bucket,
                prefix,
                rest,
            });
        }
        Err(invalid(
            "unknown scheme: use file:///path or s3://bucket/prefix",
        ))
    }
}

impl std::fmt::Debug for Objects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Objects").field("url", &self.url).finish()
    }
}

impl Objects {
    /// Opens the archive at `url` (`file:///path` or `s3://bucket/prefix`).
    /// A local directory is created if absent. Nothing is read yet.
    pub fn open(url: &str) -> Result<Self> {
        let invalid = |reason: String| ArchiveError::Url {
            url: url.into(),
            reason,
        };
        match Location::parse(url)? {
            Location::File { path } => {
                std::fs::create_dir_all(path)
                    .map_err(|err| invalid(format!("cannot create the directory: {err}")))?;
                let store = LocalFileSystem::new_with_prefix(path)
                    .map_err(|err| invalid(err.to_string()))?
                    .with_automatic_cleanup(true);
                Ok(Objects {
                    store: Arc::new(store),
                    prefix: Path::default(),
                    url: format!("file://{path}"),
                })
            }
            Location::S3 {
                bucket,
                prefix,
                rest,
            } => {
                // The TLS stack of https endpoints: ring, as the node's
                // gRPC uses. Installing it twice is harmless.
                let _ = rustls::crypto::ring::default_provider().install_default();
                let retry = RetryConfig {
                    backoff: BackoffConfig::default(),
                    max_retries: CLIENT_RETRIES,
                    retry_timeout: CLIENT_RETRY_TIMEOUT,
                };
                let store = AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_retry(retry)
                    .build()
                    .map_err(|err| invalid(err.to_string()))?;
                Ok(Objects {
                    store: Arc::new(store),
                    prefix,
                    url: format!("s3://{rest}"),
                })
            }
        }
    }

    /// Checks that `url` names an archive [`open`](Self::open) can open,
    /// touching nothing: for a node that only names the archive to others.
    pub fn check_url(url: &str) -> Result<()> {
        Location::parse(url).map(drop)
    }

    /// The archive's URL, as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn path(&self, name: &str) -> Path {
        self.prefix
            .parts()
            .chain(Path::from(name).parts())
            .collect()
    }

    /// Object `name` as errors name it: the archive's URL and the name.
    pub fn object(&self, name: &str) -> String {
        format!("{}/{name}", self.url)
    }

    fn error(&self, name: &str, source: object_store::Error) -> ArchiveError {
        ArchiveError::Store {
            object: self.object(name),
            source,
        }
    }

    /// Object `name`'s bytes; `None` if there is no such object. An
    /// object larger than `max` bytes is refused before it is read. A
    /// local file is read into a buffer from `pool`; an object from a
    /// service, as its chunks arrive.
    pub async fn get(&self, name: &str, max: usize, pool: &BufferPool) -> Result<Option<Bytes>> {
        let result = match self.store.get(&self.path(name)).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(source) => return Err(self.error(name, source)),
        };
        let size = usize::try_from(result.meta.size).unwrap_or(usize::MAX);
        if size > max {
            return Err(ArchiveError::TooLarge {
                object: self.object(name),
                size,
                max,
            });
        }
        let range = result.range.clone();
        match result.payload {
            GetResultPayload::File(file, _) => {
                let pool = pool.clone();
                tokio::task::spawn_blocking(move || read_file(&file, range, &pool))
                    .await
                    .expect("reading a file does not panic")
                    .map(Some)
                    .map_err(|source| {
                        let source = object_store::Error::Generic {
                            store: "LocalFileSystem",
                            source: Box::new(source),
                        };
                        self.error(name, source)
                    })
            }
            GetResultPayload::Stream(chunks) => {
                let chunks: Vec<Bytes> = chunks
                    .try_collect()
                    .await
                    .map_err(|source| self.error(name, source))?;
                Ok(Some(join(chunks, pool)))
            }
        }
    }

    /// [`get`](Self::get) of an object that must exist: its absence is
    /// [`ArchiveError::Missing`].
    pub async fn get_existing(&self, name: &str, max: usize, pool: &BufferPool) -> Result<Bytes> {
        self.get(name, max, pool)
            .await?
            .ok_or_else(|| ArchiveError::Missing {
                object: self.object(name),
            })
    }

    /// Writes object `name`, replacing any object of that name.
    pub async fn put(&self, name: &str, bytes: Bytes) -> Result<()> {
        self.store
            .put(&self.path(name), PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(|source| self.error(name, source))
    }

    /// Creates object `name` unless it exists: `false` if it did.
    pub async fn create(&self, name: &str, bytes: Bytes) -> Result<bool> {
        let options = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .store
            .put_opts(&self.path(name), PutPayload::from(bytes), options)
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            // Some services answer a failed If-None-Match with 412.
            Err(object_store::Error::Precondition { .. }) => Ok(false),
            Err(source) => Err(self.error(name, source)),
        }
    }

    /// Deletes object `name`; deleting one that is gone is not an error.
    pub async fn delete(&self, name: &str) -> Result<()> {
        match self.store.delete(&self.path(name)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(self.error(name, source)),
        }
    }

    /// The names (relative to the archive) under `dir` (`"bundles/"`),
    /// sorted: sequence order, since every name is zero-padded.
    pub async fn list(&self, dir: &str) -> Result<Vec<String>> {
        let prefix = self.path(dir.trim_end_matches('/'));
        let skip = self.prefix.parts().count();
        let mut names: Vec<String> = self
            .store
            .list(Some(&prefix))
            .map_ok(|meta| {
                meta.location
                    .parts()
                    .skip(skip)
                    .map(|part| part.as_ref().to_string())
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .try_collect()
            .await
            .map_err(|source| self.error(dir, source))?;
        names.sort();
        Ok(names)
    }
}

/// Reads `range` of `file`, whole, into a buffer from `pool`.
fn read_file(file: &std::fs::File, range: Range<u64>, pool: &BufferPool) -> std::io::Result<Bytes> {
    let len = usize::try_from(range.end - range.start)
        .map_err(|_| std::io::Error::other("the object does not fit in memory"))?;
    let mut buffer = pool.take(len);
    // A reused buffer's pages are already there: zeroing them is a memset,
    // not the kernel's page faults.
    buffer.resize(len, 0);
    file.read_exact_at(&mut buffer, range.start)?;
    Ok(pool.share(buffer))
}

/// An object's chunks as one [`Bytes`] (uncopied if there is one chunk).
fn join(chunks: Vec<Bytes>, pool: &BufferPool) -> Bytes {
    if let [chunk] = &chunks[..] {
        return chunk.clone();
    }
    let mut buffer = pool.take(chunks.iter().map(Bytes::len).sum());
    for chunk in &chunks {
        buffer.extend_from_slice(chunk);
    }
    pool.share(buffer)
}
