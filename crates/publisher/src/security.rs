//! Who may subscribe: TLS, optionally mutual, on the listener, and bearer
//! tokens, checked before a request reaches anything else.
//!
//! The token file lists the allowed tokens, one per line. Only their BLAKE3
//! digests are kept in memory, and a token or a client certificate appears
//! in logs and metrics only as its [`fingerprint`]. A request without a
//! known token is refused with `UNAUTHENTICATED` before it takes a stream
//! slot or reads the source. The trust model is in `docs/security.md`.

use crate::error::{PublisherError, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tonic::metadata::MetadataMap;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use tonic::Status;

/// TLS on the publisher's listener (`[publisher.tls]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The PEM certificate chain the publisher presents.
    pub cert_path: PathBuf,
    /// The PEM private key of that certificate.
    pub key_path: PathBuf,
    /// PEM CA certificates. When set, every subscriber must present a
    /// certificate signed by one of them (mutual TLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca_path: Option<PathBuf>,
}

/// A connection that has not finished its TLS handshake within this time is
/// closed, so that connections which never finish one cannot pile up. Ten
/// seconds are many round trips of a slow link.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Most tokens a token file may list: bounds what the file makes the
/// publisher hold (32 bytes each) and parse at start.
pub const MAX_TOKENS: usize = 100_000;

/// Longest token accepted, in bytes, in the file or in a request: a token
/// is a secret of some dozens of bytes, and a request's metadata must not
/// make the publisher hash megabytes.
pub const MAX_TOKEN_BYTES: usize = 1_024;

/// The first 8 hex digits of the BLAKE3 digest of `secret`: enough to tell
/// subscribers apart in logs and metrics, too little to help guess it.
pub fn fingerprint(secret: &[u8]) -> String {
    blake3::hash(secret).to_hex()[..8].to_string()
}

fn read(path: &Path, what: &'static str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|err| PublisherError::Security {
        path: path.to_path_buf(),
        reason: format!("cannot read the {what}: {err}"),
    })
}

/// The listener's TLS settings, read from the files `config` names.
pub(crate) fn server_tls(config: &TlsConfig) -> Result<ServerTlsConfig> {
    let cert = read(&config.cert_path, "TLS certificate")?;
    let key = read(&config.key_path, "TLS private key")?;
    let mut tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(cert, key))
        .timeout(TLS_HANDSHAKE_TIMEOUT);
    if let Some(ca) = &config.client_ca_path {
        tls = tls.client_ca_root(Certificate::from_pem(read(ca, "client CA certificate")?));
    }
    Ok(tls)
}

/// The allowed bearer tokens, as BLAKE3 digests.
#[derive(Clone)]
pub struct Tokens {
    digests: HashSet<[u8; 32]>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokens({} allowed)", self.digests.len())
    }
}

impl Tokens {
    /// Reads a token file: one token per line; blank lines and lines
    /// starting with `#` are skipped, and spaces around a token ignored.
    pub fn load(path: &Path) -> Result<Tokens> {
        let bytes = read(path, "token file")?;
        let invalid = |reason: String| PublisherError::Security {
            path: path.to_path_buf(),
            reason,
        };
        let text = String::from_utf8(bytes).map_err(|_| invalid("is not UTF-8 text".into()))?;
        Tokens::parse(&text).map_err(invalid)
    }

    /// Parses the text of a token file (see [`Tokens::load`]).
    pub fn parse(text: &str) -> std::result::Result<Tokens, String> {
        let mut digests = HashSet::new();
        for (number, line) in text.lines().enumerate() {
            let token = line.trim();
            if token.is_empty() || token.starts_with('#') {
                continue;
            }
            if token.len() > MAX_TOKEN_BYTES {
                return Err(format!(
                    "line {}: a token of {} bytes is over the limit of {MAX_TOKEN_BYTES}",
                    number + 1,
                    token.len()
                ));
            }
            if token.chars().any(char::is_whitespace) {
                return Err(format!("line {}: a token has no spaces", number + 1));
            }
            digests.insert(*blake3::hash(token.as_bytes()).as_bytes());
            if digests.len() > MAX_TOKENS {
                return Err(format!("lists over {MAX_TOKENS} tokens"));
            }
        }
        if digests.is_empty() {
            // An empty list would refuse everyone: surely a mistake.
            return Err("lists no token".into());
        }
        Ok(Tokens { digests })
    }

    /// Checks a request's `authorization: Bearer <token>`, and returns the
    /// token's fingerprint, or the `UNAUTHENTICATED` status to answer.
    pub fn check(&self, metadata: &MetadataMap) -> std::result::Result<String, Status> {
        let Some(value) = metadata.get("authorization") else {
            return Err(Status::unauthenticated(
                "a bearer token is required (authorization: Bearer <token>)",
            ));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= MAX_TOKEN_BYTES)
            .ok_or_else(|| {
                Status::unauthenticated("the authorization metadata is not \"Bearer <token>\"")
            })?;
        if self
            .digests
            .contains(blake3::hash(token.as_bytes()).as_bytes())
        {
            Ok(fingerprint(token.as_bytes()))
        } else {
            Err(Status::unauthenticated(format!(
                "unknown token {}",
                fingerprint(token.as_bytes())
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::metadata::MetadataValue;

    fn with_auth(value: &str) -> MetadataMap {
        let mut metadata = MetadataMap::new();
        metadata.insert("authorization", MetadataValue::try_from(value).unwrap());
        metadata
    }

    #[test]
    fn a_token_file_skips_comments_and_blank_lines() {
        let tokens = Tokens::parse("# observers\n\n  alpha  \nbeta\n").unwrap();
        assert_eq!(tokens.digests.len(), 2);
        assert_eq!(
            tokens.check(&with_auth("Bearer alpha")).unwrap(),
            fingerprint(b"alpha")
        );
        assert!(tokens.check(&with_auth("Bearer beta")).is_ok());
    }

    #[test]
    fn bad_token_files_are_refused_with_the_reason() {
        assert_eq!(Tokens::parse("# none\n\n").unwrap_err(), "lists no token");
        assert_eq!(
            Tokens::parse("good\ntwo words\n").unwrap_err(),
            "line 2: a token has no spaces"
        );
        let long = "x".repeat(MAX_TOKEN_BYTES + 1);
        assert!(Tokens::parse(&long)
            .unwrap_err()
            .starts_with("line 1: a token of 1025 bytes"));
    }

    #[test]
    fn requests_without_a_known_token_are_unauthenticated() {
        let tokens = Tokens::parse("alpha\n").unwrap();
        let refused = |metadata: &MetadataMap| {
            let status = tokens.check(metadata).unwrap_err();
            assert_eq!(status.code(), tonic::Code::Unauthenticated);
            status.message().to_string()
        };
        assert!(refused(&MetadataMap::new()).starts_with("a bearer token is required"));
        assert!(refused(&with_auth("Basic alpha")).contains("not \"Bearer <token>\""));
        assert!(refused(&with_auth("Bearer ")).contains("not \"Bearer <token>\""));
        assert_eq!(
            refused(&with_auth("Bearer gamma")),
            format!("unknown token {}", fingerprint(b"gamma"))
        );
        let long = format!("Bearer {}", "x".repeat(MAX_TOKEN_BYTES + 1));
        assert!(refused(&with_auth(&long)).contains("not \"Bearer <token>\""));
    }

    #[test]
    fn a_fingerprint_is_short_and_stable() {
        assert_eq!(fingerprint(b"alpha"), fingerprint(b"alpha"));
        assert_eq!(fingerprint(b"alpha").len(), 8);
        assert_ne!(fingerprint(b"alpha"), fingerprint(b"beta"));
    }
}
