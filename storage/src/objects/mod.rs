//! Object storage: files that belong to an org's user (uploaded documents, terraform state)
//! kept outside the relational store, so any node can reach them. One backend per deployment:
//! a local directory on the embedded default. Keys are built only through [`ObjectKey`], which
//! confines every key to its org and user prefix.

mod key;
mod local;

pub use key::ObjectKey;
pub use local::LocalStore;

use crate::StorageError;

/// Where a node keeps objects.
#[derive(Clone, Debug)]
pub enum ObjectStore {
    Local(LocalStore),
}

impl ObjectStore {
    /// A store in a local directory (created on first write).
    pub fn local(root: impl Into<std::path::PathBuf>) -> ObjectStore {
        ObjectStore::Local(LocalStore::new(root))
    }

    /// Stores `bytes` under `key`, replacing what was there; readers see the old or the new
    /// object, never a partial one.
    pub async fn put(&self, key: &ObjectKey, bytes: Vec<u8>) -> Result<(), StorageError> {
        match self {
            ObjectStore::Local(s) => s.put(key, bytes).await,
        }
    }

    /// The object, or `None` when there is none.
    pub async fn get(&self, key: &ObjectKey) -> Result<Option<Vec<u8>>, StorageError> {
        match self {
            ObjectStore::Local(s) => s.get(key).await,
        }
    }

    /// Removes the object; removing one that does not exist is not an error.
    pub async fn delete(&self, key: &ObjectKey) -> Result<(), StorageError> {
        match self {
            ObjectStore::Local(s) => s.delete(key).await,
        }
    }
}
