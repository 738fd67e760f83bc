//! Removes credentials from tool output, command lines and tool arguments before they reach the
//! model, the client, the history or the audit rows.
//!
//! Every rule reads the original text and reports the byte ranges to mask; the ranges are merged
//! and replaced by `[REDACTED]` once at the end, so no rule reads another's output and the cost
//! stays linear in the text. The rules:
//! - `patterns`: credentials known by their shape (PEM private keys, AWS key ids, GitHub, Slack,
//!   Google tokens, JWTs), URLs with a password, `Authorization` headers, and `key: value`,
//!   `key=value`, `"key": "value"`, `--flag value` pairs whose key looks secret (`keys`);
//! - `command`: password flags that are not pairs (`mysql -pX`, `curl -u user:X`, `set KEY X`);
//! - `lines`: the structure of YAML and pretty JSON, line by line (the `data` of a `kind: Secret`,
//!   `value` of a secret-named env var, block scalars under secret keys);
//! - `json`: the same structural rules (`manifest`) on JSON documents that parse whole;
//! - `values`: known secret values, plain and encoded ([`Secrets`]).
//!
//! What no rule can see stays: a bare secret printed with no key, shape or known value (for
//! instance `kubectl get secret -o jsonpath='{.data.password}'` of a secret the org never stored).

mod command;
mod json;
mod keys;
mod lines;
mod manifest;
mod patterns;
mod values;

#[cfg(test)]
mod tests;

use std::fmt;
use std::ops::Range;

use serde_json::Value;

use keys::{is_placeholder, is_secret_key};
use manifest::{is_secret_manifest, secret_fields, LAST_APPLIED};
use values::Values;

const MASK: &str = "[REDACTED]";

/// Masks what the patterns know (keys, tokens, URLs, JSON and YAML secret fields).
pub fn redact(text: &str) -> String {
    mask(text, known(text))
}

/// A set of known secret values (an org's stored credentials), compiled once per tool call.
///
/// Values shorter than 8 characters are not masked by value: `admin` or `5432` would be masked in
/// every line of output. They are still masked where a key-based rule finds them.
#[derive(Clone, Default)]
pub struct Secrets {
    values: Values,
}

impl Secrets {
    pub fn new<I, S>(values: I) -> Secrets
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Secrets {
            values: Values::new(values),
        }
    }

    /// Whether no value is long enough to be masked by value.
    pub fn is_empty(&self) -> bool {
        self.values.len() == 0
    }

    /// `redact(text)` plus every known value (and its base64 forms) masked.
    pub fn redact(&self, text: &str) -> String {
        let mut ranges = known(text);
        self.values.find(text, &mut ranges);
        mask(text, ranges)
    }

    /// Masks every string inside a JSON value (tool arguments) the same way, and masks whole
    /// values of secret-looking keys.
    pub fn redact_json(&self, value: &Value) -> Value {
        match value {
            Value::String(s) => Value::String(self.redact(s)),
            Value::Array(items) => items.iter().map(|v| self.redact_json(v)).collect(),
            Value::Object(map) => {
                let structural = secret_fields(|k| map.get(k).and_then(Value::as_str));
                map.iter()
                    .map(|(k, v)| {
                        let v = if structural.contains(&k.as_str()) {
                            mask_leaves(v)
                        } else if is_secret_key(k)
                            || (k == LAST_APPLIED && v.as_str().is_some_and(is_secret_manifest))
                        {
                            mask_whole(v)
                        } else {
                            self.redact_json(v)
                        };
                        (self.redact(k), v)
                    })
                    .collect()
            }
            other => other.clone(),
        }
    }
}

/// Shows how many values are known, never the values (a derived `Debug` would print them).
impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secrets")
            .field("values", &self.values.len())
            .finish_non_exhaustive()
    }
}

/// The ranges every pattern and structural rule finds in `text`.
fn known(text: &str) -> Vec<Range<usize>> {
    let mut ranges = Vec::new();
    patterns::find(text, &mut ranges);
    command::find(text, &mut ranges);
    lines::find(text, &mut ranges);
    json::find(text, &mut ranges);
    ranges
}

/// `text` with `ranges` (merged where they overlap or touch) replaced by the mask.
fn mask(text: &str, mut ranges: Vec<Range<usize>>) -> String {
    ranges.retain(|r| !r.is_empty());
    if ranges.is_empty() {
        return text.to_string();
    }
    ranges.sort_unstable_by_key(|r| (r.start, r.end));
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut current = ranges[0].clone();
    for r in &ranges[1..] {
        if r.start <= current.end {
            current.end = current.end.max(r.end);
        } else {
            out.push_str(&text[copied..current.start]);
            out.push_str(MASK);
            copied = current.end;
            current = r.clone();
        }
    }
    out.push_str(&text[copied..current.start]);
    out.push_str(MASK);
    out.push_str(&text[current.end..]);
    out
}

/// A secret key's value: masked whole, unless it is null, a boolean or a placeholder.
fn mask_whole(value: &Value) -> Value {
    match value {
        Value::Null | Value::Bool(_) => value.clone(),
        Value::String(s) if is_placeholder(s) => value.clone(),
        _ => Value::String(MASK.into()),
    }
}

/// A Secret's `data`: every scalar masked, the keys left readable.
fn mask_leaves(value: &Value) -> Value {
    match value {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| (k.clone(), mask_leaves(v)))
            .collect(),
        Value::Array(items) => items.iter().map(mask_leaves).collect(),
        other => mask_whole(other),
    }
}
