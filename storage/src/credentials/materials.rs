//! What an org's credentials give a tool process: environment variables, files (written by the
//! sandbox, mode 0600, with a variable pointing at each), the secret strings to redact from its
//! output, and the endpoints it may reach.
//!
//! [`build`] makes the set for every supported CLI at once; [`Materials::for_cli`] narrows it to
//! what one CLI reads, so `kubectl` never sees an AWS key. Where an org has several credentials
//! of a provider whose CLI takes one identity from its environment (AWS, GCP, Azure), the
//! oldest is used; every Kubernetes credential becomes a context of one kubeconfig, the oldest
//! current. Kubeconfigs are always written here from checked fields (as JSON, which kubectl
//! reads as YAML): never one an admin supplied, which could run programs through `exec`.

use std::fmt;

use serde_json::json;
use url::Url;

use super::input::Provider;

/// One file a tool gets.
#[derive(Clone, PartialEq, Eq)]
pub struct MaterialFile {
    /// The file's name in the tool's directory: `kubeconfig`, `gcp.json`, ...
    pub name: String,
    pub contents: Vec<u8>,
    /// The variable that must hold the file's path (`KUBECONFIG`, ...).
    pub env: Option<String>,
}

/// Everything a tool call gets from its org's credentials.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Materials {
    pub env: Vec<(String, String)>,
    pub files: Vec<MaterialFile>,
    /// Every secret string of the org's credentials (longest first, and in the escaped form
    /// they take inside JSON where that differs), for redaction of tool output by value.
    pub secret_values: Vec<String>,
    /// API endpoints the credentials name (a custom AWS endpoint, Kubernetes API servers):
    /// what the sandbox lets the tool reach.
    pub endpoints: Vec<Url>,
}

/// Shows names and sizes only.
impl fmt::Debug for Materials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Materials")
            .field("env", &self.env.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .field("files", &self.files)
            .field("secret_values", &self.secret_values.len())
            .field("endpoints", &self.endpoints)
            .finish()
    }
}

impl fmt::Debug for MaterialFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MaterialFile")
            .field("name", &self.name)
            .field("bytes", &self.contents.len())
            .field("env", &self.env)
            .finish()
    }
}

/// The CLIs that get credentials.
pub const CLIS: &[&str] = &["aws", "gcloud", "az", "kubectl", "helm", "terraform"];

const AWS_ENV: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_ENDPOINT_URL",
];
const AZURE_ENV: &[&str] = &[
    "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_SUBSCRIPTION_ID",
];
const ARM_ENV: &[&str] = &[
    "ARM_CLIENT_ID",
    "ARM_CLIENT_SECRET",
    "ARM_TENANT_ID",
    "ARM_SUBSCRIPTION_ID",
];
const GCP_KEY: &str = "gcp.json";
const KUBECONFIG: &str = "kubeconfig";

/// What one CLI reads: the variables it keeps, and each file as (file of the full set, name
/// given to the tool, variable pointing at it).
fn view(
    cli: &str,
) -> (
    Vec<&'static str>,
    Vec<(&'static str, &'static str, &'static str)>,
) {
    match cli {
        "aws" => (AWS_ENV.to_vec(), vec![]),
        "gcloud" => (
            vec!["CLOUDSDK_CORE_PROJECT"],
            vec![
                (GCP_KEY, GCP_KEY, "GOOGLE_APPLICATION_CREDENTIALS"),
                // gcloud's own commands authenticate with this one, client libraries with
                // the first: the same key under a second name, one variable each.
                (
                    GCP_KEY,
                    "gcloud-credentials.json",
                    "CLOUDSDK_AUTH_CREDENTIAL_FILE_OVERRIDE",
                ),
            ],
        ),
        "az" => (AZURE_ENV.to_vec(), vec![]),
        "kubectl" | "helm" => (vec![], vec![(KUBECONFIG, KUBECONFIG, "KUBECONFIG")]),
        "terraform" => (
            [
                AWS_ENV,
                &["GOOGLE_PROJECT", "GOOGLE_CLOUD_PROJECT"],
                ARM_ENV,
            ]
            .concat(),
            vec![
                (GCP_KEY, GCP_KEY, "GOOGLE_APPLICATION_CREDENTIALS"),
                (KUBECONFIG, KUBECONFIG, "KUBE_CONFIG_PATH"),
            ],
        ),
        _ => (vec![], vec![]),
    }
}

impl Materials {
    /// Whether the tool gets nothing at all.
    pub fn is_empty(&self) -> bool {
        self.env.is_empty() && self.files.is_empty()
    }

    /// The part of this (full) set that `cli` reads; `cli` may be a path (`/usr/bin/kubectl`).
    /// An unknown CLI gets no variables and no files. Endpoints are kept when what is kept
    /// names them; the secret values are all kept (redacting more is harmless, and a tool can
    /// print a secret it was not given: one from a file it found).
    pub fn for_cli(&self, cli: &str) -> Materials {
        let cli = cli.rsplit('/').next().unwrap_or(cli);
        let (env_names, file_views) = view(cli);
        let env: Vec<(String, String)> = self
            .env
            .iter()
            .filter(|(k, _)| env_names.contains(&k.as_str()))
            .cloned()
            .collect();
        let files: Vec<MaterialFile> = file_views
            .iter()
            .filter_map(|(from, name, var)| {
                self.files
                    .iter()
                    .find(|f| f.name == *from)
                    .map(|f| MaterialFile {
                        name: name.to_string(),
                        contents: f.contents.clone(),
                        env: Some(var.to_string()),
                    })
            })
            .collect();
        let named = |url: &Url| {
            env.iter().any(|(_, v)| v == url.as_str())
                || files
                    .iter()
                    .any(|f| String::from_utf8_lossy(&f.contents).contains(url.as_str()))
        };
        Materials {
            endpoints: self
                .endpoints
                .iter()
                .filter(|u| named(u))
                .cloned()
                .collect(),
            secret_values: self.secret_values.clone(),
            env,
            files,
        }
    }
}

/// One credential with its secret, read back and checked.
pub(crate) enum Resolved {
    Aws {
        access_key_id: String,
        secret_access_key: String,
        session_token: Option<String>,
        region: String,
        endpoint_url: Option<Url>,
    },
    Gcp {
        service_account_json: String,
        project: String,
    },
    Azure {
        tenant_id: String,
        client_id: String,
        client_secret: String,
        subscription_id: String,
    },
    Kubernetes {
        name: String,
        server: Url,
        token: String,
        certificate_authority_data: Option<String>,
        namespace: Option<String>,
        insecure_skip_tls_verify: bool,
    },
}

impl Resolved {
    pub(crate) fn provider(&self) -> Provider {
        match self {
            Resolved::Aws { .. } => Provider::Aws,
            Resolved::Gcp { .. } => Provider::Gcp,
            Resolved::Azure { .. } => Provider::Azure,
            Resolved::Kubernetes { .. } => Provider::Kubernetes,
        }
    }

    /// The strings a tool's output must not show.
    fn secrets(&self) -> Vec<String> {
        match self {
            Resolved::Aws {
                access_key_id,
                secret_access_key,
                session_token,
                ..
            } => [
                Some(access_key_id),
                Some(secret_access_key),
                session_token.as_ref(),
            ]
            .into_iter()
            .flatten()
            .cloned()
            .collect(),
            Resolved::Gcp {
                service_account_json,
                ..
            } => {
                let mut out = vec![service_account_json.clone()];
                if let Ok(serde_json::Value::Object(key)) =
                    serde_json::from_str::<serde_json::Value>(service_account_json)
                {
                    for field in ["private_key", "private_key_id"] {
                        if let Some(v) = key.get(field).and_then(|v| v.as_str()) {
                            out.push(v.to_string());
                        }
                    }
                }
                out
            }
            Resolved::Azure { client_secret, .. } => vec![client_secret.clone()],
            Resolved::Kubernetes { token, .. } => vec![token.clone()],
        }
    }
}

/// The full set for `creds` (oldest first), for every CLI at once.
pub(crate) fn build(creds: &[Resolved]) -> Materials {
    let mut m = Materials::default();
    let first = |p: Provider| creds.iter().find(|c| c.provider() == p);
    let mut set = |k: &str, v: &str| m.env.push((k.to_string(), v.to_string()));
    if let Some(Resolved::Aws {
        access_key_id,
        secret_access_key,
        session_token,
        region,
        endpoint_url,
    }) = first(Provider::Aws)
    {
        set("AWS_ACCESS_KEY_ID", access_key_id);
        set("AWS_SECRET_ACCESS_KEY", secret_access_key);
        if let Some(t) = session_token {
            set("AWS_SESSION_TOKEN", t);
        }
        set("AWS_DEFAULT_REGION", region);
        set("AWS_REGION", region);
        if let Some(url) = endpoint_url {
            set("AWS_ENDPOINT_URL", url.as_str());
        }
    }
    let mut gcp_key = None;
    if let Some(Resolved::Gcp {
        service_account_json,
        project,
    }) = first(Provider::Gcp)
    {
        set("CLOUDSDK_CORE_PROJECT", project);
        set("GOOGLE_CLOUD_PROJECT", project);
        set("GOOGLE_PROJECT", project);
        gcp_key = Some(service_account_json.clone());
    }
    if let Some(Resolved::Azure {
        tenant_id,
        client_id,
        client_secret,
        subscription_id,
    }) = first(Provider::Azure)
    {
        for (azure, arm, v) in [
            ("AZURE_CLIENT_ID", "ARM_CLIENT_ID", client_id),
            ("AZURE_TENANT_ID", "ARM_TENANT_ID", tenant_id),
            ("AZURE_CLIENT_SECRET", "ARM_CLIENT_SECRET", client_secret),
            (
                "AZURE_SUBSCRIPTION_ID",
                "ARM_SUBSCRIPTION_ID",
                subscription_id,
            ),
        ] {
            set(azure, v);
            set(arm, v);
        }
    }
    if let Some(key) = gcp_key {
        m.files.push(MaterialFile {
            name: GCP_KEY.into(),
            contents: key.into_bytes(),
            env: Some("GOOGLE_APPLICATION_CREDENTIALS".into()),
        });
    }
    if let Some(config) = kubeconfig(creds) {
        m.files.push(MaterialFile {
            name: KUBECONFIG.into(),
            contents: config,
            env: Some("KUBECONFIG".into()),
        });
    }
    for c in creds {
        match c {
            Resolved::Aws {
                endpoint_url: Some(url),
                ..
            } if m.env.iter().any(|(_, v)| v == url.as_str()) => m.endpoints.push(url.clone()),
            Resolved::Kubernetes { server, .. } => m.endpoints.push(server.clone()),
            _ => {}
        }
    }
    m.endpoints.dedup();
    m.secret_values = secret_values(creds);
    m
}

/// Every secret, plus its JSON-escaped form where that differs (a PEM key shows up with `\n`
/// when a tool prints the key file), without duplicates, longest first so a redactor never
/// replaces part of a longer secret before the whole of it.
fn secret_values(creds: &[Resolved]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for v in creds.iter().flat_map(Resolved::secrets) {
        let quoted = serde_json::to_string(&v).unwrap_or_default();
        let escaped = quoted
            .strip_prefix('"')
            .and_then(|q| q.strip_suffix('"'))
            .unwrap_or_default()
            .to_string();
        for s in [v, escaped] {
            if !s.is_empty() && !out.contains(&s) {
                out.push(s);
            }
        }
    }
    out.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    out
}

/// One kubeconfig holding every Kubernetes credential as a context (the oldest current), or
/// `None` when the org has none. Names are the credentials' names, unique within the org.
fn kubeconfig(creds: &[Resolved]) -> Option<Vec<u8>> {
    let mut clusters = Vec::new();
    let mut users = Vec::new();
    let mut contexts = Vec::new();
    for c in creds {
        let Resolved::Kubernetes {
            name,
            server,
            token,
            certificate_authority_data,
            namespace,
            insecure_skip_tls_verify,
        } = c
        else {
            continue;
        };
        let mut cluster = json!({ "server": server.as_str() });
        if let Some(ca) = certificate_authority_data {
            cluster["certificate-authority-data"] = ca.as_str().into();
        }
        if *insecure_skip_tls_verify {
            cluster["insecure-skip-tls-verify"] = true.into();
        }
        let mut context = json!({ "cluster": name, "user": name });
        if let Some(ns) = namespace {
            context["namespace"] = ns.as_str().into();
        }
        clusters.push(json!({ "name": name, "cluster": cluster }));
        users.push(json!({ "name": name, "user": { "token": token } }));
        contexts.push(json!({ "name": name, "context": context }));
    }
    let current = contexts.first()?["name"].clone();
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": clusters,
        "users": users,
        "contexts": contexts,
        "current-context": current,
    });
    Some(serde_json::to_vec_pretty(&config).expect("a JSON value serializes"))
}
