//! Rules for command lines whose secrets are not `key=value` pairs: short password flags of
//! database clients (`mysql -pSECRET`, `redis-cli -a SECRET`), `curl -u user:password`, and
//! `aws configure set aws_secret_access_key SECRET` / `kubectl config set users.x.token SECRET`.

use std::ops::Range;
use std::sync::LazyLock;

use regex::{Match, Regex};

use super::keys::is_secret_key;

/// A program whose short flags carry passwords, where it starts a command (after a separator or
/// a quote, with or without a directory).
static PROGRAM: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?m)(?:^|[\s;&|(`"'])(?:[^\s;&|()"']*/)?(?P<program>mysql|mysqldump|mysqladmin|mysqlimport|mariadb|mariadb-dump|mongo|mongosh|mongodump|mongorestore|mongoexport|mongoimport|redis-cli|sshpass|curl|az)[ \t]"#,
    )
    .expect("program pattern compiles")
});

/// One shell word (quoted or bare), or what ends a command: a separator or a line break.
static WORD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#""(?:[^"\\\r\n]|\\.)*"?|'[^'\r\n]*'?|[^\s"';|&]+|[;|&\n]"#)
        .expect("word pattern compiles")
});

/// `set KEY VALUE` (aws configure, kubectl config): the value when the key looks secret.
static SET: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"\bset[ \t]+(?P<key>[A-Za-z0-9_.-]+)[ \t]+(?P<val>"(?:[^"\\\r\n]|\\.)*"?|'[^'\r\n]*'?|[^\s"']+)"#,
    )
    .expect("set pattern compiles")
});

/// What the word after a flag holds.
#[derive(Clone, Copy)]
enum Holds {
    Password,
    /// `user:password`: the part after the first colon.
    UserPassword,
}

/// Adds the ranges of every credential the command-line rules find in `text` to `out`.
pub(super) fn find(text: &str, out: &mut Vec<Range<usize>>) {
    for c in SET.captures_iter(text) {
        if is_secret_key(&c["key"]) {
            out.extend(unquoted(c.name("val").expect("value is not optional")));
        }
    }
    let programs: Vec<Match> = PROGRAM
        .captures_iter(text)
        .filter_map(|c| c.name("program"))
        .collect();
    for (i, program) in programs.iter().enumerate() {
        // Up to the next program at most, so a long line of commands is walked once.
        let end = programs.get(i + 1).map_or(text.len(), Match::start);
        arguments(text, program.as_str(), program.end()..end, out);
    }
}

/// Walks the words of one command up to the next separator and masks its password flags.
fn arguments(text: &str, program: &str, span: Range<usize>, out: &mut Vec<Range<usize>>) {
    let mut expecting: Option<Holds> = None;
    for word in WORD.find_iter(&text[span.clone()]) {
        let start = span.start + word.start();
        let w = word.as_str();
        if matches!(w, ";" | "|" | "&" | "\n") {
            break;
        }
        if let Some(holds) = expecting.take() {
            if !w.starts_with('-') {
                out.extend(value_range(start, w, holds));
                continue;
            }
        }
        let Some((flag, holds)) = password_flag(program, w) else {
            continue;
        };
        if w == flag {
            expecting = Some(holds);
        } else {
            // The value is attached: `-pSECRET`, `-uuser:password`, `--user=user:password`.
            out.extend(value_range(start + flag.len(), &w[flag.len()..], holds));
        }
    }
}

/// The flag of `program` that `word` starts with, when it carries a password, and what it holds.
fn password_flag(program: &str, word: &str) -> Option<(&'static str, Holds)> {
    let short =
        |flag: &'static str| (word.starts_with(flag) && !word.starts_with("--")).then_some(flag);
    match program {
        "curl" => ["--user=", "--proxy-user=", "--user", "--proxy-user"]
            .into_iter()
            .find(|f| word == *f || (f.ends_with('=') && word.starts_with(f)))
            .or_else(|| short("-u"))
            .or_else(|| short("-U"))
            .map(|f| (f, Holds::UserPassword)),
        "redis-cli" => short("-a").map(|f| (f, Holds::Password)),
        // `mysql -pSECRET` takes it attached; `-p word` is masked too, to be safe.
        p if p.starts_with("mysql") || p.starts_with("mariadb") => {
            short("-p").map(|f| (f, Holds::Password))
        }
        _ => (word == "-p").then_some(("-p", Holds::Password)),
    }
}

/// The range to mask in `word` (at byte `start`) holding `holds`.
fn value_range(start: usize, word: &str, holds: Holds) -> Option<Range<usize>> {
    let (offset, inner) = strip_quotes(word);
    let (offset, inner) = match holds {
        Holds::Password => (offset, inner),
        Holds::UserPassword => {
            let colon = inner.find(':')?;
            (offset + colon + 1, &inner[colon + 1..])
        }
    };
    (!inner.is_empty()).then(|| start + offset..start + offset + inner.len())
}

/// The range of a matched value without its quotes.
fn unquoted(val: Match) -> Option<Range<usize>> {
    let (offset, inner) = strip_quotes(val.as_str());
    (!inner.is_empty()).then(|| val.start() + offset..val.start() + offset + inner.len())
}

/// `word` without surrounding quotes, and the offset of what is left.
fn strip_quotes(word: &str) -> (usize, &str) {
    match word.chars().next() {
        Some(quote @ ('"' | '\'')) => {
            let inner = &word[1..];
            (1, inner.strip_suffix(quote).unwrap_or(inner))
        }
        _ => (0, word),
    }
}
