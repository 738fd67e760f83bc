//! Masking by value: known secret strings (an org's stored credentials) wherever they appear,
//! plain, JSON-escaped, percent-encoded or base64-encoded. Base64 is matched by the part of the
//! encoding that depends on the value alone, at each of the three byte alignments, so the value
//! is found whether it is encoded alone (`kubectl get secret -o yaml`), with a trailing newline
//! (`echo pass | base64`), or inside a longer blob (`.dockerconfigjson`, a kubeconfig); the
//! whole encoded run around it is masked.

use std::fmt::Write;
use std::ops::Range;

use regex::{Regex, RegexBuilder};

/// Values shorter than this are not masked by value: `admin` or `true` would be masked in every
/// table and log line. Key-based rules still mask them where they sit under a secret key.
pub(super) const MIN_LEN: usize = 8;

/// Room for the automaton of a few thousand long values; past it the list fallback is used.
const REGEX_SIZE_LIMIT: usize = 64 << 20;

const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// A set of literal strings, found in one pass over a text.
#[derive(Clone, Default)]
pub(super) enum Literals {
    #[default]
    Empty,
    /// An alternation of the escaped literals, longest first (the regex crate runs it as an
    /// Aho-Corasick / Teddy prefilter).
    Regex(Regex),
    /// The literals themselves, searched one by one, when they are too many for one automaton.
    List(Vec<String>),
}

impl Literals {
    pub(super) fn new(literals: impl IntoIterator<Item = String>) -> Literals {
        let mut literals: Vec<String> = literals.into_iter().filter(|l| !l.is_empty()).collect();
        // Longest first, so that a value containing another one is matched whole.
        literals.sort_unstable_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        literals.dedup();
        if literals.is_empty() {
            return Literals::Empty;
        }
        let alternation: Vec<String> = literals.iter().map(|l| regex::escape(l)).collect();
        match RegexBuilder::new(&alternation.join("|"))
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
        {
            Ok(re) => Literals::Regex(re),
            Err(_) => Literals::List(literals),
        }
    }

    /// The ranges of every occurrence, overlapping ones included, in order of start.
    pub(super) fn find(&self, text: &str) -> Vec<Range<usize>> {
        let mut found = Vec::new();
        match self {
            Literals::Empty => {}
            Literals::Regex(re) => {
                // Restarting one byte after each match start finds overlapping values too
                // (`abcdefgh` and `efghijkl` in `abcdefghijkl`).
                let mut at = 0;
                while let Some(m) = re.find_at(text, at) {
                    found.push(m.range());
                    at = m.start() + text[m.start()..].chars().next().map_or(1, char::len_utf8);
                }
            }
            Literals::List(list) => {
                for literal in list {
                    found.extend(
                        text.match_indices(literal.as_str())
                            .map(|(i, _)| i..i + literal.len()),
                    );
                }
                found.sort_unstable_by_key(|r| r.start);
            }
        }
        found
    }
}

/// Compiled forms of a set of known secret values.
#[derive(Clone, Default)]
pub(super) struct Values {
    plain: Literals,
    base64: Literals,
    count: usize,
}

impl Values {
    pub(super) fn new<I, S>(values: I) -> Values
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let (mut plain, mut base64, mut count) = (Vec::new(), Vec::new(), 0);
        for value in values {
            let value = value.as_ref();
            if value.trim().chars().count() < MIN_LEN {
                continue;
            }
            count += 1;
            for form in [value, value.trim()] {
                plain.push(form.to_string());
                plain.push(json_escaped(form));
                plain.push(percent_encoded(form));
                for core in base64_cores(form.as_bytes()) {
                    base64.push(core.replace('+', "-").replace('/', "_"));
                    base64.push(core);
                }
            }
        }
        Values {
            plain: Literals::new(plain),
            base64: Literals::new(base64),
            count,
        }
    }

    /// How many values are masked (those long enough).
    pub(super) fn len(&self) -> usize {
        self.count
    }

    /// Adds the ranges of every occurrence of a value, in any of its forms, to `out`.
    pub(super) fn find(&self, text: &str, out: &mut Vec<Range<usize>>) {
        out.extend(self.plain.find(text));
        let mut covered = 0;
        for found in self.base64.find(text) {
            if found.start < covered {
                continue;
            }
            let run = encoded_run(text.as_bytes(), found);
            covered = run.end;
            out.push(run);
        }
    }
}

/// `value` as it appears inside a JSON string (quotes, backslashes, control characters escaped).
fn json_escaped(value: &str) -> String {
    let quoted = serde_json::to_string(value).expect("a string serialises");
    quoted[1..quoted.len() - 1].to_string()
}

/// `value` percent-encoded as in a URL, every byte but the unreserved ones escaped.
fn percent_encoded(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            write!(out, "%{b:02X}").expect("writing to a String cannot fail");
        }
    }
    out
}

/// The base64 characters that depend on `bytes` alone when they are encoded after 0, 1 or 2
/// other bytes: the encoding of the value found anywhere in a longer encoded blob.
fn base64_cores(bytes: &[u8]) -> [String; 3] {
    std::array::from_fn(|before| {
        let mut shifted = vec![0; before];
        shifted.extend_from_slice(bytes);
        let encoded = encode(&shifted);
        // Characters that mix bits of the bytes before, or of the bytes after, are left out.
        let first = (8 * before).div_ceil(6);
        let last = 8 * shifted.len() / 6;
        encoded[first..last].to_string()
    })
}

/// Standard base64 without padding.
fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let bits = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(STANDARD[(bits >> (18 - 6 * i)) as usize & 63]));
        }
    }
    out
}

/// `found` widened to the whole run of base64 characters around it, with its padding.
fn encoded_run(text: &[u8], found: Range<usize>) -> Range<usize> {
    let is_base64 = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_');
    let (mut start, mut end) = (found.start, found.end);
    while start > 0 && is_base64(text[start - 1]) {
        start -= 1;
    }
    while end < text.len() && is_base64(text[end]) {
        end += 1;
    }
    for _ in 0..2 {
        if text.get(end) == Some(&b'=') {
            end += 1;
        }
    }
    start..end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_the_standard() {
        assert_eq!(encode(b"hunter2hunter2"), "aHVudGVyMmh1bnRlcjI");
        assert_eq!(encode(b"a"), "YQ");
        assert_eq!(encode(b"ab"), "YWI");
        assert_eq!(encode(b"abc"), "YWJj");
        assert_eq!(encode(&[0xfb, 0xff]), "+/8");
    }

    #[test]
    fn cores_are_inside_every_alignment() {
        let value = b"s3cr3t-Pa55w0rd!";
        for before in ["", "x", "xy", "user:"] {
            for after in ["", "\n", "zz"] {
                let blob = encode(&[before.as_bytes(), value, after.as_bytes()].concat());
                assert!(
                    base64_cores(value)
                        .iter()
                        .any(|core| blob.contains(core.as_str())),
                    "{before:?} {after:?}: {blob}"
                );
            }
        }
    }

    #[test]
    fn percent_and_json_forms() {
        assert_eq!(percent_encoded("p@ss w/rd"), "p%40ss%20w%2Frd");
        assert_eq!(json_escaped("a\"b\\c\n"), "a\\\"b\\\\c\\n");
    }

    #[test]
    fn overlapping_values_are_all_found() {
        let literals = Literals::new(["abcdefgh".to_string(), "efghijkl".to_string()]);
        assert_eq!(literals.find("xxabcdefghijkl"), vec![2..10, 6..14]);
        let list = Literals::List(vec!["abcdefgh".into(), "efghijkl".into()]);
        assert_eq!(list.find("xxabcdefghijkl"), vec![2..10, 6..14]);
    }

    #[test]
    fn short_values_are_skipped() {
        let values = Values::new(["admin", "  short  ", "long enough"]);
        assert_eq!(values.len(), 1);
    }
}
