//! gcloud (argparse): `gcloud [alpha|beta|preview] <group>... <command> [args]`, flags anywhere,
//! and abbreviations of long flags treated as the flag (`--acc` as `--account`).

use super::flags::{self, find_abbreviated, Reading, Spec};
use super::groups::{verb_after_unknown, Tree, Verb};
use super::{quote, worst_reading, Classification};

#[rustfmt::skip]
const SPEC: Spec = Spec {
    long_valued: &[
        "--project", "--billing-project", "--format", "--flatten", "--verbosity", "--trace-token",
        "--zone", "--region", "--filter", "--limit", "--page-size", "--sort-by", "--location",
        "--cluster", "--member", "--role", "--condition", "--service-account", "--machine-type",
        "--image", "--image-family", "--image-project", "--network", "--subnet", "--size",
        "--num-nodes", "--freshness", "--order", "--bucket", "--keyring", "--key", "--command",
        "--source", "--platform", "--instance", "--database", "--topic",
    ],
    long_boolean: &[
        "--quiet", "--help", "--log-http", "--user-output-enabled", "--no-user-output-enabled",
        "--async", "--recursive", "--all", "--internal-ip", "--dry-run", "--uri",
    ],
    short_valued: "",
    short_boolean: "qh",
};

/// Flags that pick other credentials, another identity or configuration, or read flags from a
/// file this gate never sees.
const FORBIDDEN_FLAGS: &[(&str, &str)] = &[
    ("account", "the node supplies the credentials"),
    ("access-token-file", "the node supplies the credentials"),
    (
        "credential-file-override",
        "the node supplies the credentials",
    ),
    (
        "impersonate-service-account",
        "impersonation acts as another identity",
    ),
    (
        "configuration",
        "it switches to another gcloud configuration",
    ),
    ("flags-file", "it reads flags this gate cannot see"),
];

/// Groups whose commands have a `--config` flag of their own, which elsewhere would abbreviate
/// `--configuration`.
const OWN_CONFIG_FLAG: &[&str] = &["builds", "deployment-manager"];

#[rustfmt::skip]
const TREE: Tree = Tree {
    top: &[
        "access-approval", "access-context-manager", "active-directory", "ai", "ai-platform",
        "alloydb", "anthos", "api-gateway", "apigee", "app", "artifacts", "asset", "assured",
        "batch", "beyondcorp", "bigtable", "billing", "bms", "builds", "certificate-manager",
        "composer", "compute", "container", "data-catalog", "database-migration", "dataflow",
        "datafusion", "dataplex", "dataproc", "datastore", "datastream", "deploy",
        "deployment-manager", "dns", "domains", "edge-cache", "endpoints", "essential-contacts",
        "eventarc", "filestore", "firebase", "firestore", "functions", "healthcare", "iam", "iap",
        "identity", "ids", "kms", "logging", "looker", "memcache", "metastore", "ml", "ml-engine",
        "monitoring", "netapp", "network-connectivity", "network-management", "network-security",
        "network-services", "notebooks", "org-policies", "organizations", "policy-intelligence",
        "privateca", "projects", "pubsub", "recommender", "redis", "resource-manager", "run",
        "scc", "scheduler", "secrets", "service-directory", "services", "source", "spanner",
        "sql", "storage", "tasks", "transcoder", "vmware", "workflows", "workstations",
    ],
    sub: &[
        "instances", "instance-groups", "managed", "unmanaged", "instance-templates", "disks",
        "images", "snapshots", "networks", "subnets", "firewall-rules", "routes", "routers",
        "addresses", "forwarding-rules", "backend-services", "backend-buckets", "target-pools",
        "target-http-proxies", "target-https-proxies", "ssl-certificates", "ssl-policies",
        "health-checks", "url-maps", "zones", "regions", "machine-types", "disk-types",
        "operations", "project-info", "accelerator-types", "reservations", "commitments",
        "resource-policies", "security-policies", "rules", "vpn-tunnels", "vpn-gateways",
        "interconnects", "attachments", "peerings", "clusters", "node-pools", "fleet", "hub",
        "memberships", "service-accounts", "keys", "roles", "policies", "buckets", "objects",
        "topics", "subscriptions", "schemas", "services", "revisions", "jobs", "executions",
        "domain-mappings", "logs", "sinks", "metrics", "views", "channels", "dashboards",
        "uptime", "record-sets", "managed-zones", "keyrings", "locations", "versions",
        "databases", "users", "backups", "ssl", "client-certs", "server-ca-certs", "flags",
        "tiers", "repositories", "docker", "packages", "tags", "files", "triggers",
        "connections", "worker-pools", "folders", "accounts", "budgets", "queues", "conditions",
        "notification-channels", "autoscaling-policies", "workflow-templates", "batches",
        "sessions", "environments", "runtimes", "certificates", "secrets", "groups", "members",
        "workers", "indexes", "endpoints", "models", "gateways", "meshes",
    ],
};

pub(super) fn classify(args: &[String]) -> Classification {
    worst_reading(flags::readings(args, &SPEC, 8), |r| by_command(args, r))
}

fn by_command(args: &[String], r: &Reading) -> Classification {
    let mut words = &r.words[..];
    if let Some(("alpha" | "beta" | "preview", rest)) = words.split_first().map(|(w, r)| (*w, r)) {
        words = rest;
    }
    if let Some(refused) = forbidden_flag(args, words) {
        return refused;
    }
    let refused = |n: usize, why: &str| {
        Classification::forbidden(format!(
            "{} is refused: {why}",
            quote("gcloud", &words[..n])
        ))
    };
    match words {
        [] | ["auth" | "config" | "components"] => {
            Classification::read("`gcloud` without a command prints help")
        }
        ["info" | "version" | "help" | "topic" | "cheat-sheet", ..] => reads(&words[..1]),
        ["auth", "list", ..]
        | ["config", "list" | "get" | "get-value", ..]
        | ["components", "list", ..] => reads(&words[..2]),
        ["config", "configurations", "list" | "describe", ..] => reads(&words[..3]),
        ["auth", ..] => refused(2, "it handles the node's credentials"),
        ["config", ..] => refused(2, "it changes the node's gcloud configuration"),
        ["components", ..] => refused(2, "it installs code on the node"),
        ["init", ..] => refused(1, "it signs in and rewrites the node's configuration"),
        _ => by_tree(args, words),
    }
}

fn reads(words: &[&str]) -> Classification {
    Classification::read(format!("{} only reads", quote("gcloud", words)))
}

fn forbidden_flag(args: &[String], words: &[&str]) -> Option<Classification> {
    let own_config = words.first().is_some_and(|w| OWN_CONFIG_FLAG.contains(w));
    let args: Vec<String> = args
        .iter()
        .filter(|a| !(own_config && (*a == "--config" || a.starts_with("--config="))))
        .cloned()
        .collect();
    let names: Vec<&'static str> = FORBIDDEN_FLAGS.iter().map(|(n, _)| *n).collect();
    let name = find_abbreviated(&args, &names)?;
    let (_, why) = FORBIDDEN_FLAGS.iter().find(|(n, _)| *n == name)?;
    Some(Classification::forbidden(format!(
        "`--{name}` is refused: {why}"
    )))
}

fn by_tree(args: &[String], words: &[&str]) -> Classification {
    let split = TREE.split(words);
    let Some(command) = split.command else {
        return Classification::read(format!(
            "{} without a command prints help",
            quote("gcloud", split.groups)
        ));
    };
    let upto = |n: usize| &words[..split.groups.len() + 1 + n];
    let verb_of = |word: &str| verb(args, split.groups, word);
    let (shown, verb) = match verb_of(command) {
        Some(v) => (upto(0), v),
        None => match verb_after_unknown(split.rest, verb_of) {
            Some((n, Verb::Destructive)) => (upto(n), Verb::Destructive),
            _ => (upto(0), Verb::Write),
        },
    };
    let cmd = quote("gcloud", shown);
    match verb {
        Verb::Read => Classification::read(format!("{cmd} only reads")),
        Verb::Write => Classification::write(format!("{cmd} is not a known read")),
        Verb::Destructive => Classification::destructive(format!("{cmd} destroys resources")),
        Verb::Forbidden(why) => Classification::forbidden(format!("{cmd} is refused: {why}")),
    }
}

/// What a command word does under these groups; `None` for a word the tables do not know.
fn verb(args: &[String], groups: &[&str], word: &str) -> Option<Verb> {
    let under = |group: &str| groups.first() == Some(&group);
    let read = match word {
        "list" | "describe" | "get-iam-policy" => true,
        "read" | "tail" => groups == ["logging"] || groups.last() == Some(&"logs"),
        "ls" | "du" => groups == ["storage"],
        _ => word.starts_with("list-"),
    };
    if read && !groups.is_empty() {
        return Some(Verb::Read);
    }
    let deletes_unmatched = || find_abbreviated(args, &["delete-unmatched-destination-objects"]);
    let destroys = matches!(
        word,
        "delete"
            | "reset"
            | "stop"
            | "suspend"
            | "rm"
            | "mv"
            | "disable"
            | "abandon-instances"
            | "recreate-instances"
    ) || ["delete-", "remove-", "detach-"]
        .iter()
        .any(|p| word.starts_with(p))
        || (word == "rsync" && under("storage") && deletes_unmatched().is_some());
    if destroys {
        return Some(Verb::Destructive);
    }
    if word == "get-credentials" {
        return Some(Verb::Forbidden(
            "it writes a kubeconfig, and the node supplies the cluster's credentials",
        ));
    }
    let writes = matches!(
        word,
        "create"
            | "update"
            | "patch"
            | "deploy"
            | "ssh"
            | "scp"
            | "start"
            | "resume"
            | "import"
            | "export"
            | "enable"
            | "apply"
            | "run"
            | "execute"
            | "submit"
            | "publish"
            | "pull"
            | "cp"
            | "rsync"
            | "resize"
            | "call"
            | "access"
            | "copy"
            | "rollback"
            | "restore"
            | "clone"
            | "upgrade"
            | "cancel"
            | "connect"
            | "cat"
    ) || [
        "create-", "update-", "set-", "add-", "get-", "sign-", "attach-",
    ]
    .iter()
    .any(|p| word.starts_with(p));
    writes.then_some(Verb::Write)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{argv, check};
    use super::super::{classify, Class::*};

    #[test]
    fn reads() {
        check(&[
            ("gcloud compute instances list", Read),
            ("gcloud compute instances describe vm --zone z", Read),
            ("gcloud --project p compute instances list", Read),
            (
                "gcloud compute --project=p instances list --format json",
                Read,
            ),
            ("gcloud beta container clusters list", Read),
            ("gcloud container node-pools describe np --cluster c", Read),
            ("gcloud projects get-iam-policy p", Read),
            ("gcloud projects list", Read),
            ("gcloud logging read severity>=ERROR --limit 10", Read),
            ("gcloud functions logs read f", Read),
            ("gcloud container images list-tags gcr.io/x", Read),
            ("gcloud storage ls gs://b", Read),
            ("gcloud config list", Read),
            ("gcloud config get-value project", Read),
            ("gcloud info", Read),
            ("gcloud version", Read),
            ("gcloud auth list", Read),
            ("gcloud -q compute zones list", Read),
            ("gcloud", Read),
        ]);
    }

    #[test]
    fn writes() {
        check(&[
            (
                "gcloud projects add-iam-policy-binding p --member m --role r",
                Write,
            ),
            ("gcloud projects set-iam-policy p policy.json", Write),
            ("gcloud compute instances create vm", Write),
            ("gcloud compute ssh vm --command ls", Write),
            ("gcloud compute ssh list", Write),
            ("gcloud run deploy list --image i", Write),
            ("gcloud workflows run list", Write),
            ("gcloud secrets versions access latest --secret s", Write),
            ("gcloud container clusters resize c --num-nodes 0", Write),
            ("gcloud storage cp a gs://b", Write),
            ("gcloud storage cat gs://b/k", Write),
            ("gcloud compute instances get-serial-port-output vm", Write),
            ("gcloud newgroup list", Write),
            ("gcloud compute newthing list", Write),
            ("gcloud list", Write),
            // An unknown flag may take `compute` as its value.
            ("gcloud --bogus compute instances list", Write),
            ("gcloud builds submit --config cloudbuild.yaml", Write),
        ]);
    }

    #[test]
    fn destructive() {
        check(&[
            ("gcloud compute instances delete vm", Destructive),
            ("gcloud compute instances delete list", Destructive),
            ("gcloud --project p compute instances stop vm", Destructive),
            ("gcloud compute instances reset vm", Destructive),
            (
                "gcloud projects remove-iam-policy-binding p --member m --role r",
                Destructive,
            ),
            (
                "gcloud compute instance-groups managed delete-instances g",
                Destructive,
            ),
            ("gcloud storage rm gs://b/k", Destructive),
            (
                "gcloud storage rsync a gs://b --delete-unmatched-destination-objects",
                Destructive,
            ),
            ("gcloud services disable x", Destructive),
            ("gcloud workstations configs delete c", Destructive),
            ("gcloud alpha compute instances delete vm", Destructive),
        ]);
    }

    #[test]
    fn forbidden() {
        check(&[
            ("gcloud auth print-access-token", Forbidden),
            ("gcloud auth print-identity-token", Forbidden),
            ("gcloud auth login", Forbidden),
            (
                "gcloud auth activate-service-account --key-file k",
                Forbidden,
            ),
            ("gcloud auth application-default login", Forbidden),
            (
                "gcloud auth application-default print-access-token",
                Forbidden,
            ),
            ("gcloud config set project p", Forbidden),
            (
                "gcloud config set api_endpoint_overrides/compute https://evil",
                Forbidden,
            ),
            ("gcloud config configurations activate other", Forbidden),
            ("gcloud components install kubectl", Forbidden),
            ("gcloud init", Forbidden),
            ("gcloud container clusters get-credentials c", Forbidden),
            (
                "gcloud compute instances list --access-token-file t",
                Forbidden,
            ),
            (
                "gcloud compute instances list --impersonate-service-account sa",
                Forbidden,
            ),
            ("gcloud --account=other compute instances list", Forbidden),
            ("gcloud compute instances list --acc other", Forbidden),
            (
                "gcloud compute instances list --configuration other",
                Forbidden,
            ),
            ("gcloud compute instances list --config other", Forbidden),
            (
                "gcloud compute instances list --flags-file f.yaml",
                Forbidden,
            ),
        ]);
    }

    #[test]
    fn reasons_name_the_command() {
        let reason = |line: &str| classify(&argv(line)).reason;
        assert_eq!(
            reason("gcloud projects add-iam-policy-binding p --member m"),
            "`gcloud projects add-iam-policy-binding` is not a known read"
        );
        assert_eq!(
            reason("gcloud --project p compute instances list"),
            "`gcloud compute instances list` only reads"
        );
        assert_eq!(
            reason("gcloud auth print-access-token"),
            "`gcloud auth print-access-token` is refused: it handles the node's credentials"
        );
    }
}
