//! The archive's object operations behave the same on both backends: a
//! local directory, and a real S3-protocol server process (moto's) on a
//! loopback port.

use bytes::Bytes;
use dagstream_archive::pool::BufferPool;
use dagstream_archive::{ArchiveError, Objects};
use dagstream_test_utils::s3::S3Server;

async fn exercise(objects: &Objects) {
    let pool = BufferPool::default();
    // A conditional create succeeds once.
    assert!(objects
        .create("writer.json", Bytes::from_static(b"a"))
        .await
        .unwrap());
    assert!(!objects
        .create("writer.json", Bytes::from_static(b"b"))
        .await
        .unwrap());
    assert_eq!(
        objects.get("writer.json", 1024, &pool).await.unwrap(),
        Some(Bytes::from_static(b"a"))
    );
    assert_eq!(objects.get("absent.json", 1024, &pool).await.unwrap(), None);
    // Listing is in name order, relative to the archive, one prefix only.
    for name in [
        "bundles/3.x",
        "bundles/1.x",
        "bundles/2.x",
        "watermarks/1.json",
    ] {
        objects
            .put(name, Bytes::from(name.as_bytes().to_vec()))
            .await
            .unwrap();
    }
    assert_eq!(
        objects.list("bundles/").await.unwrap(),
        ["bundles/1.x", "bundles/2.x", "bundles/3.x"]
    );
    // An object above the reader's limit is refused before it is read.
    assert!(matches!(
        objects.get("bundles/1.x", 4, &pool).await.unwrap_err(),
        ArchiveError::TooLarge {
            size: 11,
            max: 4,
            ..
        }
    ));
    // A large object (in several chunks from a service) reads back whole,
    // twice into the same pool.
    let large = Bytes::from((0..3 << 20).map(|i: u32| i as u8).collect::<Vec<u8>>());
    objects.put("large/object", large.clone()).await.unwrap();
    for _ in 0..2 {
        let read = objects.get("large/object", 4 << 20, &pool).await.unwrap();
        assert_eq!(read, Some(large.clone()));
    }
    objects.delete("large/object").await.unwrap();
    objects.delete("bundles/2.x").await.unwrap();
    objects.delete("bundles/2.x").await.unwrap();
    assert_eq!(
        objects.list("bundles/").await.unwrap(),
        ["bundles/1.x", "bundles/3.x"]
    );
}

#[tokio::test]
async fn a_local_directory_archive() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}/archive", dir.path().display());
    exercise(&Objects::open(&url).unwrap()).await;
}

#[tokio::test]
async fn an_s3_archive_on_a_real_server() {
    let server = S3Server::start();
    server.create_bucket("chain");
    server.export_aws_env();
    exercise(&Objects::open("s3://chain/some/prefix").unwrap()).await;
    // The prefix keeps archives apart in one bucket.
    let other = Objects::open("s3://chain/other").unwrap();
    assert_eq!(other.list("bundles/").await.unwrap(), Vec::<String>::new());
}

#[test]
fn unusable_urls_are_refused_with_the_reason() {
    for (url, reason) in [
        ("/var/archive", "unknown scheme"),
        ("file://relative/path", "absolute path"),
        ("s3://", "no bucket"),
    ] {
        for refused in [
            Objects::open(url).unwrap_err(),
            Objects::check_url(url).unwrap_err(),
        ] {
            match refused {
                ArchiveError::Url { reason: got, .. } => {
                    assert!(got.contains(reason), "{url}: {got}")
                }
                other => panic!("{url}: {other:?}"),
            }
        }
    }
    // Checking a usable URL touches nothing; opening it makes the
    // directory.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("archive");
    let url = format!("file://{}", path.display());
    Objects::check_url(&url).unwrap();
    assert!(!path.exists());
    Objects::open(&url).unwrap();
    assert!(path.is_dir());
}
