//! Command trees of unknown depth (gcloud, az): group words, then the command word, then its
//! arguments. Without the CLI's own tree a resource name could pass for a group
//! (`gcloud workflows run list` runs a workflow named `list`), so a read needs every word before
//! its verb to be a group known here; a command under an unknown group is at least a write.

/// The group words one CLI's reads may go through.
pub(super) struct Tree {
    /// Words that open a command (`compute`, `vm`).
    pub top: &'static [&'static str],
    /// Words that may follow as subgroups (`instances`, `node-pools`): nouns that are never a
    /// command of their own anywhere in the CLI.
    pub sub: &'static [&'static str],
}

/// What a verb word does, as one CLI's tables say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Verb {
    Read,
    Write,
    Destructive,
    /// Refused, and why.
    Forbidden(&'static str),
}

/// The command words split at the command: `groups` known, then `command` (if any), then the
/// rest.
pub(super) struct Split<'w, 'a> {
    pub groups: &'w [&'a str],
    pub command: Option<&'a str>,
    pub rest: &'w [&'a str],
}

impl Tree {
    pub fn split<'w, 'a>(&self, words: &'w [&'a str]) -> Split<'w, 'a> {
        let mut known = 0;
        if words.first().is_some_and(|w| self.top.contains(w)) {
            known = 1;
            while words.get(known).is_some_and(|w| self.sub.contains(w)) {
                known += 1;
            }
        }
        Split {
            groups: &words[..known],
            command: words.get(known).copied(),
            rest: words.get(known + 1..).unwrap_or(&[]),
        }
    }
}

/// When the command word is not one the CLI's tables know, it may be a group they lack: the
/// first known verb after it says what runs, and the command is at least a write. Returns how
/// many of `rest` lead up to that verb, and the verb.
pub(super) fn verb_after_unknown(
    rest: &[&str],
    verb: impl Fn(&str) -> Option<Verb>,
) -> Option<(usize, Verb)> {
    rest.iter()
        .enumerate()
        .find_map(|(at, word)| verb(word).map(|v| (at + 1, v)))
}
