use std::io::ErrorKind;
use std::path::PathBuf;

use super::ObjectKey;
use crate::StorageError;

/// Objects as files under a root directory (the embedded default). Writes go to a temporary
/// file that is renamed into place, so a crash never leaves a half-written object.
#[derive(Clone, Debug)]
pub struct LocalStore {
    root: PathBuf,
}

fn io(what: &str, key: &ObjectKey, e: std::io::Error) -> StorageError {
    StorageError::Internal(format!("cannot {what} object {key}: {e}"))
}

impl LocalStore {
    pub fn new(root: impl Into<PathBuf>) -> LocalStore {
        LocalStore { root: root.into() }
    }

    fn path(&self, key: &ObjectKey) -> PathBuf {
        // ObjectKey guarantees relative, `..`-free segments: the join stays under the root.
        self.root.join(key.as_str())
    }

    pub async fn put(&self, key: &ObjectKey, bytes: Vec<u8>) -> Result<(), StorageError> {
        let path = self.path(key);
        let dir = path.parent().expect("a key has a parent directory");
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| io("write", key, e))?;
        let tmp = dir.join(format!(".{}.tmp", uuid::Uuid::new_v4()));
        if let Err(e) = tokio::fs::write(&tmp, &bytes).await {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(io("write", key, e));
        }
        tokio::fs::rename(&tmp, &path)
            .await
            .map_err(|e| io("write", key, e))
    }

    pub async fn get(&self, key: &ObjectKey) -> Result<Option<Vec<u8>>, StorageError> {
        match tokio::fs::read(self.path(key)).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("read", key, e)),
        }
    }

    pub async fn delete(&self, key: &ObjectKey) -> Result<(), StorageError> {
        match tokio::fs::remove_file(self.path(key)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("delete", key, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn put_get_replace_delete() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        let key = ObjectKey::new(uuid::Uuid::nil(), uuid::Uuid::nil(), "a/b.txt").unwrap();
        assert_eq!(store.get(&key).await.unwrap(), None);
        store.put(&key, b"one".to_vec()).await.unwrap();
        store.put(&key, b"two".to_vec()).await.unwrap();
        assert_eq!(store.get(&key).await.unwrap().as_deref(), Some(&b"two"[..]));
        store.delete(&key).await.unwrap();
        store.delete(&key).await.unwrap();
        assert_eq!(store.get(&key).await.unwrap(), None);
        // Nothing but the object's directories is left behind.
        let leftovers: Vec<_> = walk(dir.path());
        assert!(leftovers.iter().all(|p| p.is_dir()), "{leftovers:?}");
    }

    fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                out.extend(walk(&p));
            }
            out.push(p);
        }
        out
    }
}
