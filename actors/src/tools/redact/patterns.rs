//! Rules that read the text as a flat string: credentials known by their shape, URLs with a
//! password, `Authorization` headers, and `key: value` / `key=value` / `"key": "value"` /
//! `--flag value` pairs whose key looks secret. Each reports the byte ranges to mask.

use std::ops::Range;
use std::sync::LazyLock;

use regex::{Captures, Regex};

use super::keys::{is_placeholder, is_secret_key, is_switch};

/// Credentials recognisable alone, masked whole wherever they appear. One alternation, so one
/// pass over the text.
static SHAPES: LazyLock<Regex> = LazyLock::new(|| {
    let shapes = [
        // PEM private keys, whole blocks (also with `\n` escapes inside JSON strings); a block cut
        // by the output cap is masked to the end.
        r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----[\s\S]*?(?:-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|\z)",
        // AWS access key ids (long-term and session).
        r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b",
        // GitHub, GitLab, Slack, OpenAI / Anthropic, Stripe, npm, Vault tokens.
        r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{20,}\b",
        r"\bgithub_pat_[A-Za-z0-9_]{20,}",
        r"\bglpat-[A-Za-z0-9_-]{20,}",
        r"\bxox[abprs]-[A-Za-z0-9-]{10,}",
        r"\bsk-(?:ant-)?[A-Za-z0-9_-]{16,}\b",
        r"\b(?:sk|rk)_live_[A-Za-z0-9]{16,}",
        r"\bnpm_[A-Za-z0-9]{36}\b",
        r"\bhv[sbr]\.[A-Za-z0-9_-]{20,}",
        // Google API keys and OAuth access tokens (`gcloud auth print-access-token`).
        r"\bAIza[0-9A-Za-z_-]{35}",
        r"\bya29\.[0-9A-Za-z_-]{20,}",
        // JWTs: Kubernetes service-account tokens, Azure access tokens, OIDC id tokens.
        r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*",
        // `aws ecr get-login-password`: base64 of `{"payload":"...`.
        r"\beyJwYXlsb2FkIjoi[A-Za-z0-9+/=]{20,}",
        // Slack incoming webhooks carry their secret in the path.
        r"hooks\.slack\.com/services/[A-Za-z0-9/]{10,}",
    ];
    let alternation = shapes.map(|s| format!("(?:{s})")).join("|");
    Regex::new(&alternation).expect("shape patterns compile")
});

/// `scheme://user:password@host`: the password (up to the last `@` before the path).
static URL_PASSWORD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/?#@"'<>]*:([^\s/?#"'<>]+)@"#)
        .expect("URL pattern compiles")
});

/// `Authorization: <scheme> <credentials>` in headers, curl -v output and JSON: the rest of the
/// header value.
static AUTHORIZATION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?i)\b(?:proxy-)?authorization["']?[ \t]*[:=][ \t]*["']?(?:(?:bearer|basic|token|digest|negotiate|ntlm|aws4-hmac-sha256|sharedkey)[ \t]+)?([^\s"'{\[][^\r\n"']*)"#,
    )
    .expect("authorization pattern compiles")
});

/// `Bearer <token>` anywhere (`-H "Authorization: Bearer ..."` is the usual case).
static BEARER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\bbearer[ \t]+([A-Za-z0-9._~+/=-]{8,})").expect("bearer pattern compiles")
});

/// `key: value`, `key=value`, `"key": "value"`, `key = 'value'`, `--flag=value`, with the key
/// optionally quoted and, at the start of a line, optionally a YAML list item. Matches every
/// pair; `pairs` decides which are secret.
static PAIR: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?m)(?P<lead>^[ \t]*(?:-[ \t]+)?)?(?P<open>["']?)(?P<key>[A-Za-z0-9_.-]*[A-Za-z0-9_])["']?[ \t]*(?P<sep>[:=])[ \t]*(?P<val>"(?:[^"\\\r\n]|\\.)*"?|'[^'\r\n]*'?|[^\s,;"'&]+)"#,
    )
    .expect("pair pattern compiles")
});

/// `--flag value` / `-flag value` on a command line, the value not itself a flag.
static FLAG: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?m)(?:^|[\s"'(])(?P<flag>--?[A-Za-z][A-Za-z0-9_.-]*)[ \t]+(?P<val>"(?:[^"\\\r\n]|\\.)*"?|'[^'\r\n]*'?|[^\s"'-][^\s"']*)"#,
    )
    .expect("flag pattern compiles")
});

/// Words CLI help prints after a flag in place of its value (`--token string  Bearer token`).
const HELP_TYPES: &[&str] = &["string", "strings", "int", "bool", "duration", "value"];

/// Adds the ranges of every credential the flat-text rules find in `text` to `out`.
pub(super) fn find(text: &str, out: &mut Vec<Range<usize>>) {
    out.extend(SHAPES.find_iter(text).map(|m| m.range()));
    for re in [&*URL_PASSWORD, &*AUTHORIZATION] {
        out.extend(re.captures_iter(text).filter_map(|c| c.get(1)).map(|m| {
            let trimmed = m.as_str().trim_end();
            m.start()..m.start() + trimmed.len()
        }));
    }
    out.extend(
        BEARER
            .captures_iter(text)
            .filter_map(|c| c.get(1))
            // An all-lowercase word is prose ("bearer authentication"), not a token.
            .filter(|m| !m.as_str().chars().all(|c| c.is_ascii_lowercase()))
            .map(|m| m.range()),
    );
    pairs(text, out);
    flags(text, out);
}

/// Secret `key: value` pairs. A rejected key resumes the search right after the key, so that a
/// value like `password=hunter2` in `--from-literal=password=hunter2` is still looked at.
fn pairs(text: &str, out: &mut Vec<Range<usize>>) {
    let mut pos = 0;
    while let Some(c) = PAIR.captures_at(text, pos) {
        let key = c.name("key").expect("key is not optional");
        pos = key.end();
        if !is_secret_key(key.as_str()) {
            continue;
        }
        if let Some(range) = pair_value(text, &c) {
            pos = range.end;
            out.push(range);
        }
    }
}

/// The range to mask for the value of a secret pair, or `None` when it is a placeholder.
fn pair_value(text: &str, c: &Captures) -> Option<Range<usize>> {
    let val = c.name("val").expect("value is not optional");
    let raw = val.as_str();
    let quoted = raw.starts_with(['"', '\'']);
    let sep = c.name("sep").expect("separator is not optional");
    // `arn:aws:secretsmanager:us-east-1`, `host:port`: a bare colon between plain words is no
    // pair. A quoted key (`{"token":1}`) or value, or openssl's `pass:X`, is.
    if &c["sep"] == ":"
        && sep.end() == val.start()
        && c["open"].is_empty()
        && !quoted
        && !c["key"].eq_ignore_ascii_case("pass")
    {
        return None;
    }
    // terraform's `password = (sensitive value)`, cut at the space by the pattern.
    if text[val.start()..].starts_with("(sensitive") {
        return None;
    }
    let range = if let Some(quote @ ('"' | '\'')) = raw.chars().next() {
        let inner = &raw[1..];
        let inner = inner.strip_suffix(quote).unwrap_or(inner);
        val.start() + 1..val.start() + 1 + inner.len()
    } else {
        let mut range = val.range();
        if !c["open"].is_empty() {
            // A JSON key: an unquoted value (a number) ends at the closing bracket.
            if let Some(cut) = raw.find(['}', ']']) {
                range.end = val.start() + cut;
            }
        } else if c.name("lead").is_some() && &c["sep"] == ":" {
            // A YAML or `kubectl describe` line: a plain value runs to the end of the line
            // (found once per line, as the key starts it).
            let line_end = text[range.end..]
                .find('\n')
                .map_or(text.len(), |i| range.end + i);
            range.end = range.start + text[range.start..line_end].trim_end().len();
        }
        range
    };
    (!range.is_empty() && !is_placeholder(&text[range.clone()])).then_some(range)
}

/// Secret `--flag value` pairs (the `--flag=value` form is a pair).
fn flags(text: &str, out: &mut Vec<Range<usize>>) {
    let mut pos = 0;
    while let Some(c) = FLAG.captures_at(text, pos) {
        let flag = c.name("flag").expect("flag is not optional");
        pos = flag.end();
        let val = c.name("val").expect("value is not optional");
        let raw = val.as_str();
        if !is_secret_key(flag.as_str())
            || is_switch(flag.as_str())
            || is_placeholder(raw)
            || HELP_TYPES.contains(&raw)
        {
            continue;
        }
        let range = match raw.chars().next() {
            Some(quote @ ('"' | '\'')) => {
                let inner = raw[1..].strip_suffix(quote).unwrap_or(&raw[1..]);
                val.start() + 1..val.start() + 1 + inner.len()
            }
            _ => val.range(),
        };
        pos = range.end.max(pos);
        out.push(range);
    }
}
