//! A cluster CA made by the tests (rcgen): node certificates for 127.0.0.1 signed by it, and a
//! second, unrelated CA whose certificates the cluster must refuse.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};

/// A node identity on disk: its certificate, key, and the CA it trusts.
#[derive(Clone, Debug)]
pub struct Identity {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// Writes a fresh CA and one node certificate (for 127.0.0.1 and localhost) under `dir`, as
/// `<name>-ca.pem`, `<name>-node.pem`, `<name>-node.key`.
pub fn identity(dir: &Path, name: &str) -> Identity {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let node_key = KeyPair::generate().unwrap();
    let node_params =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    let node = node_params.signed_by(&node_key, &ca, &ca_key).unwrap();
    let id = Identity {
        cert: dir.join(format!("{name}-node.pem")),
        key: dir.join(format!("{name}-node.key")),
        ca: dir.join(format!("{name}-ca.pem")),
    };
    std::fs::write(&id.cert, node.pem()).unwrap();
    std::fs::write(&id.key, node_key.serialize_pem()).unwrap();
    std::fs::write(&id.ca, ca.pem()).unwrap();
    id
}
