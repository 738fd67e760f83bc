//! terraform (Go's flag package under mitchellh/cli): the subcommand is the first argument
//! that is not a flag, a nested one (`state rm`) the argument right after it, and flags are
//! `-name`, `-name=value` or `--name`.
//!
//! `plan` counts as a read at this gate although it runs providers, which call the cloud's read
//! APIs only. `output` and `show` count as reads too, although with `-json` they print values
//! marked sensitive: they show what the state holds, which the session's own tools keep.

use super::flags::flag_names;
use super::{destroys, not_a_known_read, only_reads, quote, Classification};

/// Subcommands that only read, whatever follows them.
#[rustfmt::skip]
const READS: &[&str] = &[
    "plan", "show", "output", "validate", "version", "graph", "modules", "help",
];

pub(super) fn classify(args: &[String]) -> Classification {
    if let Some(refused) = forbidden_flag(args) {
        return refused;
    }
    let Some(at) = args
        .iter()
        .position(|a| !a.is_empty() && !a.starts_with('-'))
    else {
        return Classification::read("`terraform` without a subcommand prints help or its version");
    };
    let cmd = args[at].as_str();
    let sub = args
        .get(at + 1)
        .map(String::as_str)
        .filter(|a| !a.is_empty() && !a.starts_with('-') && !a.contains(' '));
    let after = &args[at + 1..];
    match (cmd, sub) {
        _ if READS.contains(&cmd) => only_reads("terraform", &[cmd]),
        ("state", Some(s @ ("list" | "show" | "identities")))
        | ("workspace", Some(s @ ("list" | "show")))
        | ("providers", Some(s @ "schema"))
        | ("metadata", Some(s @ "functions")) => only_reads("terraform", &[cmd, s]),
        ("state" | "workspace" | "providers", None) => only_reads("terraform", &[cmd]),
        ("fmt", _) if fmt_only_checks(after) => {
            Classification::read("`terraform fmt -check` only reads")
        }
        ("destroy" | "force-unlock", _) => destroys("terraform", &[cmd]),
        ("apply", _) if destroy_flag(after) => {
            Classification::destructive("`terraform apply -destroy` destroys resources")
        }
        ("state", Some(s @ "rm")) | ("workspace", Some(s @ "delete")) => {
            destroys("terraform", &[cmd, s])
        }
        ("state", Some(s @ "push")) => Classification::forbidden(format!(
            "{} is refused: it replaces the stored state",
            quote("terraform", &[cmd, s])
        )),
        ("state", Some(s @ "pull")) => Classification::write(format!(
            "{} prints the whole state, secrets included: not a plain read",
            quote("terraform", &[cmd, s])
        )),
        ("console", _) => {
            Classification::forbidden("`terraform console` is refused: it is interactive")
        }
        ("login" | "logout", _) => Classification::forbidden(format!(
            "{} is refused: the node supplies the credentials",
            quote("terraform", &[cmd])
        )),
        ("state" | "workspace" | "providers" | "metadata", Some(s)) => {
            not_a_known_read("terraform", &[cmd, s])
        }
        // apply, import, init, get, taint, untaint, refresh, test, fmt, and unknown words.
        _ => not_a_known_read("terraform", &[cmd]),
    }
}

/// `-chdir` leaves the session's fixed directory; `-plugin-dir` loads providers from another.
/// Any spelling counts, anywhere.
fn forbidden_flag(args: &[String]) -> Option<Classification> {
    flag_names(args).find_map(|name| match name {
        "chdir" => Some(Classification::forbidden(
            "`-chdir` is refused: the session's directory is fixed",
        )),
        "plugin-dir" => Some(Classification::forbidden(
            "`-plugin-dir` is refused: providers come from the node's configuration",
        )),
        _ => None,
    })
}

/// The values Go's flag package would give this boolean flag: `-name` and `--name` are true,
/// `=value` is false for its false spellings.
fn bool_flag<'a>(args: &'a [String], name: &'a str) -> impl Iterator<Item = bool> + 'a {
    args.iter()
        .take_while(|a| *a != "--")
        .filter_map(move |arg| {
            let bare = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-'))?;
            let (given, value) = bare.split_once('=').unwrap_or((bare, "true"));
            (given == name).then_some(!matches!(
                value,
                "0" | "f" | "F" | "false" | "FALSE" | "False"
            ))
        })
}

fn destroy_flag(args: &[String]) -> bool {
    bool_flag(args, "destroy").any(|on| on)
}

/// `fmt -check` (or `-write=false`) reports without rewriting files.
fn fmt_only_checks(args: &[String]) -> bool {
    bool_flag(args, "check").any(|on| on) || bool_flag(args, "write").any(|on| !on)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{argv, check};
    use super::super::{classify, Class::*};

    #[test]
    fn reads() {
        check(&[
            ("terraform plan", Read),
            ("terraform plan -out=tf.plan -var x=1", Read),
            ("terraform plan -destroy", Read),
            ("terraform show -json", Read),
            ("terraform output -json", Read),
            ("terraform state list", Read),
            ("terraform state show aws_instance.x", Read),
            ("terraform validate", Read),
            ("terraform version", Read),
            ("terraform -version", Read),
            ("terraform providers", Read),
            ("terraform providers schema -json", Read),
            ("terraform fmt -check", Read),
            ("terraform fmt -check -recursive", Read),
            ("terraform fmt -write=false", Read),
            ("terraform graph", Read),
            ("terraform workspace list", Read),
            ("terraform workspace show", Read),
            ("terraform", Read),
        ]);
    }

    #[test]
    fn writes() {
        check(&[
            ("terraform apply", Write),
            ("terraform apply -auto-approve", Write),
            ("terraform apply -destroy=false", Write),
            ("terraform import aws_instance.x i-1", Write),
            ("terraform taint aws_instance.x", Write),
            ("terraform untaint aws_instance.x", Write),
            ("terraform init", Write),
            ("terraform init -upgrade", Write),
            ("terraform fmt", Write),
            ("terraform fmt -check=false", Write),
            ("terraform refresh", Write),
            ("terraform get", Write),
            ("terraform state mv a b", Write),
            ("terraform state pull", Write),
            ("terraform workspace new x", Write),
            ("terraform workspace select x", Write),
            ("terraform providers lock", Write),
            ("terraform test", Write),
            ("terraform frobnicate", Write),
        ]);
    }

    #[test]
    fn destructive() {
        check(&[
            ("terraform destroy", Destructive),
            ("terraform destroy -auto-approve", Destructive),
            ("terraform apply -destroy", Destructive),
            ("terraform apply -auto-approve --destroy", Destructive),
            ("terraform apply -destroy=true", Destructive),
            ("terraform state rm aws_instance.x", Destructive),
            ("terraform workspace delete x", Destructive),
            ("terraform force-unlock 1234", Destructive),
        ]);
    }

    #[test]
    fn forbidden() {
        check(&[
            ("terraform -chdir=../x plan", Forbidden),
            ("terraform -chdir ../x plan", Forbidden),
            ("terraform --chdir=/ show", Forbidden),
            ("terraform plan -chdir=x", Forbidden),
            ("terraform console", Forbidden),
            ("terraform login", Forbidden),
            ("terraform logout app.terraform.io", Forbidden),
            ("terraform state push x.tfstate", Forbidden),
            ("terraform init -plugin-dir=/tmp/p", Forbidden),
        ]);
    }

    #[test]
    fn reasons() {
        let reason = |line: &str| classify(&argv(line)).reason;
        assert_eq!(
            reason("terraform -chdir=../x plan"),
            "`-chdir` is refused: the session's directory is fixed"
        );
        assert_eq!(
            reason("terraform state rm x"),
            "`terraform state rm` destroys resources"
        );
        assert_eq!(
            reason("terraform apply -destroy"),
            "`terraform apply -destroy` destroys resources"
        );
    }
}
