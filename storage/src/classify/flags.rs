//! Reads an argument vector the way the CLIs' own flag parsers do (pflag for kubectl and helm,
//! argparse for aws, gcloud and az), so that a flag's value is never taken for a subcommand:
//! `kubectl -n delete get pods` gets pods in the namespace `delete`.
//!
//! A flag this module does not know may or may not take the next argument as its value, and
//! guessing wrong in either direction could turn `--x delete get` into a read. So an unknown
//! flag forks the reading: both ways are kept, the caller classifies each, and the worst wins.

/// What a CLI's flags look like, as far as telling values from subcommands needs.
pub(super) struct Spec {
    /// Long flags (with their dashes) that take the next argument as their value.
    pub long_valued: &'static [&'static str],
    /// Long flags known to stand alone (booleans, and pflag flags with a default value such as
    /// `--dry-run`, which never take the next argument).
    pub long_boolean: &'static [&'static str],
    /// Short flags that take a value: `-n prod`, `-nprod`, `-n=prod`.
    pub short_valued: &'static str,
    /// Short flags that stand alone and may be clustered: `-it`.
    pub short_boolean: &'static str,
}

/// One flag as read: its name with dashes (`-n`, `--namespace`) and its value, if it took one.
#[derive(Clone, Debug)]
pub(super) struct Flag<'a> {
    pub name: String,
    pub value: Option<&'a str>,
}

/// One way of reading the arguments: the positional words in order, and the flags.
#[derive(Clone, Debug, Default)]
pub(super) struct Reading<'a> {
    pub words: Vec<&'a str>,
    pub flags: Vec<Flag<'a>>,
}

impl<'a> Reading<'a> {
    /// Whether any of these flags was given.
    pub fn has(&self, names: &[&str]) -> bool {
        self.flags.iter().any(|f| names.contains(&f.name.as_str()))
    }

    /// The values given to any of these flags, in order (a flag with no value yields `None`).
    pub fn values<'s>(&'s self, names: &'s [&str]) -> impl Iterator<Item = Option<&'a str>> + 's {
        self.flags
            .iter()
            .filter(move |f| names.contains(&f.name.as_str()))
            .map(|f| f.value)
    }
}

/// All the readings of one argument vector; `truncated` when there were more than
/// [`MAX_READINGS`] and the rest were dropped (the caller then assumes the worst it can).
pub(super) struct Readings<'a> {
    pub all: Vec<Reading<'a>>,
    pub truncated: bool,
}

/// Forks kept before giving up: each unknown flag followed by an argument doubles the count.
const MAX_READINGS: usize = 64;

/// Reads `args` (the program name excluded) with `spec`. Forks stop once a reading holds
/// `depth` words: past the words that decide the command, a flag's arity changes nothing.
/// Everything after `--` is a word.
pub(super) fn readings<'a>(args: &'a [String], spec: &Spec, depth: usize) -> Readings<'a> {
    let mut done = Vec::new();
    let mut pending = vec![(0, Reading::default())];
    let mut started = 1;
    let mut truncated = false;
    while let Some((mut i, mut reading)) = pending.pop() {
        while let Some(arg) = args.get(i) {
            i += 1;
            let next = args.get(i).map(String::as_str);
            if arg == "--" {
                reading.words.extend(args[i..].iter().map(String::as_str));
                break;
            }
            let outcomes = if let Some(long) = arg.strip_prefix("--") {
                long_flag(arg, long, next, spec)
            } else if arg.len() > 1 && arg.starts_with('-') {
                short_cluster(&arg[1..], next, spec)
            } else {
                reading.words.push(arg);
                continue;
            };
            let may_fork = reading.words.len() < depth;
            let mut outcomes = outcomes.into_iter();
            let (flags, consumed) = outcomes.next().expect("a flag reads at least one way");
            for (alt_flags, alt_consumed) in outcomes.filter(|_| may_fork) {
                if started == MAX_READINGS {
                    truncated = true;
                    break;
                }
                started += 1;
                let mut alt = reading.clone();
                alt.flags.extend(alt_flags);
                pending.push((i + usize::from(alt_consumed), alt));
            }
            reading.flags.extend(flags);
            i += usize::from(consumed);
        }
        done.push(reading);
    }
    Readings {
        all: done,
        truncated,
    }
}

/// The ways one flag argument can read: its flags, and whether it took the next argument.
/// The first is the way the known flags say, with unknown ones standing alone.
type Outcome<'a> = (Vec<Flag<'a>>, bool);

/// `--name=value`, `--name value` or `--name`.
fn long_flag<'a>(
    arg: &'a str,
    long: &'a str,
    next: Option<&'a str>,
    spec: &Spec,
) -> Vec<Outcome<'a>> {
    if let Some((name, value)) = long.split_once('=') {
        return vec![(vec![flag(&arg[..2 + name.len()], Some(value))], false)];
    }
    if spec.long_valued.contains(&arg) {
        return vec![(vec![flag(arg, next)], next.is_some())];
    }
    let alone = (vec![flag(arg, None)], false);
    match next {
        Some(value) if !spec.long_boolean.contains(&arg) => {
            vec![alone, (vec![flag(arg, Some(value))], true)]
        }
        _ => vec![alone],
    }
}

/// `-it`, `-n prod`, `-nprod`, `-n=prod`: letters stand alone until one takes a value, which is
/// the rest of the argument or else the next one. An unknown letter forks both ways.
fn short_cluster<'a>(body: &'a str, next: Option<&'a str>, spec: &Spec) -> Vec<Outcome<'a>> {
    let mut outcomes = Vec::new();
    let mut flags = Vec::new();
    for (at, letter) in body.char_indices() {
        let rest = &body[at + letter.len_utf8()..];
        let takes_value = |mut flags: Vec<Flag<'a>>| {
            let name = format!("-{letter}");
            if rest.is_empty() {
                flags.push(Flag { name, value: next });
                (flags, next.is_some())
            } else {
                let value = rest.strip_prefix('=').unwrap_or(rest);
                flags.push(Flag {
                    name,
                    value: Some(value),
                });
                (flags, false)
            }
        };
        if spec.short_valued.contains(letter) {
            outcomes.insert(0, takes_value(flags));
            return outcomes;
        }
        if !spec.short_boolean.contains(letter) && (!rest.is_empty() || next.is_some()) {
            outcomes.push(takes_value(flags.clone()));
        }
        flags.push(Flag {
            name: format!("-{letter}"),
            value: None,
        });
    }
    outcomes.insert(0, (flags, false));
    outcomes
}

fn flag<'a>(name: &str, value: Option<&'a str>) -> Flag<'a> {
    Flag {
        name: name.to_owned(),
        value,
    }
}

/// The arguments before `--` that look like flags, as their bare names: `--kubeconfig=x` and
/// `-kubeconfig` both give `kubeconfig`. Every such argument counts, even one that is really
/// another flag's value: for refusing a flag, a false alarm is the safe mistake.
pub(super) fn flag_names(args: &[String]) -> impl Iterator<Item = &str> {
    args.iter()
        .take_while(|a| *a != "--")
        .filter(|a| a.len() > 1 && a.starts_with('-'))
        .map(|a| {
            let bare = a.strip_prefix("--").unwrap_or(&a[1..]);
            bare.split_once('=').map_or(bare, |(name, _)| name)
        })
}

/// The first of `names` given as a flag, by exact name (pflag and Go's flag package).
pub(super) fn find_exact(args: &[String], names: &[&'static str]) -> Option<&'static str> {
    flag_names(args).find_map(|given| names.iter().copied().find(|n| *n == given))
}

/// The first of `names` given as a flag or, after two dashes, as an abbreviation of one:
/// argparse (aws, gcloud, az) accepts any unambiguous prefix of a long flag, so `--prof x`
/// means `--profile x`.
pub(super) fn find_abbreviated(args: &[String], names: &[&'static str]) -> Option<&'static str> {
    args.iter().take_while(|a| *a != "--").find_map(|arg| {
        let (bare, abbreviable) = match arg.strip_prefix("--") {
            Some(bare) => (bare, true),
            None if arg.len() > 1 && arg.starts_with('-') => (&arg[1..], false),
            None => return None,
        };
        let given = bare.split_once('=').map_or(bare, |(name, _)| name);
        names.iter().copied().find(|name| {
            *name == given || (abbreviable && !given.is_empty() && name.starts_with(given))
        })
    })
}

/// The values given to a long flag or to an abbreviation of it (argparse), as `--name=value` or
/// `--name value`, whatever else the argument might have been.
pub(super) fn abbreviated_values<'a>(
    args: &'a [String],
    name: &'a str,
) -> impl Iterator<Item = &'a str> {
    let before_end = args.iter().take_while(|a| *a != "--").count();
    args[..before_end]
        .iter()
        .enumerate()
        .filter_map(move |(at, arg)| {
            let bare = arg.strip_prefix("--")?;
            let (given, value) = match bare.split_once('=') {
                Some((given, value)) => (given, Some(value)),
                None => (bare, args.get(at + 1).map(String::as_str)),
            };
            (!given.is_empty() && name.starts_with(given))
                .then_some(value)
                .flatten()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: Spec = Spec {
        long_valued: &["--namespace"],
        long_boolean: &["--all"],
        short_valued: "n",
        short_boolean: "it",
    };

    fn words(line: &str, depth: usize) -> Vec<Vec<String>> {
        let args: Vec<String> = line.split_whitespace().map(String::from).collect();
        let mut all: Vec<Vec<String>> = readings(&args, &SPEC, depth)
            .all
            .iter()
            .map(|r| r.words.iter().map(|w| w.to_string()).collect())
            .collect();
        all.sort();
        all
    }

    #[test]
    fn known_flags_skip_their_values() {
        for line in [
            "-n prod get pods",
            "-nprod get pods",
            "-n=prod get pods",
            "--namespace prod get pods",
            "--namespace=prod get pods",
            "-it get --all pods",
        ] {
            assert_eq!(words(line, 9), [["get", "pods"]], "{line}");
        }
        assert_eq!(words("-itn prod get", 9), [["get"]]);
        assert_eq!(words("exec -- -n x", 9), [["exec", "-n", "x"]]);
    }

    #[test]
    fn unknown_flags_fork_until_the_depth() {
        assert_eq!(
            words("--x get pods", 9),
            [vec!["get", "pods"], vec!["pods"]]
        );
        assert_eq!(words("-x get pods", 9), [vec!["get", "pods"], vec!["pods"]]);
        assert_eq!(words("-xy get", 9), [vec![], vec!["get"], vec!["get"]]);
        assert_eq!(words("get --x pods", 1), [["get", "pods"]]);
        let args: Vec<String> = (0..20).flat_map(|_| ["--x".into(), "v".into()]).collect();
        assert!(readings(&args, &SPEC, 99).truncated);
    }

    #[test]
    fn flag_names_match_exactly_or_by_prefix() {
        let args: Vec<String> = ["get", "--kube=1", "-pro", "--prof", "--", "--token"]
            .map(String::from)
            .into();
        assert_eq!(find_exact(&args, &["token", "kube"]), Some("kube"));
        assert_eq!(find_abbreviated(&args, &["profile"]), Some("profile"));
        assert_eq!(find_exact(&args, &["token"]), None);
        let args: Vec<String> = ["--mo", "x", "--mode=y", "--m"].map(String::from).into();
        let values: Vec<&str> = abbreviated_values(&args, "mode").collect();
        assert_eq!(values, ["x", "y"]);
    }
}
