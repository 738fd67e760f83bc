//! Terraform state between the session directory and object storage. The directory is the
//! sandbox's to write, so the node reads and writes there without following symlinks (a state
//! file swapped for a link to the node's secret key must not be read, or written through). A
//! state is never replaced by an older one of the same lineage, whichever side holds it, and
//! every saved version is kept in the object store's history.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use serde_json::Value;

/// The parts of a state file that order versions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    pub lineage: String,
    pub serial: u64,
}

impl Version {
    /// `None` for bytes that are not a terraform state (a fake's counter, a corrupt file).
    pub fn of(bytes: &[u8]) -> Option<Version> {
        let v: Value = serde_json::from_slice(bytes).ok()?;
        Some(Version {
            lineage: v.get("lineage")?.as_str()?.to_string(),
            serial: v.get("serial")?.as_u64()?,
        })
    }
}

/// Whether `candidate` may replace `current`: always, unless both are states of the same
/// lineage and `candidate` is older.
pub fn may_replace(current: &[u8], candidate: &[u8]) -> bool {
    match (Version::of(current), Version::of(candidate)) {
        (Some(cur), Some(new)) if cur.lineage == new.lineage => new.serial >= cur.serial,
        _ => true,
    }
}

/// Which copy a restore keeps.
#[derive(Debug, PartialEq, Eq)]
pub enum Restore {
    /// The stored state goes into the directory.
    Stored,
    /// The directory's state is newer (a save that never happened): keep it and store it.
    Local,
    /// Nothing to do (same bytes, or nothing stored).
    Nothing,
}

pub fn restore_choice(local: Option<&[u8]>, stored: Option<&[u8]>) -> Restore {
    match (local, stored) {
        (_, None) => Restore::Nothing,
        (Some(l), Some(s)) if l == s => Restore::Nothing,
        (Some(l), Some(s)) => match (Version::of(l), Version::of(s)) {
            (Some(lv), Some(sv)) if lv.lineage == sv.lineage && lv.serial > sv.serial => {
                Restore::Local
            }
            _ => Restore::Stored,
        },
        (None, Some(_)) => Restore::Stored,
    }
}

/// Reads `dir/name` if it is a regular file (not a symlink); `None` when missing.
pub fn read_file(dir: &Path, name: &str) -> std::io::Result<Option<Vec<u8>>> {
    let path = dir.join(name);
    match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&path)
    {
        Ok(mut f) => {
            if !f.metadata()?.is_file() {
                return Ok(None);
            }
            let mut bytes = Vec::new();
            // The sandbox limits file sizes; cap the read anyway.
            Read::by_ref(&mut f)
                .take(256 << 20)
                .read_to_end(&mut bytes)?;
            Ok(Some(bytes))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        // ELOOP: a symlink. Treated as absent; a write replaces it.
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes `dir/name` as a new regular file, replacing whatever is there (a symlink included)
/// without following it: written beside it and renamed over it.
pub fn write_file(dir: &Path, name: &str, bytes: &[u8], owner: Option<u32>) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.aurora-{}", uuid::Uuid::new_v4().simple()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    if let Some(uid) = owner {
        std::os::unix::fs::fchown(&f, Some(uid), Some(uid))?;
    }
    drop(f);
    std::fs::rename(&tmp, dir.join(name)).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(lineage: &str, serial: u64) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({"version": 4, "lineage": lineage, "serial": serial}))
            .unwrap()
    }

    #[test]
    fn newer_states_win_within_a_lineage() {
        assert!(may_replace(&state("a", 3), &state("a", 4)));
        assert!(!may_replace(&state("a", 4), &state("a", 3)));
        assert!(may_replace(&state("a", 4), &state("b", 1)));
        assert!(may_replace(b"garbage", &state("a", 1)));
        assert_eq!(
            restore_choice(Some(&state("a", 5)), Some(&state("a", 4))),
            Restore::Local
        );
        assert_eq!(
            restore_choice(Some(&state("a", 3)), Some(&state("a", 4))),
            Restore::Stored
        );
        assert_eq!(
            restore_choice(Some(&state("x", 9)), Some(&state("a", 4))),
            Restore::Stored
        );
        assert_eq!(restore_choice(None, Some(&state("a", 1))), Restore::Stored);
        assert_eq!(restore_choice(Some(&state("a", 1)), None), Restore::Nothing);
    }

    #[test]
    fn symlinks_are_neither_read_nor_followed() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "node secret").unwrap();
        let work = dir.path().join("work");
        std::fs::create_dir(&work).unwrap();
        std::os::unix::fs::symlink(&secret, work.join("terraform.tfstate")).unwrap();
        assert_eq!(read_file(&work, "terraform.tfstate").unwrap(), None);
        write_file(&work, "terraform.tfstate", b"{}", None).unwrap();
        assert_eq!(std::fs::read_to_string(&secret).unwrap(), "node secret");
        assert_eq!(
            read_file(&work, "terraform.tfstate").unwrap().as_deref(),
            Some(&b"{}"[..])
        );
    }
}
