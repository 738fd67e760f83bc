//! kubectl (cobra and pflag): flags may come anywhere, global ones before the subcommand too
//! (`kubectl -n prod get pods`), as `-n prod`, `-nprod`, `-n=prod`, `--namespace=prod`, and
//! booleans cluster (`-it`).

use super::flags::{self, find_exact, Reading, Spec};
use super::{destroys, not_a_known_read, only_reads, quote, worst_reading, Classification};

#[rustfmt::skip]
const SPEC: Spec = Spec {
    long_valued: &[
        "--namespace", "--context", "--cluster", "--user", "--request-timeout", "--cache-dir",
        "--certificate-authority", "--tls-server-name", "--profile", "--profile-output",
        "--log-dir", "--log-file", "--vmodule", "--output", "--selector", "--field-selector",
        "--filename", "--kustomize", "--container", "--sort-by", "--label-columns", "--template",
        "--since", "--since-time", "--tail", "--limit-bytes", "--timeout", "--for", "--image",
        "--replicas", "--type", "--port", "--target-port", "--grace-period", "--patch",
        "--patch-file", "--chunk-size", "--field-manager", "--subresource", "--raw",
        "--resource-version", "--overrides", "--restart", "--from-literal", "--from-file",
        "--from-env-file", "--to-revision", "--revision", "--min", "--max", "--cpu-percent",
        "--output-directory", "--namespaces", "--max-log-requests", "--api-group", "--verb",
        "--resource", "--role", "--clusterrole", "--serviceaccount", "--group", "--env",
    ],
    long_boolean: &[
        "--all-namespaces", "--all", "--watch", "--watch-only", "--show-labels", "--no-headers",
        "--show-kind", "--show-managed-fields", "--ignore-not-found", "--insecure-skip-tls-verify",
        "--match-server-version", "--warnings-as-errors", "--disable-compression", "--stdin",
        "--tty", "--quiet", "--previous", "--follow", "--timestamps", "--prefix",
        "--ignore-errors", "--all-containers", "--recursive", "--force", "--now", "--wait",
        "--dry-run", "--cascade", "--prune", "--overwrite", "--local", "--server-side",
        "--force-conflicts", "--validate", "--ignore-daemonsets", "--delete-emptydir-data",
        "--disable-eviction", "--flatten", "--minify", "--list", "--help", "--no-match",
    ],
    short_valued: "nolfckLv",
    short_boolean: "itAwRqh",
};

/// Flags that would swap in other credentials, another identity, another API server, or a
/// preferences file (kuberc) whose defaults and aliases this gate never sees.
const FORBIDDEN_FLAGS: &[(&str, &str)] = &[
    ("kubeconfig", "the node supplies the cluster's credentials"),
    ("token", "the node supplies the cluster's credentials"),
    ("username", "the node supplies the cluster's credentials"),
    ("password", "the node supplies the cluster's credentials"),
    (
        "client-certificate",
        "the node supplies the cluster's credentials",
    ),
    ("client-key", "the node supplies the cluster's credentials"),
    ("as", "impersonation acts as another identity"),
    ("as-group", "impersonation acts as another identity"),
    ("as-uid", "impersonation acts as another identity"),
    ("server", "it points kubectl at another API server"),
    ("kuberc", "its preferences can change what commands do"),
];

/// Subcommands that only read, whatever follows them.
#[rustfmt::skip]
const READS: &[&str] = &[
    "describe", "logs", "top", "explain", "api-resources", "api-versions", "cluster-info",
    "version", "events", "diff", "wait", "kustomize", "completion", "options", "help",
];

/// `get --raw` paths that only report health (these with their sub-checks), and then those that
/// report version, metrics and API discovery: any other raw path may be a secret or a proxy
/// into a pod.
const RAW_HEALTH: &[&str] = &["/healthz", "/livez", "/readyz"];
const RAW_READS: &[&str] = &["/version", "/metrics", "/api", "/apis"];

pub(super) fn classify(args: &[String]) -> Classification {
    if let Some(refused) = forbidden_flag(args) {
        return refused;
    }
    // `get` shows secrets only for some resource words, so every word counts.
    worst_reading(flags::readings(args, &SPEC, usize::MAX), |r| {
        by_command(args, r)
    })
}

fn forbidden_flag(args: &[String]) -> Option<Classification> {
    let names: Vec<&str> = FORBIDDEN_FLAGS.iter().map(|(name, _)| *name).collect();
    if let Some(name) = names.iter().find(|n| find_exact(args, &[n]).is_some()) {
        let why = FORBIDDEN_FLAGS
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, why)| why);
        return Some(Classification::forbidden(format!(
            "`--{name}` is refused: {}",
            why.expect("the name came from the table")
        )));
    }
    short_server(args).then(|| {
        Classification::forbidden("`-s` is refused: it points kubectl at another API server")
    })
}

/// Whether `-s` (`--server`) hides in a cluster of short flags before `--`. Letters are read
/// until one that takes a value; past an unknown letter `s` still counts, to be safe.
fn short_server(args: &[String]) -> bool {
    args.iter()
        .take_while(|a| *a != "--")
        .filter_map(|a| a.strip_prefix('-'))
        .filter(|body| !body.is_empty() && !body.starts_with('-'))
        .any(|body| {
            body.chars()
                .take_while(|c| !SPEC.short_valued.contains(*c))
                .any(|c| c == 's')
        })
}

fn by_command(args: &[String], r: &Reading) -> Classification {
    let Some((&verb, rest)) = r.words.split_first() else {
        return Classification::read("`kubectl` without a subcommand prints help");
    };
    let sub = rest.first().copied();
    match (verb, sub) {
        ("get", _) => get(r, rest),
        _ if READS.contains(&verb) => only_reads("kubectl", &[verb]),
        ("auth", Some(s @ ("can-i" | "whoami"))) => only_reads("kubectl", &[verb, s]),
        ("rollout", Some(s @ ("status" | "history"))) => only_reads("kubectl", &[verb, s]),
        ("apply", Some(s @ "view-last-applied")) => only_reads("kubectl", &[verb, s]),
        ("config", _) => config(args, sub),
        ("delete" | "drain", _) => destroys("kubectl", &[verb]),
        ("apply", _) if r.has(&["--prune"]) => Classification::destructive(
            "`kubectl apply --prune` deletes resources missing from the manifests",
        ),
        ("apply" | "replace", _) if r.has(&["--force"]) => Classification::destructive(format!(
            "`kubectl {verb} --force` deletes and recreates resources"
        )),
        ("proxy" | "port-forward", _) => Classification::forbidden(format!(
            "`kubectl {verb}` is refused: it opens a listener on the node"
        )),
        ("plugin", _) => Classification::forbidden(
            "`kubectl plugin` is refused: plugins are programs on the node",
        ),
        ("auth" | "rollout" | "certificate" | "create" | "set" | "apply", Some(s)) => {
            not_a_known_read("kubectl", &[verb, s])
        }
        // Anything else, an unknown word too (kubectl runs `kubectl-<word>` plugins).
        _ => not_a_known_read("kubectl", &[verb]),
    }
}

/// `get` reads, but a full output format of secrets prints their values, and a raw path may be
/// anything.
fn get(r: &Reading, resources: &[&str]) -> Classification {
    if let Some(path) = r.values(&["--raw"]).last() {
        let path = path.unwrap_or("");
        let bare = path.split(['?', '#']).next().unwrap_or("");
        // kubectl cleans the path (`/livez/../api/...`), and the server decodes `%` escapes.
        let plain = !bare.contains("..") && !bare.contains('%');
        let health = plain
            && RAW_HEALTH.iter().any(|p| {
                bare.strip_prefix(p)
                    .is_some_and(|tail| tail.is_empty() || tail.starts_with('/'))
            });
        return if health || RAW_READS.contains(&bare) {
            Classification::read("`kubectl get --raw` of a health or discovery path only reads")
        } else {
            Classification::write("`kubectl get --raw` can reach any API path, secrets included")
        };
    }
    let names_secrets = resources.iter().any(|arg| {
        arg.split(',').any(|item| {
            let kind = item.split('/').next().unwrap_or("");
            let kind = kind.split('.').next().unwrap_or("").to_ascii_lowercase();
            kind == "secret" || kind == "secrets"
        })
    });
    let from_files = r.has(&["-f", "--filename", "-k", "--kustomize"]);
    let full_output = r.has(&["--template"])
        || r.values(&["-o", "--output"]).any(|format| {
            let format = format.unwrap_or("").to_ascii_lowercase();
            !matches!(format.as_str(), "" | "wide" | "name")
        });
    if full_output && (names_secrets || from_files) {
        return Classification::write(
            "`kubectl get` of secrets in a full output format prints their values",
        );
    }
    only_reads("kubectl", &["get"])
}

/// `config`: a few subcommands read the kubeconfig; the rest edit it, and the node supplies it.
fn config(args: &[String], sub: Option<&str>) -> Classification {
    match sub {
        None => Classification::read("`kubectl config` without a subcommand prints help"),
        Some("view") => match find_exact(args, &["raw", "flatten"]) {
            Some(flag) => Classification::forbidden(format!(
                "`kubectl config view --{flag}` is refused: it prints the cluster's credentials"
            )),
            None => only_reads("kubectl", &["config", "view"]),
        },
        Some(s @ ("get-contexts" | "current-context" | "get-clusters" | "get-users")) => {
            only_reads("kubectl", &["config", s])
        }
        Some(s) => Classification::forbidden(format!(
            "{} is refused: it edits the kubeconfig the node supplies",
            quote("kubectl", &["config", s])
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::check;
    use super::super::{classify, Class::*};
    use crate::classify::tests::argv;

    #[test]
    fn reads() {
        check(&[
            ("kubectl get pods", Read),
            ("kubectl get pods -o json", Read),
            ("kubectl get secrets", Read),
            ("kubectl get secrets -o wide", Read),
            ("kubectl get secret/x -o name", Read),
            ("kubectl describe secret x", Read),
            ("kubectl logs -p pod -c app --tail=10", Read),
            ("kubectl top pods -A", Read),
            ("kubectl explain pods", Read),
            ("kubectl api-resources", Read),
            ("kubectl cluster-info dump", Read),
            ("kubectl version", Read),
            ("kubectl events", Read),
            ("kubectl auth can-i delete pods", Read),
            ("kubectl auth whoami", Read),
            ("kubectl config view", Read),
            ("kubectl config get-contexts", Read),
            ("kubectl config current-context", Read),
            ("kubectl rollout status deploy/x", Read),
            ("kubectl rollout history deploy/x", Read),
            ("kubectl diff -f x.yaml", Read),
            ("kubectl get --raw=/healthz", Read),
            ("kubectl get --raw /readyz?verbose", Read),
            ("kubectl", Read),
        ]);
    }

    #[test]
    fn global_flags_before_the_subcommand() {
        check(&[
            ("kubectl -n prod get pods", Read),
            ("kubectl -n delete get pods", Read),
            ("kubectl -nprod get pods", Read),
            ("kubectl -n=prod get pods", Read),
            ("kubectl --namespace=prod delete pod x", Destructive),
            ("kubectl --namespace prod delete pod x", Destructive),
            ("kubectl --context x -v 6 get pods", Read),
            ("kubectl --request-timeout=5s get pods", Read),
            ("kubectl -it exec pod -- sh", Write),
            // An unknown flag may take `get` as its value: then `delete` runs.
            ("kubectl --bogus get delete pod", Destructive),
            ("kubectl -x get delete pod", Destructive),
            // Even when the other reading is harmless, it is not known to be a read.
            ("kubectl --bogus get pods", Write),
            ("kubectl --bogus=x get pods", Read),
            ("kubectl -- delete pod x", Destructive),
        ]);
    }

    #[test]
    fn writes() {
        check(&[
            ("kubectl exec -it pod -- sh", Write),
            ("kubectl run x --image=busybox", Write),
            ("kubectl create deployment x --image=nginx", Write),
            ("kubectl create secret generic x --from-literal=a=b", Write),
            ("kubectl apply -f x.yaml", Write),
            ("kubectl apply -f x.yaml --dry-run=client", Write),
            ("kubectl apply view-last-applied deploy/x", Read),
            ("kubectl patch deploy x -p {}", Write),
            ("kubectl edit deploy x", Write),
            ("kubectl label pod x a=b", Write),
            ("kubectl annotate pod x a=b", Write),
            ("kubectl set image deploy/x a=b", Write),
            ("kubectl scale deploy x --replicas=0", Write),
            ("kubectl cordon node1", Write),
            ("kubectl uncordon node1", Write),
            ("kubectl taint nodes node1 k=v:NoSchedule", Write),
            ("kubectl rollout undo deploy/x", Write),
            ("kubectl rollout restart deploy/x", Write),
            ("kubectl cp pod:/etc/x ./x", Write),
            ("kubectl attach pod", Write),
            ("kubectl debug pod -it --image=busybox", Write),
            ("kubectl certificate approve csr", Write),
            ("kubectl expose deploy x --port=80", Write),
            ("kubectl replace -f x.yaml", Write),
            ("kubectl foo", Write),
            // Secrets' values in full output, and raw paths that are not health or discovery.
            ("kubectl get secrets -o yaml", Write),
            ("kubectl get secret/x -ojsonpath={.data}", Write),
            ("kubectl get configmaps,secrets -o=json", Write),
            ("kubectl get secrets.v1 x --output json", Write),
            ("kubectl get secret x --template={{.data}}", Write),
            ("kubectl get -f x.yaml -o yaml", Write),
            ("kubectl get --raw /api/v1/namespaces/x/secrets", Write),
            ("kubectl get --raw=/api/v1/nodes/n/proxy/pods", Write),
            ("kubectl get --raw /healthzx", Write),
            ("kubectl get --raw /livez/../api/v1/secrets", Write),
        ]);
    }

    #[test]
    fn destructive() {
        check(&[
            ("kubectl delete pod x", Destructive),
            ("kubectl delete pod x --dry-run=server", Destructive),
            ("kubectl drain node1 --ignore-daemonsets", Destructive),
            ("kubectl replace --force -f x.yaml", Destructive),
            ("kubectl apply --prune -l a=b -f dir", Destructive),
        ]);
    }

    #[test]
    fn forbidden() {
        check(&[
            ("kubectl --kubeconfig /tmp/k get pods", Forbidden),
            ("kubectl get pods --kubeconfig=/tmp/k", Forbidden),
            ("kubectl --token abc get pods", Forbidden),
            ("kubectl get pods --username a --password b", Forbidden),
            ("kubectl get pods --as admin", Forbidden),
            ("kubectl get pods --as-group=system:masters", Forbidden),
            ("kubectl get pods --as-uid=0", Forbidden),
            ("kubectl --server https://evil get pods", Forbidden),
            ("kubectl -s https://evil get pods", Forbidden),
            ("kubectl -As=https://evil get pods", Forbidden),
            ("kubectl get pods --client-key=k", Forbidden),
            ("kubectl --kuberc /tmp/rc get pods", Forbidden),
            ("kubectl config view --raw", Forbidden),
            ("kubectl config view --flatten", Forbidden),
            ("kubectl config set-credentials x --token=y", Forbidden),
            ("kubectl config set-cluster x --server=y", Forbidden),
            ("kubectl config set-context x", Forbidden),
            ("kubectl config use-context x", Forbidden),
            ("kubectl config set users.x.token y", Forbidden),
            ("kubectl config unset users.x", Forbidden),
            ("kubectl config delete-context x", Forbidden),
            ("kubectl config rename-context a b", Forbidden),
            ("kubectl plugin list", Forbidden),
            ("kubectl proxy --port=8001", Forbidden),
            ("kubectl port-forward pod 8080:80", Forbidden),
        ]);
        // After `--` the words belong to the program run in the container.
        check(&[("kubectl exec pod -- curl --token x -s", Write)]);
    }

    #[test]
    fn reasons_name_the_command() {
        let reason = |line: &str| classify(&argv(line)).reason;
        assert_eq!(reason("kubectl -n x get pods"), "`kubectl get` only reads");
        assert_eq!(
            reason("kubectl delete pod x"),
            "`kubectl delete` destroys resources"
        );
        assert_eq!(
            reason("kubectl exec pod"),
            "`kubectl exec` is not a known read"
        );
        assert_eq!(
            reason("kubectl --kubeconfig=/x get pods"),
            "`--kubeconfig` is refused: the node supplies the cluster's credentials"
        );
        assert_eq!(
            reason("kubectl rollout undo x"),
            "`kubectl rollout undo` is not a known read"
        );
    }
}
