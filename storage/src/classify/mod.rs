//! Classifies a cloud CLI command (an argument vector, no shell) before the agent runs it: does
//! it only read, write, destroy, or may it never run at all?
//!
//! The gate this replaces matched a regex of dangerous verbs, so whatever the regex did not
//! name (`kubectl exec`, `helm install`, `aws iam create-access-key`, ...) ran without asking.
//! Here each CLI has an allowlist of commands known to only read, and anything not known to be
//! a read is at least a [`Class::Write`]. Flags are read the way each CLI reads them, global
//! flags before the subcommand included, so a flag's value is never taken for a subcommand;
//! where a flag's arity is unknown every reading is classified and the worst one wins.
//!
//! Reasons go to the approval prompt and the audit log, so they name only the CLI's own words
//! (program, subcommands, flag names), never a flag's value or a resource name, which may hold
//! a secret.

mod aws;
mod az;
mod flags;
mod gcloud;
mod groups;
mod helm;
mod kubectl;
mod terraform;

use serde::{Deserialize, Serialize};

/// How much a command can do, least to most: the order is the severity the gate compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    /// Known to only read: runs without asking.
    Read,
    /// Changes something, or is simply not known to be a read: needs approval.
    Write,
    /// Deletes, stops or replaces resources: needs approval, flagged as such.
    Destructive,
    /// Never runs: it would reach past the credentials and directory the node supplies.
    Forbidden,
}

/// The class of one command and a short sentence saying why, for the approval prompt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Classification {
    pub class: Class,
    pub reason: String,
}

impl Classification {
    fn new(class: Class, reason: impl Into<String>) -> Self {
        Self {
            class,
            reason: reason.into(),
        }
    }

    fn read(reason: impl Into<String>) -> Self {
        Self::new(Class::Read, reason)
    }

    fn write(reason: impl Into<String>) -> Self {
        Self::new(Class::Write, reason)
    }

    fn destructive(reason: impl Into<String>) -> Self {
        Self::new(Class::Destructive, reason)
    }

    fn forbidden(reason: impl Into<String>) -> Self {
        Self::new(Class::Forbidden, reason)
    }

    /// The more severe of the two, the first on a tie (its reason is the one shown).
    fn worst(self, other: Self) -> Self {
        if other.class > self.class {
            other
        } else {
            self
        }
    }
}

/// Classifies one command. `argv[0]` is the program, matched by its bare name only: a path
/// such as `/tmp/x/kubectl` may be any program at all.
pub fn classify(argv: &[String]) -> Classification {
    let Some((program, args)) = argv.split_first() else {
        return Classification::write("empty command");
    };
    match program.as_str() {
        "kubectl" => kubectl::classify(args),
        "helm" => helm::classify(args),
        "aws" => aws::classify(args),
        "gcloud" => gcloud::classify(args),
        "az" => az::classify(args),
        "terraform" => terraform::classify(args),
        _ => Classification::write("unknown program"),
    }
}

/// Longest word shown as itself in a reason.
const MAX_SHOWN: usize = 48;

/// A word of the command line as a reason shows it: a word shaped like a subcommand
/// (lowercase letters, digits, dashes) as itself, anything else as `<arg>`, since it may be a
/// value, and a value may be a secret.
fn shown(word: &str) -> &str {
    let shaped = word.len() <= MAX_SHOWN
        && word.starts_with(|c: char| c.is_ascii_lowercase())
        && word
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if shaped {
        word
    } else {
        "<arg>"
    }
}

/// The program and its command words as a reason quotes them: `` `kubectl rollout status` ``.
fn quote(program: &str, words: &[&str]) -> String {
    let mut out = format!("`{program}");
    for word in words {
        out.push(' ');
        out.push_str(shown(word));
    }
    out.push('`');
    out
}

fn only_reads(program: &str, words: &[&str]) -> Classification {
    Classification::read(format!("{} only reads", quote(program, words)))
}

fn not_a_known_read(program: &str, words: &[&str]) -> Classification {
    Classification::write(format!("{} is not a known read", quote(program, words)))
}

fn destroys(program: &str, words: &[&str]) -> Classification {
    Classification::destructive(format!("{} destroys resources", quote(program, words)))
}

/// Classifies every reading of the arguments and keeps the worst; when there were too many
/// readings to try them all, the untried ones count as at least a write.
fn worst_reading<'a>(
    readings: flags::Readings<'a>,
    classify: impl Fn(&flags::Reading<'a>) -> Classification,
) -> Classification {
    let worst = readings
        .all
        .iter()
        .map(classify)
        .reduce(Classification::worst)
        .expect("there is always at least one reading");
    if readings.truncated {
        worst.worst(Classification::write(
            "too many unrecognised flags to tell what the command runs",
        ))
    } else {
        worst
    }
}

#[cfg(test)]
mod tests;
