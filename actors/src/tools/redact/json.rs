//! JSON documents that parse whole, compact ones included (API responses, `jq -c`, NDJSON logs):
//! the structural rules find the secret strings in the parsed values, which are then masked
//! where their JSON literal appears in the text. Pretty-printed JSON cut by the output cap is left
//! to the line rules, which need no complete document.

use std::fmt::Write;
use std::ops::Range;

use serde_json::{Deserializer, Value};

use super::manifest::{is_secret_manifest, secret_fields, LAST_APPLIED};
use super::values::Literals;

/// Adds the ranges (inside the quotes) of every secret string of the JSON documents in `text`.
pub(super) fn find(text: &str, out: &mut Vec<Range<usize>>) {
    let mut secrets = Vec::new();
    let mut from = 0;
    while let Some(start) = next_document(text, from) {
        let mut stream = Deserializer::from_str(&text[start..]).into_iter::<Value>();
        from = loop {
            match stream.next() {
                Some(Ok(value)) => collect(&value, &mut secrets),
                Some(Err(e)) => break start + error_offset(&text[start..], &e).max(1),
                None => break text.len(),
            }
        };
    }
    let literals = Literals::new(secrets.iter().flat_map(|s| literal_forms(s)));
    out.extend(
        literals
            .find(text)
            .into_iter()
            .map(|r| r.start + 1..r.end - 1),
    );
}

/// The start of the next line at or after `from` that opens a JSON object or array. Documents
/// are looked for at the start of lines only, where the CLIs print them, so that brackets in
/// log lines cost no parse.
fn next_document(text: &str, from: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    // Byte search: `from` comes from an error position and may fall inside a character.
    let next_line = |at: usize| {
        bytes
            .get(at..)?
            .iter()
            .position(|&b| b == b'\n')
            .map(|i| at + i + 1)
    };
    let mut at = from;
    if at > 0 && bytes.get(at - 1) != Some(&b'\n') {
        at = next_line(at)?;
    }
    loop {
        if matches!(bytes.get(at), Some(b'{' | b'[')) {
            return Some(at);
        }
        at = next_line(at)?;
    }
}

/// Byte offset in `text` where parsing stopped, from the error's line and column.
fn error_offset(text: &str, e: &serde_json::Error) -> usize {
    let line_start: usize = text
        .split_inclusive('\n')
        .take(e.line().saturating_sub(1))
        .map(str::len)
        .sum();
    (line_start + e.column()).min(text.len())
}

/// Pushes the strings of `value` that the structural rules call secret.
fn collect(value: &Value, secrets: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for field in secret_fields(|k| map.get(k).and_then(Value::as_str)) {
                if let Some(v) = map.get(field) {
                    strings(v, secrets);
                }
            }
            if let Some(Value::String(applied)) = map.get(LAST_APPLIED) {
                if is_secret_manifest(applied) {
                    secrets.push(applied.clone());
                }
            }
            map.values().for_each(|v| collect(v, secrets));
        }
        Value::Array(items) => items.iter().for_each(|v| collect(v, secrets)),
        _ => {}
    }
}

/// Pushes every non-empty string inside `value`.
fn strings(value: &Value, secrets: &mut Vec<String>) {
    match value {
        Value::String(s) if !s.is_empty() => secrets.push(s.clone()),
        Value::Object(map) => map.values().for_each(|v| strings(v, secrets)),
        Value::Array(items) => items.iter().for_each(|v| strings(v, secrets)),
        _ => {}
    }
}

/// The quoted literal of `s` as serde_json, Go's encoding/json (kubectl: `<`, `>`, `&` escaped)
/// and Python's json (aws: non-ASCII escaped) write it.
fn literal_forms(s: &str) -> [String; 3] {
    let serde = serde_json::to_string(s).expect("a string serialises");
    let go = serde
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029");
    let mut python = String::with_capacity(serde.len());
    for c in serde.chars() {
        if c.is_ascii() {
            python.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                write!(python, "\\u{unit:04x}").expect("writing to a String cannot fail");
            }
        }
    }
    [serde, go, python]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_start_lines() {
        let text = "Warning: x [y]\n{\"a\": 1}\n";
        assert_eq!(next_document(text, 0), Some(15));
        assert_eq!(next_document(text, 16), None);
    }

    #[test]
    fn literals_as_each_encoder_writes_them() {
        let [serde, go, python] = literal_forms("p<&é");
        assert_eq!(serde, "\"p<&é\"");
        assert_eq!(go, "\"p\\u003c\\u0026é\"");
        assert_eq!(python, "\"p<&\\u00e9\"");
    }
}
