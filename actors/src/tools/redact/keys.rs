//! Which names (JSON and YAML keys, flags, environment variables, `name:` fields) hold secrets,
//! and which values are only placeholders that need no masking.
//!
//! Names are compared normalised (lowercase ASCII letters and digits only), so `client_secret`,
//! `clientSecret`, `--client-secret` and `CLIENT-SECRET` are one name.

use super::MASK;

/// Parts of a normalised name that make it secret wherever they appear in it.
const SECRET_WORDS: &[&str] = &[
    "secret",
    "passw",
    "passphrase",
    "pwd",
    "token",
    "apikey",
    "accesskey",
    "privatekey",
    "clientkey",
    "accountkey",
    "signingkey",
    "encryptionkey",
    "masterkey",
    "sshkey",
    "tlskey",
    "credential",
    "connectionstring",
    "clientcertificatedata",
    "bearer",
    "cookie",
];

/// Whole names that are secret but too short or too common to look for inside other names.
const SECRET_NAMES: &[&str] = &["auth", "pass", "sig", "signature", "xamzsignature"];

/// Endings that make a name describe a secret (its name, id, file, lifetime...) rather than hold
/// it: `secretName`, `--secret-id`, `token_uri`, `passwordFile`, `tokenTTL`. Plurals name lists
/// (`Mountable secrets:`, `total_tokens`) rather than values.
const DESCRIPTIVE_ENDINGS: &[&str] = &[
    "name",
    "names",
    "id",
    "ids",
    "ref",
    "arn",
    "type",
    "uri",
    "url",
    "path",
    "file",
    "dir",
    "stdin",
    "env",
    "secrets",
    "tokens",
    "cookies",
    "ttl",
    "expiry",
    "expiration",
    "expires",
    "expiresat",
    "expireson",
    "expiresin",
    "lifetime",
    "duration",
    "length",
    "count",
    "enabled",
    "required",
    "policy",
    "version",
    "versions",
    "stages",
    "date",
    "time",
    "timestamp",
    "createdat",
    "updatedat",
    "process",
    "source",
    "helper",
    "mode",
    "format",
    "endpoint",
    "hint",
    "status",
    "prompt",
];

/// Names that contain a secret word but hold no secret: pagination and idempotency tokens the
/// agent needs to read the next page, and the shell's working directory.
const NOT_SECRET_NAMES: &[&str] = &[
    "nexttoken",
    "nextpagetoken",
    "pagetoken",
    "startingtoken",
    "paginationtoken",
    "continuationtoken",
    "nextcontinuationtoken",
    "clienttoken",
    "clientrequesttoken",
    "idempotencytoken",
    "pwd",
    "oldpwd",
];

/// Whether a value stored under `name` is a secret.
pub(super) fn is_secret_key(name: &str) -> bool {
    let norm: String = name
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    // An access key id is only half a credential, but it names the account: masked too.
    if norm.ends_with("accesskeyid") {
        return true;
    }
    if NOT_SECRET_NAMES.contains(&norm.as_str())
        || DESCRIPTIVE_ENDINGS.iter().any(|end| norm.ends_with(end))
    {
        return false;
    }
    SECRET_NAMES.contains(&norm.as_str()) || SECRET_WORDS.iter().any(|word| norm.contains(word))
}

/// Whether a flag is a switch that takes no value (`--no-password`, `--skip-password`), so the
/// word after it is not its value.
pub(super) fn is_switch(flag: &str) -> bool {
    let flag = flag.trim_start_matches('-').to_ascii_lowercase();
    [
        "no-", "skip-", "without-", "disable-", "enable-", "use-", "ask-",
    ]
    .iter()
    .any(|prefix| flag.starts_with(prefix))
}

/// Whether `value`, found under a secret name, is no secret: empty, a boolean or null, a
/// reference (`$DB_PASSWORD`, `{{ .Values.password }}`), the opening of a nested block, an
/// already masked value, or what `kubectl describe` and `terraform` print instead of the value.
pub(super) fn is_placeholder(value: &str) -> bool {
    let v = value.trim();
    let v = v
        .strip_prefix('"')
        .map(|v| v.strip_suffix('"').unwrap_or(v))
        .or_else(|| {
            v.strip_prefix('\'')
                .map(|v| v.strip_suffix('\'').unwrap_or(v))
        })
        .unwrap_or(v)
        .trim();
    let lower = v.to_ascii_lowercase();
    v.is_empty()
        || matches!(
            lower.as_str(),
            "null"
                | "nil"
                | "none"
                | "~"
                | "true"
                | "false"
                | "yes"
                | "no"
                | "<none>"
                | "<unset>"
                | "<nil>"
                | "{"
                | "["
                | "{}"
                | "[]"
                | "(sensitive value)"
                | "(sensitive)"
        )
        || v.starts_with(MASK)
        || v.starts_with("<set to the key ")
        || v.starts_with("{{")
        || v.starts_with("${")
        || v.starts_with("$(")
        || is_env_reference(v)
        || is_block_indicator(v)
        || v.chars().all(|c| c == '*')
        || is_byte_count(v)
}

/// Whether `value` opens a YAML block scalar (`|`, `>-`, `|+2`), whose text is on the next lines.
pub(super) fn is_block_indicator(value: &str) -> bool {
    let value = value.split(" #").next().unwrap_or(value).trim();
    let mut chars = value.chars();
    matches!(chars.next(), Some('|' | '>')) && chars.all(|c| matches!(c, '-' | '+' | '0'..='9'))
}

/// `$NAME`: a shell variable, not its value.
fn is_env_reference(value: &str) -> bool {
    value.strip_prefix('$').is_some_and(|name| {
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    })
}

/// `12 bytes`: the size `kubectl describe secret` shows instead of the value.
fn is_byte_count(value: &str) -> bool {
    value
        .strip_suffix(" bytes")
        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names_in_every_spelling() {
        for name in [
            "password",
            "DB_PASSWORD",
            "SecretString",
            "SecretAccessKey",
            "AccessKeyId",
            "aws_access_key_id",
            "SessionToken",
            "client_secret",
            "private_key",
            "privateKeyData",
            "accessToken",
            "client-key-data",
            "client-certificate-data",
            "--docker-password",
            "connectionString",
            "AccountKey",
            "MYSQL_PWD",
            "auth",
            "sig",
            "X-Amz-Signature",
            "X-API-Key",
            "users.admin.token",
        ] {
            assert!(is_secret_key(name), "{name} should be secret");
        }
    }

    #[test]
    fn names_that_only_describe_secrets() {
        for name in [
            "Name",
            "secretName",
            "SecretId",
            "--secret-id",
            "secretKeyRef",
            "tokenType",
            "token_uri",
            "passwordFile",
            "--password-stdin",
            "token_ttl",
            "total_tokens",
            "Mountable secrets",
            "NextToken",
            "nextPageToken",
            "private_key_id",
            "PWD",
            "kind",
            "data",
            "key",
        ] {
            assert!(!is_secret_key(name), "{name} should not be secret");
        }
    }

    #[test]
    fn placeholders_are_not_secrets() {
        for value in [
            "",
            "\"\"",
            "null",
            "true",
            "<none>",
            "{",
            "|-",
            "[REDACTED]",
            "****",
            "12 bytes",
            "(sensitive value)",
            "$DB_PASSWORD",
            "${DB_PASSWORD}",
            "{{ .Values.password }}",
            "<set to the key 'password' in secret 'db'>  Optional: false",
        ] {
            assert!(is_placeholder(value), "{value:?} is a placeholder");
        }
        for value in ["hunter2", "\"hunter2\"", "$2y$10$abcdefgh", "12345678"] {
            assert!(!is_placeholder(value), "{value:?} is a secret");
        }
    }

    #[test]
    fn switches_take_no_value() {
        assert!(is_switch("--no-password"));
        assert!(!is_switch("--password"));
    }
}
