use thiserror::Error;

#[derive(Debug, Error)]
pub enum ClusterError {
    #[error("cannot start the cluster listener on port {port}: {reason}")]
    Listen { port: u16, reason: String },
    #[error("cluster TLS: {0}")]
    Tls(String),
    #[error("cannot start the cluster gateway: {0}")]
    Gateway(String),
    #[error("node {0} is not a live member of the cluster")]
    NoSuchNode(String),
    #[error("node {node} did not answer within {ms} ms")]
    Timeout { node: String, ms: u64 },
    #[error("node {node} could not be asked: {reason}")]
    Call { node: String, reason: String },
    #[error("node {node} failed: {reason}")]
    Remote { node: String, reason: String },
}
