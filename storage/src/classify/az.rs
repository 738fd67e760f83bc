//! az (knack on argparse): `az <group>... <command> [--args]`, commands take named arguments
//! almost only, and abbreviations of long flags are accepted.

use super::flags::{self, abbreviated_values, Reading, Spec};
use super::groups::{verb_after_unknown, Tree, Verb};
use super::{quote, worst_reading, Classification};

#[rustfmt::skip]
const SPEC: Spec = Spec {
    long_valued: &[
        "--subscription", "--output", "--query", "--resource-group", "--name", "--location",
        "--ids", "--tags", "--vnet-name", "--namespace-name", "--vault-name", "--account-name",
        "--cluster-name", "--server", "--database-name", "--workspace", "--analytics-query",
        "--mode", "--template-file", "--parameters", "--image", "--size", "--sku",
        "--action-on-unmanage", "--scope", "--assignee", "--role", "--container-name",
    ],
    long_boolean: &[
        "--debug", "--verbose", "--only-show-errors", "--help", "--yes", "--no-wait", "--all",
    ],
    short_valued: "gnlos",
    short_boolean: "hy",
};

#[rustfmt::skip]
const TREE: Tree = Tree {
    top: &[
        "account", "acr", "ad", "advisor", "afd", "aks", "apim", "appconfig", "appservice",
        "aro", "backup", "batch", "bicep", "billing", "bot", "cache", "cdn", "cloud",
        "cognitiveservices", "consumption", "container", "containerapp", "cosmosdb",
        "deployment", "disk", "eventgrid", "eventhubs", "extension", "feature", "functionapp",
        "graph", "group", "hdinsight", "identity", "image", "iot", "keyvault", "lock",
        "logicapp", "managedapp", "maps", "mariadb", "monitor", "mysql", "netappfiles", "network",
        "policy", "postgres", "provider", "redis", "relay", "resource", "role", "search",
        "security", "servicebus", "sig", "signalr", "snapshot", "sql", "sshkey", "stack",
        "staticwebapp", "storage", "synapse", "tag", "vm", "vmss", "webapp", "webpubsub",
    ],
    sub: &[
        "account", "vnet", "subnet", "nsg", "rule", "nic", "public-ip", "lb", "application-gateway",
        "route-table", "route", "private-endpoint", "dns", "zone", "record-set", "firewall",
        "vpn-gateway", "express-route", "peering", "nodepool", "server", "db", "flexible-server",
        "database", "container", "blob", "share", "queue", "table", "file", "directory", "fs",
        "vault", "secret", "key", "certificate", "assignment", "definition", "group", "sub",
        "member", "user", "sp", "app", "identity", "credential", "registry", "repository",
        "manifest", "task", "webhook", "replication", "plan", "config", "appsettings",
        "connection-string", "deployment", "slot", "function", "keys", "log-analytics",
        "workspace", "metrics", "activity-log", "diagnostic-settings", "alert", "action-group",
        "app-insights", "component", "autoscale", "profile", "endpoint", "origin",
        "origin-group", "extension", "image", "disk", "snapshot", "availability-set",
        "run-command", "env", "revision", "replica", "job", "namespace", "authorization-rule",
        "eventhub", "consumer-group", "topic", "subscription", "cluster", "hub",
        "device-identity", "policy", "lock", "operation", "registration", "admin-key",
        "query-key", "api-key", "kv", "mg", "tenant", "cosmosdb", "sql", "mongodb",
    ],
};

/// Group words under which `list` and `show` print keys, secrets or connection strings.
#[rustfmt::skip]
const SECRET_GROUPS: &[&str] = &[
    "secret", "key", "keys", "credential", "connection-string", "appsettings", "admin-key",
    "query-key", "api-key", "kv",
];

#[rustfmt::skip]
const READS: &[&str] = &[
    "list", "show", "list-locations", "list-sizes", "list-skus", "list-usage",
    "list-ip-addresses", "list-vm-resize-options", "get-instance-view", "get-versions",
    "get-upgrades", "wait",
];

pub(super) fn classify(args: &[String]) -> Classification {
    worst_reading(flags::readings(args, &SPEC, 8), |r| by_command(args, r))
}

fn by_command(args: &[String], r: &Reading) -> Classification {
    let words = &r.words[..];
    let refused = |n: usize, why: &str| {
        Classification::forbidden(format!("{} is refused: {why}", quote("az", &words[..n])))
    };
    match words {
        [] | ["config"] => Classification::read("`az` without a command prints help"),
        ["version" | "help", ..] => {
            Classification::read(format!("{} only reads", quote("az", &words[..1])))
        }
        ["config", "get", ..] => Classification::read("`az config get` only reads"),
        ["login" | "logout" | "configure" | "upgrade", ..] => {
            refused(1, "the node supplies the credentials and configuration")
        }
        ["account", "get-access-token" | "clear", ..] => {
            refused(2, "the node supplies the credentials")
        }
        ["config", ..] => refused(2, "it changes the node's az configuration"),
        ["cloud", "set" | "register" | "update" | "unregister", ..] => {
            refused(2, "it points az at other endpoints")
        }
        ["extension", "add" | "update", ..] | ["bicep", "install" | "upgrade", ..] => {
            refused(2, "it installs code on the node")
        }
        _ => by_tree(args, words),
    }
}

fn by_tree(args: &[String], words: &[&str]) -> Classification {
    let split = TREE.split(words);
    let Some(command) = split.command else {
        return Classification::read(format!(
            "{} without a command prints help",
            quote("az", split.groups)
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
    let cmd = quote("az", shown);
    match verb {
        Verb::Read if split.groups.iter().any(|g| SECRET_GROUPS.contains(g)) => {
            Classification::write(format!("{cmd} may print keys or secrets: not a plain read"))
        }
        Verb::Read => Classification::read(format!("{cmd} only reads")),
        Verb::Write => Classification::write(format!("{cmd} is not a known read")),
        Verb::Destructive => Classification::destructive(format!("{cmd} destroys resources")),
        Verb::Forbidden(why) => Classification::forbidden(format!("{cmd} is refused: {why}")),
    }
}

/// What a command word does under these groups; `None` for a word the tables do not know.
fn verb(args: &[String], groups: &[&str], word: &str) -> Option<Verb> {
    let under = |group: &str| groups.contains(&group);
    let query = word == "query" && matches!(groups.first(), Some(&("monitor" | "graph")));
    if (READS.contains(&word) || query) && !groups.is_empty() {
        return Some(Verb::Read);
    }
    let value_has = |flag: &str, text: &str| {
        abbreviated_values(args, flag).any(|v| v.to_ascii_lowercase().contains(text))
    };
    // A complete-mode deployment deletes what its template lacks; a stack may delete what it
    // stops managing; `storage ... sync` deletes destination blobs missing from the source.
    let destroys = matches!(
        word,
        "delete" | "purge" | "stop" | "deallocate" | "restart" | "remove" | "reimage"
    ) || word.starts_with("delete-")
        || (word == "create" && under("deployment") && value_has("mode", "complete"))
        || (under("stack") && value_has("action-on-unmanage", "delete"))
        || (word == "sync" && under("storage"));
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
            | "set"
            | "add"
            | "start"
            | "import"
            | "export"
            | "invoke"
            | "run"
            | "build"
            | "deploy"
            | "up"
            | "assign"
            | "upload"
            | "download"
            | "copy"
            | "sync"
            | "rest"
            | "find"
            | "resize"
            | "redeploy"
            | "swap"
            | "scale"
            | "upgrade"
            | "attach"
            | "detach"
            | "login"
    ) || [
        "create-",
        "update-",
        "set-",
        "add-",
        "list-",
        "get-",
        "show-",
        "generate-",
    ]
    .iter()
    .any(|p| word.starts_with(p));
    writes.then_some(Verb::Write)
}

#[cfg(test)]
mod tests {
    use super::super::tests::check;
    use super::super::Class::*;

    #[test]
    fn reads() {
        check(&[
            ("az vm list", Read),
            ("az vm show -g rg -n vm", Read),
            ("az --subscription s vm list -o table", Read),
            ("az group list --query [].name", Read),
            ("az account show", Read),
            ("az account list", Read),
            ("az account list-locations", Read),
            ("az aks show -g rg -n c", Read),
            ("az aks nodepool list --cluster-name c -g rg", Read),
            ("az network vnet subnet list -g rg --vnet-name v", Read),
            ("az role assignment list --assignee a", Read),
            (
                "az monitor log-analytics query -w ws --analytics-query q",
                Read,
            ),
            ("az monitor activity-log list", Read),
            ("az graph query -q q", Read),
            ("az vm list-sizes -l westeurope", Read),
            ("az keyvault list", Read),
            ("az version", Read),
            ("az extension list", Read),
            ("az", Read),
        ]);
    }

    #[test]
    fn writes() {
        check(&[
            ("az vm create -g rg -n vm --image Ubuntu2204", Write),
            ("az account set --subscription s", Write),
            ("az role assignment create --assignee a --role Owner", Write),
            ("az ad sp create-for-rbac --name x", Write),
            (
                "az vm run-command invoke -g rg -n vm --command-id RunShellScript",
                Write,
            ),
            (
                "az deployment group create -g rg --template-file t.json",
                Write,
            ),
            ("az rest --method get --url https://x", Write),
            ("az storage account keys list -n acct", Write),
            ("az storage account show-connection-string -n acct", Write),
            ("az keyvault secret show --vault-name v -n s", Write),
            ("az webapp config appsettings list -g rg -n app", Write),
            ("az acr credential show -n r", Write),
            ("az cosmosdb keys list -g rg -n db", Write),
            ("az acr run list", Write),
            ("az newgroup list", Write),
            ("az --bogus vm list", Write),
        ]);
    }

    #[test]
    fn destructive() {
        check(&[
            ("az vm delete -g rg -n vm --yes", Destructive),
            ("az group delete -n rg", Destructive),
            ("az vm stop -g rg -n vm", Destructive),
            ("az vm deallocate -g rg -n vm", Destructive),
            ("az vm restart -g rg -n vm", Destructive),
            ("az role assignment delete --assignee a", Destructive),
            ("az keyvault secret purge --vault-name v -n s", Destructive),
            ("az storage blob delete-batch -s c", Destructive),
            (
                "az deployment group create -g rg --mode Complete -f t.json",
                Destructive,
            ),
            (
                "az deployment group create -g rg --mode=complete",
                Destructive,
            ),
            (
                "az stack group create --action-on-unmanage deleteAll",
                Destructive,
            ),
            ("az storage blob sync -c c -s dir", Destructive),
            ("az newgroup thing delete", Destructive),
        ]);
    }

    #[test]
    fn forbidden() {
        check(&[
            ("az login", Forbidden),
            ("az login --service-principal -u x -p y", Forbidden),
            ("az logout", Forbidden),
            ("az account get-access-token", Forbidden),
            ("az account clear", Forbidden),
            ("az extension add --name x", Forbidden),
            ("az extension update --name x", Forbidden),
            ("az config set core.output=json", Forbidden),
            ("az configure --defaults group=x", Forbidden),
            ("az cloud set --name AzureChinaCloud", Forbidden),
            ("az upgrade", Forbidden),
            ("az aks get-credentials -g rg -n c", Forbidden),
            ("az -o json login", Forbidden),
        ]);
    }
}
