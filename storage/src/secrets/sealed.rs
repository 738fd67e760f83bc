//! The embedded secret store: every secret of the node in one file under the data directory,
//! sealed with XChaCha20-Poly1305 (authenticated: a wrong key or a changed byte is refused,
//! never decrypted into garbage).
//!
//! File layout: `AURSEAL1` (8 bytes) | salt (16) | nonce (24) | ciphertext with its tag. Each
//! write draws a new salt and nonce; the key is HKDF-SHA256 of the node's `SECRET_KEY` with that
//! salt, so the file's key is never the configured key itself. The header is authenticated as
//! associated data. Writes go to a temporary file (mode 0600) that is synced and then renamed
//! over the old one, so a crash leaves either the old file or the new one, never a torn one.
//!
//! The file is one node's: a cluster shares secrets through Vault instead.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::{SecretData, SecretPath, SecretsError};

const MAGIC: &[u8; 8] = b"AURSEAL1";
const SALT_LEN: usize = 16;
const NONCE_LEN: usize = 24;
const HEADER_LEN: usize = MAGIC.len() + SALT_LEN + NONCE_LEN;
/// HKDF's `info`: binds derived keys to this use, so the same `SECRET_KEY` signing tickets
/// elsewhere never yields this key.
const INFO: &[u8] = b"aurora sealed secrets v1";
/// Shortest key accepted (`SECRET_KEY` must be 32 characters; the generated one is 64).
const MIN_KEY_LEN: usize = 16;

/// What the sealed file holds once opened.
#[derive(Default, Serialize, Deserialize)]
struct Contents {
    secrets: BTreeMap<String, SecretData>,
}

/// The sealed secrets file of this node.
#[derive(Clone)]
pub struct SealedFile {
    path: Arc<PathBuf>,
    key: Arc<Zeroizing<Vec<u8>>>,
    /// Writes are read-modify-write of the whole file: one at a time in this process.
    writing: Arc<tokio::sync::Mutex<()>>,
}

impl fmt::Debug for SealedFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedFile")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SealedFile {
    /// The sealed file at `path`, sealed with `key` (the node's `SECRET_KEY`). An existing file
    /// must open with this key, so a node given the wrong key stops at start-up with a clear
    /// error instead of failing every credential later. A missing file is created on the
    /// first write.
    pub async fn open(path: PathBuf, key: &[u8]) -> Result<SealedFile, SecretsError> {
        if key.len() < MIN_KEY_LEN {
            return Err(SecretsError::Sealed(format!(
                "the key for {} is shorter than {MIN_KEY_LEN} bytes",
                path.display()
            )));
        }
        let file = SealedFile {
            path: Arc::new(path),
            key: Arc::new(Zeroizing::new(key.to_vec())),
            writing: Arc::new(tokio::sync::Mutex::new(())),
        };
        file.load().await?;
        Ok(file)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub async fn get(&self, path: &SecretPath) -> Result<Option<SecretData>, SecretsError> {
        Ok(self.load().await?.secrets.remove(path.as_str()))
    }

    pub async fn put(&self, path: &SecretPath, data: &SecretData) -> Result<(), SecretsError> {
        let _one_writer = self.writing.lock().await;
        let mut contents = self.load().await?;
        contents
            .secrets
            .insert(path.as_str().to_string(), data.clone());
        self.store(contents).await
    }

    pub async fn delete(&self, path: &SecretPath) -> Result<(), SecretsError> {
        let _one_writer = self.writing.lock().await;
        let mut contents = self.load().await?;
        if contents.secrets.remove(path.as_str()).is_none() {
            return Ok(());
        }
        self.store(contents).await
    }

    /// The file opens with the key (or does not exist yet).
    pub async fn health(&self) -> Result<(), SecretsError> {
        self.load().await.map(|_| ())
    }

    /// Reads and opens the file on the blocking pool.
    async fn load(&self) -> Result<Contents, SecretsError> {
        let (path, key) = (self.path.clone(), self.key.clone());
        tokio::task::spawn_blocking(move || load(&path, &key))
            .await
            .map_err(|e| SecretsError::Io(format!("sealed file reader failed: {e}")))?
    }

    /// Seals and writes the file on the blocking pool.
    async fn store(&self, contents: Contents) -> Result<(), SecretsError> {
        let (path, key) = (self.path.clone(), self.key.clone());
        tokio::task::spawn_blocking(move || store(&path, &key, &contents))
            .await
            .map_err(|e| SecretsError::Io(format!("sealed file writer failed: {e}")))?
    }
}

fn cipher(key: &[u8], salt: &[u8]) -> XChaCha20Poly1305 {
    let mut okm = Zeroizing::new([0u8; 32]);
    Hkdf::<Sha256>::new(Some(salt), key)
        .expand(INFO, okm.as_mut())
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    XChaCha20Poly1305::new(chacha20poly1305::Key::from_slice(okm.as_slice()))
}

/// `plaintext` sealed into the file format, with a fresh salt and nonce.
fn seal(key: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, SecretsError> {
    let mut header = [0u8; HEADER_LEN];
    header[..MAGIC.len()].copy_from_slice(MAGIC);
    rand::rngs::OsRng.fill_bytes(&mut header[MAGIC.len()..]);
    let (salt, nonce) = header[MAGIC.len()..].split_at(SALT_LEN);
    let sealed = cipher(key, salt)
        .encrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: plaintext,
                aad: &header[..MAGIC.len() + SALT_LEN],
            },
        )
        .map_err(|_| SecretsError::Sealed("cannot seal the secrets file".into()))?;
    let mut out = Vec::with_capacity(HEADER_LEN + sealed.len());
    out.extend_from_slice(&header);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// The plaintext of a sealed file's bytes; a wrong key and a changed byte fail the same way
/// (the tag does not verify), and nothing is returned.
fn unseal(path: &Path, key: &[u8], bytes: &[u8]) -> Result<Zeroizing<Vec<u8>>, SecretsError> {
    if bytes.len() < HEADER_LEN || &bytes[..MAGIC.len()] != MAGIC {
        return Err(SecretsError::Sealed(format!(
            "{} is not a sealed secrets file (bad header)",
            path.display()
        )));
    }
    let salt = &bytes[MAGIC.len()..MAGIC.len() + SALT_LEN];
    let nonce = &bytes[MAGIC.len() + SALT_LEN..HEADER_LEN];
    cipher(key, salt)
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: &bytes[HEADER_LEN..],
                aad: &bytes[..MAGIC.len() + SALT_LEN],
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| {
            SecretsError::Sealed(format!(
                "cannot open {}: SECRET_KEY is not the key it was sealed with, or the file was altered",
                path.display()
            ))
        })
}

fn load(path: &Path, key: &[u8]) -> Result<Contents, SecretsError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Contents::default()),
        Err(e) => {
            return Err(SecretsError::Io(format!(
                "cannot read {}: {e}",
                path.display()
            )))
        }
    };
    let plain = unseal(path, key, &bytes)?;
    // serde's message could quote part of the plaintext: say only what is wrong.
    serde_json::from_slice(&plain).map_err(|_| {
        SecretsError::Malformed(format!(
            "{} opened, but does not hold secrets in the expected form",
            path.display()
        ))
    })
}

/// Writes `contents` sealed: a temporary file in the same directory (mode 0600), synced, then
/// renamed over the old file, and the directory synced so the rename itself is durable.
fn store(path: &Path, key: &[u8], contents: &Contents) -> Result<(), SecretsError> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |what: &str, e: std::io::Error| {
        SecretsError::Io(format!("cannot {what} {}: {e}", path.display()))
    };
    let plain = Zeroizing::new(
        serde_json::to_vec(contents)
            .map_err(|e| SecretsError::Malformed(format!("cannot encode secrets: {e}")))?,
    );
    let sealed = seal(key, &plain)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| io("create the directory of", e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{:016x}.tmp", rand::random::<u64>()));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(&sealed)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io("write", e));
    }
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_byte_or_another_key_is_refused() {
        let key = b"0123456789abcdef0123456789abcdef";
        let sealed = seal(key, b"{\"secrets\":{}}").unwrap();
        let path = Path::new("secrets.sealed");
        assert_eq!(
            &unseal(path, key, &sealed).unwrap()[..],
            b"{\"secrets\":{}}"
        );
        for i in [
            0,
            MAGIC.len(),
            MAGIC.len() + SALT_LEN,
            HEADER_LEN,
            sealed.len() - 1,
        ] {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert!(unseal(path, key, &bad).is_err(), "byte {i}");
        }
        let err = unseal(path, b"another key, also 32 bytes long!", &sealed).unwrap_err();
        assert!(err.to_string().contains("SECRET_KEY"), "{err}");
        assert!(unseal(path, key, &sealed[..HEADER_LEN - 1]).is_err());
    }

    #[test]
    fn each_seal_draws_a_new_salt_and_nonce() {
        let key = b"0123456789abcdef0123456789abcdef";
        assert_ne!(seal(key, b"same").unwrap(), seal(key, b"same").unwrap());
    }
}
