//! TLS between nodes, both ways: every node presents a certificate signed by the cluster's CA
//! and accepts only peers that present one too, so a machine that merely reaches the cluster
//! port (or knows the cookie) cannot join, read or inject cluster traffic. ractor_cluster does
//! the encryption (its `Tls` incoming mode and `connect_enc`); this builds the rustls settings
//! from the PEM files named in the configuration.

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::ClusterError;

/// The PEM files of a node's cluster identity.
#[derive(Clone, Debug)]
pub struct TlsFiles<'a> {
    pub cert: &'a Path,
    pub key: &'a Path,
    pub ca: &'a Path,
}

/// What the listener accepts with and what the dialer connects with.
#[derive(Clone)]
pub struct ClusterTls {
    pub acceptor: TlsAcceptor,
    pub connector: TlsConnector,
}

fn tls_err(what: &str, e: impl std::fmt::Display) -> ClusterError {
    ClusterError::Tls(format!("{what}: {e}"))
}

impl ClusterTls {
    pub fn load(files: &TlsFiles<'_>) -> Result<ClusterTls, ClusterError> {
        // One provider named explicitly: the build links two, and rustls refuses to guess.
        let provider: Arc<CryptoProvider> = Arc::new(rustls::crypto::ring::default_provider());
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(files.cert)
            .map_err(|e| tls_err(&format!("cannot read {}", files.cert.display()), e))?
            .collect::<Result<_, _>>()
            .map_err(|e| tls_err(&format!("bad certificate in {}", files.cert.display()), e))?;
        if certs.is_empty() {
            return Err(tls_err(
                &files.cert.display().to_string(),
                "no certificate in the file",
            ));
        }
        let key = PrivateKeyDer::from_pem_file(files.key)
            .map_err(|e| tls_err(&format!("cannot read the key {}", files.key.display()), e))?;
        let mut roots = RootCertStore::empty();
        for ca in CertificateDer::pem_file_iter(files.ca)
            .map_err(|e| tls_err(&format!("cannot read {}", files.ca.display()), e))?
        {
            let ca = ca.map_err(|e| tls_err(&format!("bad CA in {}", files.ca.display()), e))?;
            roots
                .add(ca)
                .map_err(|e| tls_err(&format!("bad CA in {}", files.ca.display()), e))?;
        }
        if roots.is_empty() {
            return Err(tls_err(
                &files.ca.display().to_string(),
                "no CA certificate in the file",
            ));
        }
        let roots = Arc::new(roots);
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| tls_err("client verifier", e))?;
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_err("server settings", e))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs.clone(), key.clone_key())
            .map_err(|e| tls_err("the node's certificate and key", e))?;
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_err("client settings", e))?
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)
            .map_err(|e| tls_err("the node's certificate and key", e))?;
        Ok(ClusterTls {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            connector: TlsConnector::from(Arc::new(client)),
        })
    }
}

/// The name a peer's certificate must carry, from its `host:port` seed.
pub fn server_name(seed: &str) -> Result<ServerName<'static>, ClusterError> {
    let host = seed
        .rsplit_once(':')
        .map_or(seed, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']');
    ServerName::try_from(host.to_string()).map_err(|e| tls_err(&format!("seed {seed}"), e))
}
