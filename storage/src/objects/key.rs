use std::fmt;

use uuid::Uuid;

use crate::StorageError;

/// An object's key: `orgs/<org>/users/<user>/<path>`. The path is relative and checked segment
/// by segment, so no key can reach outside its org and user prefix (`..`, absolute paths,
/// NUL and backslashes are refused).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ObjectKey(String);

/// Longest accepted key path, well under S3's 1024-byte key limit.
const MAX_PATH: usize = 512;

impl ObjectKey {
    pub fn new(org_id: Uuid, user_id: Uuid, path: &str) -> Result<ObjectKey, StorageError> {
        let bad = |why: &str| StorageError::invalid("key", format!("{why}: {path:?}"));
        if path.is_empty() || path.len() > MAX_PATH {
            return Err(bad("a key path needs 1 to 512 bytes"));
        }
        if path.starts_with('/') {
            return Err(bad("a key path must be relative"));
        }
        if path.contains('\0') || path.contains('\\') {
            return Err(bad("a key path may not contain NUL or backslashes"));
        }
        for segment in path.split('/') {
            if segment.is_empty() || segment == "." || segment == ".." {
                return Err(bad("a key path may not have empty, '.' or '..' segments"));
            }
            if segment.chars().any(char::is_control) {
                return Err(bad("a key path may not contain control characters"));
            }
        }
        Ok(ObjectKey(format!("orgs/{org_id}/users/{user_id}/{path}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_stay_inside_their_prefix() {
        let (org, user) = (Uuid::nil(), Uuid::max());
        let ok = ObjectKey::new(org, user, "terraform/s1/terraform.tfstate").unwrap();
        assert_eq!(
            ok.as_str(),
            format!("orgs/{org}/users/{user}/terraform/s1/terraform.tfstate")
        );
        for bad in [
            "",
            "/etc/passwd",
            "../other",
            "a/../../b",
            "a//b",
            "a/./b",
            "a\0b",
            "a\\..\\b",
            "a/\nb",
        ] {
            assert!(ObjectKey::new(org, user, bad).is_err(), "{bad:?}");
        }
        assert!(ObjectKey::new(org, user, &"x".repeat(513)).is_err());
    }
}
