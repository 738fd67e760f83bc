//! Indentation-structured text read line by line: YAML (`kubectl get -o yaml`, kubeconfigs, Helm
//! values) and pretty-printed JSON (`kubectl get -o json`, `aws`, `gcloud`, `az`). Line by line,
//! so that output cut by the cap keeps its structure. Masks:
//! - the `data` / `stringData` of a mapping whose `kind` is `Secret`, wherever `kind` sits in it;
//! - `value` fields the structural rules call secret (`- name: DB_PASSWORD` / `value: ...`);
//! - block scalars (`private_key: |`) under secret keys, whose text is on the next lines;
//! - the last-applied annotation of a Secret, which repeats its whole `data`.
//!
//! Inline `key: value` pairs under secret keys are the flat-text rules' job.

use std::ops::Range;

use super::keys::{is_block_indicator, is_placeholder, is_secret_key};
use super::manifest::{is_secret_manifest, is_structural, secret_fields, LAST_APPLIED};

/// One line of the text.
struct Line<'a> {
    /// Byte offset of the line in the text.
    start: usize,
    /// The line, without its line break.
    text: &'a str,
    /// Byte column of the content, after the indentation and any `- ` list markers.
    col: usize,
    /// Whether the line starts a list item (`- name: x`), and so a new mapping.
    item: bool,
    kind: Kind<'a>,
}

enum Kind<'a> {
    /// Empty, or a comment.
    Blank,
    /// Only closing brackets and commas (pretty JSON).
    Closer,
    /// `key: value` or `"key": value,`; `value` is the byte range of the value in the line.
    Entry { key: &'a str, value: Range<usize> },
    /// Anything else: a block scalar's text, a list scalar, a table row, `---`.
    Other,
}

/// How the lines under a key are masked.
#[derive(Clone, Copy, PartialEq)]
enum Under {
    /// A block scalar: every line is text to mask.
    Text,
    /// A mapping: the values of its entries, and lines of text, are masked; keys stay readable.
    Mapping,
}

/// Adds the ranges of the secrets the structure of `text` reveals to `out`.
pub(super) fn find(text: &str, out: &mut Vec<Range<usize>>) {
    let lines = split(text);
    let mut mapping_cache: Option<Mapping> = None;
    for (i, line) in lines.iter().enumerate() {
        let Kind::Entry { key, value } = &line.kind else {
            continue;
        };
        let raw = &line.text[value.clone()];
        if *key == LAST_APPLIED {
            last_applied(&lines, i, out);
        } else if is_block_indicator(raw) && is_secret_key(key) {
            under(&lines, i, Under::Text, out);
        } else if is_structural(key) {
            // Lines of one mapping share it: a flat run of `value:` lines is walked once.
            let mapping = match mapping_cache.take() {
                Some(m) if m.contains(&lines, i) => m,
                _ => Mapping::of(&lines, i),
            };
            let secret = mapping.secret_fields.contains(key);
            mapping_cache = Some(mapping);
            if !secret {
                continue;
            }
            if is_block_indicator(raw) {
                under(&lines, i, Under::Text, out);
            } else if matches!(raw, "" | "{" | "[") {
                under(&lines, i, Under::Mapping, out);
            } else if !is_placeholder(raw) {
                out.push(value_range(line, value.clone()));
            }
        }
    }
}

fn split(text: &str) -> Vec<Line<'_>> {
    let mut start = 0;
    text.split('\n')
        .map(|raw| {
            let line = parse(start, raw.strip_suffix('\r').unwrap_or(raw));
            start += raw.len() + 1;
            line
        })
        .collect()
}

fn parse(start: usize, text: &str) -> Line<'_> {
    let mut col = text.len() - text.trim_start().len();
    let mut item = false;
    while let Some(rest) = text[col..].strip_prefix('-') {
        if !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
            break;
        }
        item = true;
        col = text.len() - rest.trim_start().len();
    }
    let rest = &text[col..];
    let kind = if rest.is_empty() || rest.starts_with('#') {
        Kind::Blank
    } else if rest
        .chars()
        .all(|c| matches!(c, '}' | ']' | ',' | ' ' | '\t'))
    {
        Kind::Closer
    } else if let Some((key, value)) = entry(rest) {
        Kind::Entry {
            key,
            value: col + value.start..col + value.end,
        }
    } else {
        Kind::Other
    };
    Line {
        start,
        text,
        col,
        item,
        kind,
    }
}

/// The key and the value's range of `key: value` or `"key": value,` at the start of `rest`.
fn entry(rest: &str) -> Option<(&str, Range<usize>)> {
    let (key, after_key, quoted) = match rest.chars().next()? {
        quote @ ('"' | '\'') => {
            let close = closing_quote(rest, quote)?;
            (&rest[1..close], close + 1, true)
        }
        '{' | '[' | '}' | ']' | ',' | '|' | '>' => return None,
        _ => {
            // A plain key ends at the first colon followed by a blank or the end of the line.
            let colon = rest
                .match_indices(':')
                .map(|(i, _)| i)
                .find(|&i| rest[i + 1..].is_empty() || rest[i + 1..].starts_with([' ', '\t']))?;
            (rest[..colon].trim_end(), colon, false)
        }
    };
    let after = &rest[after_key..];
    let colon = after_key + (after.len() - after.trim_start().len());
    if !rest[colon..].starts_with(':') || key.is_empty() {
        return None;
    }
    let value_start = rest.len() - rest[colon + 1..].trim_start().len();
    let mut value_end = rest.trim_end().len().max(value_start);
    if quoted && rest[..value_end].ends_with(',') {
        value_end -= 1;
    }
    Some((key, value_start..value_end.max(value_start)))
}

/// The index of the quote closing the string that opens `text`, skipping escaped ones.
fn closing_quote(text: &str, quote: char) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in text.char_indices().skip(1) {
        match c {
            '\\' if quote == '"' && !escaped => escaped = true,
            c if c == quote && !escaped => return Some(i),
            _ => escaped = false,
        }
    }
    None
}

/// The mapping a line belongs to: the lines it spans and its fields the structural rules call
/// secret.
struct Mapping {
    col: usize,
    lines: Range<usize>,
    secret_fields: Vec<&'static str>,
}

impl Mapping {
    /// The mapping of line `i`, found by walking out from it until a line indented less, the
    /// next list item, or plain text at the same column.
    fn of(lines: &[Line], i: usize) -> Mapping {
        let col = lines[i].col;
        let mut entries = Vec::new();
        // Whether line `j` ends the mapping; records it when it is a sibling entry.
        let mut visit = |j: usize| -> bool {
            let line = &lines[j];
            match &line.kind {
                Kind::Blank => false,
                _ if line.col > col => false,
                Kind::Closer => line.col < col,
                _ if line.col < col => true,
                Kind::Entry { key, value } => {
                    entries.push((*key, unquote(&line.text[value.clone()])));
                    false
                }
                Kind::Other => true,
            }
        };
        visit(i);
        let mut first = i;
        if !lines[i].item {
            while first > 0 {
                let j = first - 1;
                if visit(j) {
                    break;
                }
                first = j;
                if lines[j].item && lines[j].col == col {
                    break;
                }
            }
        }
        let mut end = i + 1;
        while end < lines.len() && !(lines[end].item && lines[end].col == col) && !visit(end) {
            end += 1;
        }
        let scalar = |key: &str| entries.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
        Mapping {
            col,
            lines: first..end,
            secret_fields: secret_fields(scalar),
        }
    }

    fn contains(&self, lines: &[Line], i: usize) -> bool {
        self.lines.contains(&i) && lines[i].col == self.col
    }
}

fn unquote(value: &str) -> &str {
    let value = value.trim();
    for quote in ['"', '\''] {
        if let Some(inner) = value
            .strip_prefix(quote)
            .and_then(|v| v.strip_suffix(quote))
        {
            return inner;
        }
    }
    value
}

/// The range to mask of an inline value: inside its quotes when it has some.
fn value_range(line: &Line, value: Range<usize>) -> Range<usize> {
    let raw = &line.text[value.clone()];
    let inner = match raw.chars().next() {
        Some(q @ ('"' | '\'')) if raw.len() > 1 && raw.ends_with(q) => {
            value.start + 1..value.end - 1
        }
        _ => value,
    };
    line.start + inner.start..line.start + inner.end
}

/// Masks what lies on the lines under line `i` (those indented deeper).
fn under(lines: &[Line], i: usize, how: Under, out: &mut Vec<Range<usize>>) {
    let col = lines[i].col;
    // Consecutive lines of text are masked as one, so a 30-line key becomes one `[REDACTED]`.
    let mut text: Option<Range<usize>> = None;
    for line in &lines[i + 1..] {
        if matches!(line.kind, Kind::Blank) && how == Under::Mapping {
            continue;
        }
        if line.text.trim().is_empty() {
            continue;
        }
        if line.col <= col {
            break;
        }
        let content = line.start + line.col..line.start + line.text.trim_end().len();
        match &line.kind {
            Kind::Entry { value, .. } if how == Under::Mapping => {
                out.extend(text.take());
                let raw = &line.text[value.clone()];
                if !is_placeholder(raw) {
                    out.push(value_range(line, value.clone()));
                }
            }
            Kind::Closer if how == Under::Mapping => out.extend(text.take()),
            _ => {
                text = Some(text.map_or(content.clone(), |t| t.start..content.end));
            }
        }
    }
    out.extend(text);
}

/// The last-applied annotation, inline or as a block: masked whole when it is a Secret's.
fn last_applied(lines: &[Line], i: usize, out: &mut Vec<Range<usize>>) {
    let line = &lines[i];
    let Kind::Entry { value, .. } = &line.kind else {
        return;
    };
    let raw = &line.text[value.clone()];
    if is_block_indicator(raw) {
        let block: Vec<&str> = lines[i + 1..]
            .iter()
            .take_while(|l| l.text.trim().is_empty() || l.col > line.col)
            .map(|l| l.text.trim())
            .collect();
        if is_secret_manifest(&block.join("\n")) {
            under(lines, i, Under::Text, out);
        }
        return;
    }
    let applied = match raw.chars().next() {
        Some('"') => serde_json::from_str::<String>(raw).unwrap_or_default(),
        Some('\'') => unquote(raw).replace("''", "'"),
        _ => raw.to_string(),
    };
    if is_secret_manifest(&applied) {
        out.push(value_range(line, value.clone()));
    }
}
