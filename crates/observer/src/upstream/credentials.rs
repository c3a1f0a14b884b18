//! How this observer proves itself to its upstreams and checks them: TLS
//! for `https://` upstreams (trusting `ca_path`, or the system's roots),
//! a client certificate for mutual TLS, and a bearer token sent with every
//! request. Read once at start, so that a bad file stops the observer with
//! its name.

use crate::config::UpstreamTls;
use crate::{ObserverError, Result};
use std::path::Path;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Request, Status};

/// A channel to an upstream that adds this observer's token to every call.
pub type Upstream = InterceptedService<Channel, Credentials>;

/// What an observer presents to its upstreams. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    tls: Option<ClientTlsConfig>,
    /// `Bearer <token>`.
    authorization: Option<MetadataValue<Ascii>>,
}

fn unreadable(path: &Path, what: &str, err: impl std::fmt::Display) -> ObserverError {
    ObserverError::Credentials {
        path: path.to_path_buf(),
        reason: format!("cannot read the {what}: {err}"),
    }
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|err| unreadable(path, what, err))
}

impl Credentials {
    /// Reads the files `tls` and `token_path` name. Without them, upstreams
    /// are reached as their scheme says, with no token.
    pub fn load(tls: &UpstreamTls, token_path: Option<&Path>) -> Result<Credentials> {
        let mut config = ClientTlsConfig::new();
        config = match &tls.ca_path {
            Some(ca) => config.ca_certificate(Certificate::from_pem(read(ca, "CA certificate")?)),
            None => config.with_native_roots(),
        };
        match (&tls.client_cert_path, &tls.client_key_path) {
            (Some(cert), Some(key)) => {
                config = config.identity(Identity::from_pem(
                    read(cert, "client certificate")?,
                    read(key, "client key")?,
                ));
            }
            (None, None) => {}
            (Some(cert), None) | (None, Some(cert)) => {
                return Err(ObserverError::Credentials {
                    path: cert.clone(),
                    reason: "a client certificate needs both its certificate and its key".into(),
                });
            }
        }
        let authorization = match token_path {
            Some(path) => Some(Self::authorization(path)?),
            None => None,
        };
        Ok(Credentials {
            tls: Some(config),
            authorization,
        })
    }

    /// `Bearer <token>`, from the first line of the token file.
    fn authorization(path: &Path) -> Result<MetadataValue<Ascii>> {
        let bytes = read(path, "token file")?;
        let invalid = |reason: &str| ObserverError::Credentials {
            path: path.to_path_buf(),
            reason: reason.into(),
        };
        let text = String::from_utf8(bytes).map_err(|_| invalid("is not UTF-8 text"))?;
        let token = text.lines().next().unwrap_or("").trim();
        if token.is_empty() || token.chars().any(char::is_whitespace) {
            return Err(invalid("must hold one token on its first line"));
        }
        format!("Bearer {token}")
            .parse()
            .map_err(|_| invalid("the token has characters a header cannot carry"))
    }

    /// Whether a token is sent.
    pub fn has_token(&self) -> bool {
        self.authorization.is_some()
    }

    /// An endpoint for `address`, with TLS if its scheme is `https`.
    pub fn endpoint(&self, address: &str) -> Result<Endpoint, String> {
        let endpoint = Endpoint::from_shared(address.to_string())
            .map_err(|err| format!("bad upstream address {address}: {err}"))?;
        match (&self.tls, address.starts_with("https://")) {
            (Some(tls), true) => endpoint
                .tls_config(tls.clone())
                .map_err(|err| format!("TLS for {address}: {err}")),
            (None, true) => Err(format!("{address} needs TLS, which is not configured")),
            (_, false) => Ok(endpoint),
        }
    }

    /// `channel`, sending this observer's token with every call.
    pub fn wrap(&self, channel: Channel) -> Upstream {
        InterceptedService::new(channel, self.clone())
    }
}

impl Interceptor for Credentials {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(authorization) = &self.authorization {
            request
                .metadata_mut()
                .insert("authorization", authorization.clone());
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_the_first_line_and_goes_in_every_request() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cret\n").unwrap();
        let mut credentials = Credentials::load(&UpstreamTls::default(), Some(&path)).unwrap();
        let request = credentials.call(Request::new(())).unwrap();
        assert_eq!(
            request.metadata().get("authorization").unwrap(),
            "Bearer s3cret"
        );
    }

    #[test]
    fn bad_credential_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let err = Credentials::load(&UpstreamTls::default(), Some(&empty)).unwrap_err();
        assert!(matches!(&err, ObserverError::Credentials { path, .. } if path == &empty));
        let missing = dir.path().join("missing.pem");
        let tls = UpstreamTls {
            ca_path: Some(missing.clone()),
            ..UpstreamTls::default()
        };
        let err = Credentials::load(&tls, None).unwrap_err().to_string();
        assert!(
            err.contains("missing.pem") && err.contains("CA certificate"),
            "{err}"
        );
        let half = UpstreamTls {
            client_cert_path: Some(missing),
            ..UpstreamTls::default()
        };
        let err = Credentials::load(&half, None).unwrap_err().to_string();
        assert!(err.contains("both its certificate and its key"), "{err}");
    }

    #[test]
    fn only_https_upstreams_use_tls() {
        let credentials = Credentials::load(&UpstreamTls::default(), None).unwrap();
        assert!(credentials.endpoint("http://127.0.0.1:1").is_ok());
        assert!(credentials.endpoint("https://127.0.0.1:1").is_ok());
        assert!(credentials
            .endpoint("not a uri")
            .unwrap_err()
            .starts_with("bad upstream address"));
        let none = Credentials::default();
        assert!(none.endpoint("https://127.0.0.1:1").is_err());
    }
}
