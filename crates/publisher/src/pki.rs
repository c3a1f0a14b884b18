//! A throwaway certificate authority for local testing: a CA, a server
//! certificate for the publisher and a client certificate for mutual TLS,
//! all ECDSA P-256, as `dagstream tls` writes them. Production deployments
//! bring certificates from their own CA.

use crate::error::{PublisherError, Result};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};

/// PEM certificates and keys of a local PKI.
#[derive(Clone, Debug)]
pub struct LocalPki {
    pub ca_cert: String,
    pub ca_key: String,
    pub server_cert: String,
    pub server_key: String,
    pub client_cert: String,
    pub client_key: String,
}

fn failed(err: rcgen::Error) -> PublisherError {
    PublisherError::Pki {
        reason: err.to_string(),
    }
}

fn named(name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn
}

impl LocalPki {
    /// A new CA, and certificates it signs: the server's valid for `hosts`
    /// (DNS names or IP addresses, e.g. `localhost`, `127.0.0.1`), the
    /// client's named `client_name`.
    pub fn generate(hosts: &[String], client_name: &str) -> Result<LocalPki> {
        let ca_key = KeyPair::generate().map_err(failed)?;
        let mut ca_params = CertificateParams::default();
        ca_params.distinguished_name = named("dagstream local CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_key_pem = ca_key.serialize_pem();
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key).map_err(failed)?;

        let leaf = |names: Vec<String>, common_name: &str, usage: ExtendedKeyUsagePurpose| {
            let key = KeyPair::generate().map_err(failed)?;
            let mut params = CertificateParams::new(names).map_err(failed)?;
            params.distinguished_name = named(common_name);
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            params.extended_key_usages = vec![usage];
            let cert = params.signed_by(&key, &ca).map_err(failed)?;
            Ok::<_, PublisherError>((cert.pem(), key.serialize_pem()))
        };
        let (server_cert, server_key) = leaf(
            hosts.to_vec(),
            "dagstream publisher",
            ExtendedKeyUsagePurpose::ServerAuth,
        )?;
        let (client_cert, client_key) = leaf(
            vec![client_name.to_string()],
            client_name,
            ExtendedKeyUsagePurpose::ClientAuth,
        )?;
        Ok(LocalPki {
            ca_cert: ca.pem(),
            ca_key: ca_key_pem,
            server_cert,
            server_key,
            client_cert,
            client_key,
        })
    }
}
