//! Subscriber tokens and TLS, over real gRPC on loopback.

mod common;

use common::{start_validator, test_config, TestValidator};
use dagstream_proto::v1::chain_info_service_client::ChainInfoServiceClient;
use dagstream_proto::v1::commit_stream_service_client::CommitStreamServiceClient;
use dagstream_proto::v1::{
    commit_stream_request, CommitStreamRequest, GetChainInfoRequest, StartCommitStream,
};
use dagstream_publisher::pki::LocalPki;
use dagstream_publisher::security::fingerprint;
use dagstream_publisher::{PublisherConfig, TlsConfig};
use std::path::Path;
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Request, Status};

/// A commit stream opened with `token` (if any), started at 0: its first
/// response, or the status that refused it.
async fn first_commits(channel: Channel, token: Option<&str>) -> Result<usize, Status> {
    let authorization = token.map(|t| MetadataValue::try_from(format!("Bearer {t}")).unwrap());
    let mut client =
        CommitStreamServiceClient::with_interceptor(channel, move |mut request: Request<()>| {
            if let Some(value) = &authorization {
                request
                    .metadata_mut()
                    .insert("authorization", value.clone());
            }
            Ok(request)
        });
    let start = CommitStreamRequest {
        command: Some(commit_stream_request::Command::Start(StartCommitStream {
            last_commit_index: 0,
            preferred_batch_size: 0,
        })),
    };
    let mut responses = client
        .stream_commits(tokio_stream::iter([start]))
        .await?
        .into_inner();
    let first = common::patiently("a commit response", responses.message())
        .await?
        .expect("a response");
    Ok(first.commits.len())
}

fn write(dir: &Path, name: &str, contents: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_known_tokens_get_through_and_before_anything_else() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = write(dir.path(), "tokens", "# observers\nalpha\nbeta\n");
    let config = PublisherConfig {
        auth_tokens_path: Some(tokens),
        ..test_config()
    };
    let validator = start_validator(40, config).await;
    validator.wait_certified().await;

    for (token, message) in [
        (None, "a bearer token is required".to_string()),
        (
            Some("gamma"),
            format!("unknown token {}", fingerprint(b"gamma")),
        ),
    ] {
        let status = first_commits(validator.channel().await, token)
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
        assert!(status.message().starts_with(&message), "{status:?}");
        let status = ChainInfoServiceClient::new(validator.channel().await)
            .get_chain_info(GetChainInfoRequest {})
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
    }
    // Refused before taking a stream slot: no stream was ever opened.
    let opened = validator.metric("dagstream_publisher_active_streams", &[]);
    assert_eq!(opened, 0.0);
    assert_eq!(
        validator.metric("dagstream_publisher_disconnects_total", &[]),
        0.0
    );

    let commits = first_commits(validator.channel().await, Some("beta"))
        .await
        .unwrap();
    assert!(commits > 0);
    validator.stop().await;
}

/// A validator serving over mutual TLS with `pki`, and an endpoint to it.
async fn tls_validator(dir: &Path, pki: &LocalPki) -> (TestValidator, String) {
    let config = PublisherConfig {
        tls: Some(TlsConfig {
            cert_path: write(dir, "server.pem", &pki.server_cert),
            key_path: write(dir, "server.key", &pki.server_key),
            client_ca_path: Some(write(dir, "ca.pem", &pki.ca_cert)),
        }),
        ..test_config()
    };
    let validator = start_validator(40, config).await;
    validator.wait_certified().await;
    let endpoint = format!("https://localhost:{}", validator.addr().port());
    (validator, endpoint)
}

async fn tls_channel(endpoint: &str, tls: ClientTlsConfig) -> Result<Channel, String> {
    Endpoint::from_shared(endpoint.to_string())
        .unwrap()
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_admits_only_clients_with_a_certificate_of_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let hosts = ["localhost".to_string(), "127.0.0.1".to_string()];
    let pki = LocalPki::generate(&hosts, "observer-1").unwrap();
    let (validator, endpoint) = tls_validator(dir.path(), &pki).await;
    let trust = || ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&pki.ca_cert));

    // With the CA's client certificate: served.
    let identity = Identity::from_pem(&pki.client_cert, &pki.client_key);
    let channel = tls_channel(&endpoint, trust().identity(identity))
        .await
        .unwrap();
    assert!(first_commits(channel, None).await.unwrap() > 0);

    // Without a client certificate: the handshake or the first call fails.
    let refused = match tls_channel(&endpoint, trust()).await {
        Err(_) => true,
        Ok(channel) => first_commits(channel, None).await.is_err(),
    };
    assert!(refused, "a client without a certificate was served");

    // A certificate of another CA: refused likewise.
    let other = LocalPki::generate(&hosts, "intruder").unwrap();
    let identity = Identity::from_pem(&other.client_cert, &other.client_key);
    let refused = match tls_channel(&endpoint, trust().identity(identity)).await {
        Err(_) => true,
        Ok(channel) => first_commits(channel, None).await.is_err(),
    };
    assert!(refused, "a client of another CA was served");

    // Plaintext to a TLS port: no gRPC answer.
    let plain = format!("http://127.0.0.1:{}", validator.addr().port());
    let refused = match Endpoint::from_shared(plain).unwrap().connect().await {
        Err(_) => true,
        Ok(channel) => first_commits(channel, None).await.is_err(),
    };
    assert!(refused, "a plaintext client was served");
    validator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_certificate_of_another_ca_is_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let hosts = ["localhost".to_string()];
    let pki = LocalPki::generate(&hosts, "observer-1").unwrap();
    let (validator, endpoint) = tls_validator(dir.path(), &pki).await;
    let other = LocalPki::generate(&hosts, "observer-1").unwrap();
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&other.ca_cert))
        .identity(Identity::from_pem(&pki.client_cert, &pki.client_key));
    let refused = match tls_channel(&endpoint, tls).await {
        Err(_) => true,
        Ok(channel) => first_commits(channel, None).await.is_err(),
    };
    assert!(refused, "an untrusted server was accepted");
    validator.stop().await;
}

#[tokio::test]
async fn missing_or_bad_security_files_stop_the_publisher_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.pem");
    let empty_tokens = write(dir.path(), "tokens", "# nobody\n");
    let cases = [
        PublisherConfig {
            auth_tokens_path: Some(empty_tokens.clone()),
            ..PublisherConfig::default()
        },
        PublisherConfig {
            tls: Some(TlsConfig {
                cert_path: missing.clone(),
                key_path: missing.clone(),
                client_ca_path: None,
            }),
            ..PublisherConfig::default()
        },
    ];
    let chain =
        dagstream_test_utils::TestChain::in_memory(&dagstream_test_utils::TestCommittee::new(4, 1));
    let expected = [
        format!("{}: lists no token", empty_tokens.display()),
        format!("{}: cannot read the TLS certificate", missing.display()),
    ];
    for (config, expected) in cases.into_iter().zip(expected) {
        let err = dagstream_publisher::Publisher::start(
            chain.source().clone(),
            config,
            &prometheus::Registry::new(),
        )
        .err()
        .expect("refused");
        assert!(err.to_string().starts_with(&expected), "{err}");
    }
}
