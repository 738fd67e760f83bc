//! Removes credentials from tool output before it reaches the model, the client or the history.

use std::sync::LazyLock;

use regex::Regex;

const MASK: &str = "[REDACTED]";

static PATTERNS: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    [
        // PEM private keys, whole blocks.
        (r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----", MASK),
        // AWS access key ids.
        (r"\b(AKIA|ASIA)[0-9A-Z]{16}\b", MASK),
        // GitHub, Slack, OpenAI / Anthropic style tokens.
        (r"\b(ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{20,}\b", MASK),
        (r"\bxox[abprs]-[A-Za-z0-9-]{10,}\b", MASK),
        (r"\bsk-(ant-)?[A-Za-z0-9_-]{16,}\b", MASK),
        // Bearer tokens in headers or commands.
        (r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{8,}", "$1 [REDACTED]"),
        // key = value / key: value for secret-looking keys (aws_secret_access_key, password, ...).
        (
            r#"(?i)\b([A-Za-z0-9_.-]*(secret|password|passwd|token|api[_-]?key|access[_-]?key)[A-Za-z0-9_.-]*)(\s*[:=]\s*)("[^"]*"|'[^']*'|[^\s,;]+)"#,
            "$1$3[REDACTED]",
        ),
    ]
    .into_iter()
    .map(|(p, r)| (Regex::new(p).expect("redaction pattern compiles"), r))
    .collect()
});

/// `text` with every credential the patterns know replaced by `[REDACTED]`.
pub fn redact(text: &str) -> String {
    let mut out = text.to_string();
    for (re, replacement) in PATTERNS.iter() {
        if re.is_match(&out) {
            out = re.replace_all(&out, *replacement).into_owned();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn masks_common_credentials() {
        let text = "aws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n\
                    password: hunter2\nAuthorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig\n\
                    token=ghp_abcdefghijklmnopqrstuvwxyz0123\nkey sk-ant-api03-abcdefghijklmnop\n\
                    -----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----\npods: 3 running";
        let out = redact(text);
        for secret in [
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI",
            "hunter2",
            "eyJhbGciOiJIUzI1NiJ9",
            "ghp_abc",
            "sk-ant-api03",
            "MIIEow",
        ] {
            assert!(!out.contains(secret), "{secret} survived:\n{out}");
        }
        assert!(out.contains("pods: 3 running"));
        assert!(out.contains("password: [REDACTED]"));
    }

    #[test]
    fn leaves_ordinary_output_alone() {
        let text =
            "NAME    READY   STATUS\nweb-1   1/1     Running\ntokens-service   0/1   Pending";
        assert_eq!(redact(text), text);
    }
}
