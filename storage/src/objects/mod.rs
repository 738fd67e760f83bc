//! Object storage: files that belong to an org's user (uploaded documents, terraform state)
//! kept outside the relational store. One backend per deployment: S3 (any S3-compatible
//! endpoint; every node of a cluster sees the same objects) or a local directory (the embedded
//! default). Keys are built only through [`ObjectKey`], which
//! confines every key to its org and user prefix.

mod key;
mod local;
mod s3;

pub use key::ObjectKey;
pub use local::LocalStore;
pub use s3::{S3Settings, S3Store};

use crate::StorageError;

/// Where a node keeps objects.
#[derive(Clone, Debug)]
pub enum ObjectStore {
    Local(LocalStore),
    S3(S3Store),
}

impl ObjectStore {
    /// A store in a local directory (created on first write).
    pub fn local(root: impl Into<std::path::PathBuf>) -> ObjectStore {
        ObjectStore::Local(LocalStore::new(root))
    }

    /// The bucket `settings` name, created if missing.
    pub async fn s3(settings: &S3Settings) -> Result<ObjectStore, StorageError> {
        Ok(ObjectStore::S3(S3Store::open(settings).await?))
    }

    /// Stores `bytes` under `key`, replacing what was there; readers see the old or the new
    /// object, never a partial one.
    pub async fn put(&self, key: &ObjectKey, bytes: Vec<u8>) -> Result<(), StorageError> {
        match self {
            ObjectStore::Local(s) => s.put(key, bytes).await,
            ObjectStore::S3(s) => s.put(key, bytes).await,
        }
    }

    /// The object, or `None` when there is none.
    pub async fn get(&self, key: &ObjectKey) -> Result<Option<Vec<u8>>, StorageError> {
        match self {
            ObjectStore::Local(s) => s.get(key).await,
            ObjectStore::S3(s) => s.get(key).await,
        }
    }

    /// Removes the object; removing one that does not exist is not an error.
    pub async fn delete(&self, key: &ObjectKey) -> Result<(), StorageError> {
        match self {
            ObjectStore::Local(s) => s.delete(key).await,
            ObjectStore::S3(s) => s.delete(key).await,
        }
    }
}
