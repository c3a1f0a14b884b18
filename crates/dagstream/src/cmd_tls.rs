//! `dagstream tls`: a throwaway CA, certificates and a token for local
//! testing; and the TLS and token flags of the node commands.

use anyhow::{bail, Context, Result};
use clap::Args;
use dagstream_observer::{ObserverConfig, UpstreamTls};
use dagstream_publisher::pki::LocalPki;
use dagstream_publisher::{PublisherConfig, TlsConfig};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Flags of a node that serves the streams (validator, relaying observer).
/// Each overrides its key of `[publisher]`.
#[derive(Args, Clone, Debug, Default)]
pub struct ServeSecurity {
    /// Serve over TLS with this PEM certificate chain (needs --tls-key).
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
    /// Require subscribers to present a certificate signed by this PEM CA
    /// (mutual TLS).
    #[arg(long)]
    pub tls_client_ca: Option<PathBuf>,
    /// Require subscribers to send one of the bearer tokens listed in this
    /// file, one per line.
    #[arg(long)]
    pub auth_tokens: Option<PathBuf>,
}

impl ServeSecurity {
    /// Sets what the flags give on `config`.
    pub fn apply(&self, config: &mut PublisherConfig) -> Result<()> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => {
                config.tls = Some(TlsConfig {
                    cert_path: cert.clone(),
                    key_path: key.clone(),
                    client_ca_path: self.tls_client_ca.clone(),
                });
            }
            (None, None) => {
                if let Some(ca) = &self.tls_client_ca {
                    match &mut config.tls {
                        Some(tls) => tls.client_ca_path = Some(ca.clone()),
                        None => bail!("--tls-client-ca needs --tls-cert and --tls-key"),
                    }
                }
            }
            _ => bail!("--tls-cert and --tls-key go together"),
        }
        if let Some(tokens) = &self.auth_tokens {
            config.auth_tokens_path = Some(tokens.clone());
        }
        Ok(())
    }
}

/// Flags of an observer towards its upstreams. Each overrides its key of
/// `[observer]`.
#[derive(Args, Clone, Debug, Default)]
pub struct UpstreamSecurity {
    /// Trust this PEM CA for https:// upstreams (default: the system's
    /// roots).
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
    /// Present this PEM certificate to upstreams that require mutual TLS
    /// (needs --tls-client-key).
    #[arg(long)]
    pub tls_client_cert: Option<PathBuf>,
    /// The PEM private key of --tls-client-cert.
    #[arg(long)]
    pub tls_client_key: Option<PathBuf>,
    /// Send the bearer token on this file's first line to upstreams.
    #[arg(long)]
    pub auth_token_file: Option<PathBuf>,
}

impl UpstreamSecurity {
    /// Sets what the flags give on `config`.
    pub fn apply(&self, config: &mut ObserverConfig) -> Result<()> {
        let tls: &mut UpstreamTls = &mut config.tls;
        if let Some(ca) = &self.tls_ca {
            tls.ca_path = Some(ca.clone());
        }
        match (&self.tls_client_cert, &self.tls_client_key) {
            (Some(cert), Some(key)) => {
                tls.client_cert_path = Some(cert.clone());
                tls.client_key_path = Some(key.clone());
            }
            (None, None) => {}
            _ => bail!("--tls-client-cert and --tls-client-key go together"),
        }
        if let Some(token) = &self.auth_token_file {
            config.auth_token_path = Some(token.clone());
        }
        Ok(())
    }
}

/// Writes `contents` to a new file `dir/name`, readable by the owner only
/// when `private`.
fn write_new(dir: &Path, name: &str, contents: &str, private: bool) -> Result<PathBuf> {
    let path = dir.join(name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&path).with_context(|| {
        format!(
            "cannot create {} (refusing to overwrite an existing file)",
            path.display()
        )
    })?;
    file.write_all(contents.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// A random bearer token: 32 bytes from the system's generator, in hex.
fn new_token() -> Result<String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| std::io::Read::read_exact(&mut random, &mut bytes))
        .context("cannot read /dev/urandom for a token")?;
    Ok(hex::encode(bytes))
}

pub fn run(out: &Path, hosts: &[String]) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let pki = LocalPki::generate(hosts, "dagstream observer")?;
    let token = new_token()?;
    let files = [
        ("ca.pem", pki.ca_cert.as_str(), false),
        ("ca.key", pki.ca_key.as_str(), true),
        ("server.pem", pki.server_cert.as_str(), false),
        ("server.key", pki.server_key.as_str(), true),
        ("client.pem", pki.client_cert.as_str(), false),
        ("client.key", pki.client_key.as_str(), true),
    ];
    for (name, contents, private) in files {
        write_new(out, name, contents, private)?;
    }
    write_new(out, "tokens", &format!("{token}\n"), true)?;
    write_new(out, "token", &format!("{token}\n"), true)?;
    println!(
        "wrote a local CA and certificates to {dir}: server.pem/server.key (for {hosts}), \
         client.pem/client.key, ca.pem; and a bearer token: tokens (for the publisher's \
         --auth-tokens) and token (for an observer's --auth-token-file). For testing only.",
        dir = out.display(),
        hosts = hosts.join(", ")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serve_flags_go_in_pairs() {
        let mut config = PublisherConfig::default();
        let half = ServeSecurity {
            tls_cert: Some("c.pem".into()),
            ..ServeSecurity::default()
        };
        assert!(half.apply(&mut config).is_err());
        let ca_alone = ServeSecurity {
            tls_client_ca: Some("ca.pem".into()),
            ..ServeSecurity::default()
        };
        assert!(ca_alone.apply(&mut config).is_err());
        let full = ServeSecurity {
            tls_cert: Some("c.pem".into()),
            tls_key: Some("k.pem".into()),
            tls_client_ca: Some("ca.pem".into()),
            auth_tokens: Some("tokens".into()),
        };
        full.apply(&mut config).unwrap();
        assert_eq!(
            config.tls,
            Some(TlsConfig {
                cert_path: "c.pem".into(),
                key_path: "k.pem".into(),
                client_ca_path: Some("ca.pem".into()),
            })
        );
        assert_eq!(config.auth_tokens_path, Some("tokens".into()));
    }

    #[test]
    fn upstream_flags_override_the_config() {
        let mut config = ObserverConfig::default();
        UpstreamSecurity {
            tls_ca: Some("ca.pem".into()),
            tls_client_cert: Some("c.pem".into()),
            tls_client_key: Some("k.pem".into()),
            auth_token_file: Some("token".into()),
        }
        .apply(&mut config)
        .unwrap();
        assert_eq!(config.tls.ca_path, Some("ca.pem".into()));
        assert_eq!(config.tls.client_key_path, Some("k.pem".into()));
        assert_eq!(config.auth_token_path, Some("token".into()));
        let half = UpstreamSecurity {
            tls_client_key: Some("k.pem".into()),
            ..UpstreamSecurity::default()
        };
        assert!(half.apply(&mut config).is_err());
    }
}
