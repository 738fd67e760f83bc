//! helm (cobra and pflag, like kubectl): flags anywhere, global ones before the subcommand too
//! (`helm -n x list`).

use super::flags::{self, find_exact, Reading, Spec};
use super::{destroys, not_a_known_read, only_reads, worst_reading, Classification};

#[rustfmt::skip]
const SPEC: Spec = Spec {
    long_valued: &[
        "--namespace", "--kube-context", "--registry-config", "--repository-cache",
        "--repository-config", "--kube-ca-file", "--kube-tls-server-name", "--burst-limit",
        "--qps", "--content-cache", "--output", "--values", "--set", "--set-string", "--set-file",
        "--set-json", "--set-literal", "--version", "--repo", "--timeout", "--revision", "--max",
        "--description", "--ca-file", "--cert-file", "--key-file", "--username", "--password",
        "--selector", "--offset", "--filter", "--destination", "--untardir", "--name-template",
        "--api-versions", "--kube-version", "--show-only", "--output-dir", "--time-format",
        "--keyring", "--template", "--history-max", "--labels",
    ],
    long_boolean: &[
        "--debug", "--kube-insecure-skip-tls-verify", "--all-namespaces", "--all", "--wait",
        "--wait-for-jobs", "--atomic", "--install", "--dry-run", "--devel", "--short", "--help",
        "--create-namespace", "--reuse-values", "--reset-values", "--force", "--plain-http",
        "--insecure-skip-tls-verify", "--generate-name", "--include-crds", "--skip-crds",
        "--validate", "--keep-history", "--no-hooks", "--verify", "--untar", "--strict",
        "--uninstalled", "--failed", "--deployed", "--pending", "--superseded", "--reverse",
    ],
    short_valued: "nofl",
    short_boolean: "Aqgh",
};

/// Flags that would swap in other credentials, another identity or API server, or run a
/// program on the node (`--post-renderer`).
const FORBIDDEN_FLAGS: &[(&str, &str)] = &[
    ("kubeconfig", "the node supplies the cluster's credentials"),
    ("kube-token", "the node supplies the cluster's credentials"),
    ("kube-as-user", "impersonation acts as another identity"),
    ("kube-as-group", "impersonation acts as another identity"),
    ("kube-apiserver", "it points helm at another API server"),
    ("post-renderer", "it runs a program on the node"),
    ("post-renderer-args", "it runs a program on the node"),
];

/// Subcommands that only read (or render locally), whatever follows them.
#[rustfmt::skip]
const READS: &[&str] = &[
    "list", "ls", "status", "history", "hist", "template", "lint", "version", "env", "verify",
    "completion", "help",
];

pub(super) fn classify(args: &[String]) -> Classification {
    for (name, why) in FORBIDDEN_FLAGS {
        if find_exact(args, &[name]).is_some() {
            return Classification::forbidden(format!("`--{name}` is refused: {why}"));
        }
    }
    worst_reading(flags::readings(args, &SPEC, 2), by_command)
}

fn by_command(r: &Reading) -> Classification {
    let Some((&verb, rest)) = r.words.split_first() else {
        return Classification::read("`helm` without a subcommand prints help");
    };
    let sub = rest.first().copied();
    match (verb, sub) {
        _ if READS.contains(&verb) => only_reads("helm", &[verb]),
        ("get", Some(s @ ("all" | "values" | "manifest" | "notes" | "hooks" | "metadata")))
        | ("show" | "inspect", Some(s @ ("all" | "chart" | "readme" | "values" | "crds")))
        | ("search", Some(s @ ("hub" | "repo")))
        | ("repo", Some(s @ ("list" | "ls")))
        | ("dependency" | "dep" | "dependencies", Some(s @ ("list" | "ls"))) => {
            only_reads("helm", &[verb, s])
        }
        ("uninstall" | "delete" | "del" | "un", _) => destroys("helm", &[verb]),
        ("rollback", _) => Classification::destructive(
            "`helm rollback` replaces a release's resources with an older revision's",
        ),
        ("plugin", _) => Classification::forbidden(
            "`helm plugin` is refused: plugins are programs run on the node",
        ),
        ("registry", Some(s @ ("login" | "logout"))) => Classification::forbidden(format!(
            "`helm registry {s}` is refused: the node supplies registry credentials"
        )),
        ("get" | "show" | "inspect" | "search" | "repo" | "dependency" | "dep", Some(s)) => {
            not_a_known_read("helm", &[verb, s])
        }
        // install, upgrade, test, pull, push, package, create, and unknown words (plugins).
        _ => not_a_known_read("helm", &[verb]),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::check;
    use super::super::Class::*;

    #[test]
    fn reads() {
        check(&[
            ("helm list", Read),
            ("helm ls -A", Read),
            ("helm -n x list", Read),
            ("helm --namespace=x status rel", Read),
            ("helm history rel --max 5", Read),
            ("helm get values rel -o json", Read),
            ("helm get manifest rel", Read),
            ("helm show values bitnami/nginx", Read),
            ("helm inspect chart ./c", Read),
            ("helm search repo nginx", Read),
            ("helm template rel ./c --set a=b", Read),
            ("helm lint ./c", Read),
            ("helm version", Read),
            ("helm env", Read),
            ("helm repo list", Read),
            ("helm dependency list ./c", Read),
            ("helm verify c.tgz", Read),
            ("helm --kube-context prod -n x get all rel", Read),
        ]);
    }

    #[test]
    fn writes() {
        check(&[
            ("helm install rel ./c", Write),
            ("helm install rel ./c --dry-run", Write),
            ("helm -n x install rel ./c", Write),
            ("helm upgrade --install rel ./c", Write),
            ("helm repo add x https://x", Write),
            ("helm repo update", Write),
            ("helm repo remove x", Write),
            ("helm dependency update ./c", Write),
            ("helm dependency build ./c", Write),
            ("helm pull x/c", Write),
            ("helm fetch x/c", Write),
            ("helm push c.tgz oci://r", Write),
            ("helm package ./c", Write),
            ("helm create c", Write),
            ("helm test rel", Write),
            ("helm get secrets rel", Write),
            ("helm diff upgrade rel ./c", Write),
            // `-n` takes `list` as its value: the command is `install`.
            ("helm -n list install rel ./c", Write),
            ("helm --bogus list install rel ./c", Write),
        ]);
    }

    #[test]
    fn destructive() {
        check(&[
            ("helm uninstall rel", Destructive),
            ("helm delete rel", Destructive),
            ("helm del rel", Destructive),
            ("helm un rel", Destructive),
            ("helm -n x uninstall rel --dry-run", Destructive),
            ("helm rollback rel 1", Destructive),
        ]);
    }

    #[test]
    fn forbidden() {
        check(&[
            ("helm plugin install https://x", Forbidden),
            ("helm plugin update x", Forbidden),
            ("helm plugin uninstall x", Forbidden),
            ("helm plugin list", Forbidden),
            ("helm install rel ./c --post-renderer ./x", Forbidden),
            ("helm template rel ./c --post-renderer=./x", Forbidden),
            ("helm --kubeconfig /k list", Forbidden),
            ("helm list --kube-token=t", Forbidden),
            ("helm list --kube-as-user admin", Forbidden),
            ("helm list --kube-as-group g", Forbidden),
            ("helm list --kube-apiserver https://evil", Forbidden),
            ("helm registry login r.example", Forbidden),
            ("helm registry logout r.example", Forbidden),
        ]);
    }
}
