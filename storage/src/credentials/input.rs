//! A new credential as an admin sends it: `{provider, name, ...fields}`, checked field by field
//! for its provider and split into what the database may keep (metadata) and what only the
//! secret store may (the secret). Every refusal names the field and never quotes a value: the
//! value may be the secret itself, and refusals reach logs and HTTP answers.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use url::Url;

use crate::secrets::SecretData;
use crate::StorageError;

/// Longest name.
const MAX_NAME: usize = 100;
/// AWS session tokens, Kubernetes service-account tokens and CA bundles run longer.
const MAX_TOKEN: usize = 16 * 1024;
const MAX_SERVICE_ACCOUNT: usize = 32 * 1024;
const MAX_CA_DATA: usize = 64 * 1024;

/// The cloud (or cluster) a credential is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Aws,
    Gcp,
    Azure,
    Kubernetes,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Aws => "aws",
            Provider::Gcp => "gcp",
            Provider::Azure => "azure",
            Provider::Kubernetes => "kubernetes",
        }
    }

    pub fn parse(s: &str) -> Option<Provider> {
        match s {
            "aws" => Some(Provider::Aws),
            "gcp" => Some(Provider::Gcp),
            "azure" => Some(Provider::Azure),
            "kubernetes" => Some(Provider::Kubernetes),
            _ => None,
        }
    }

    /// The fields a create request may carry besides `provider` and `name`.
    fn fields(self) -> &'static [&'static str] {
        match self {
            Provider::Aws => &[
                "access_key_id",
                "secret_access_key",
                "session_token",
                "region",
                "endpoint_url",
            ],
            Provider::Gcp => &["service_account_json", "project"],
            Provider::Azure => &["tenant_id", "client_id", "client_secret", "subscription_id"],
            Provider::Kubernetes => &[
                "server",
                "token",
                "certificate_authority_data",
                "namespace",
                "insecure_skip_tls_verify",
            ],
        }
    }
}

/// A validated new credential: `metadata` goes to the database, `secret` to the secret store.
#[derive(Debug)]
pub struct NewCredential {
    pub provider: Provider,
    pub name: String,
    pub metadata: Map<String, Value>,
    pub secret: SecretData,
}

impl NewCredential {
    /// Checks a create request's body for its provider.
    pub fn from_json(body: &Value) -> Result<NewCredential, StorageError> {
        let Value::Object(body) = body else {
            return Err(StorageError::invalid("body", "expected a JSON object"));
        };
        // Before anything else: whatever the provider, a kubeconfig could carry an `exec`
        // plugin (a program kubectl runs on the node), so none is ever taken.
        if body
            .keys()
            .any(|k| k.to_ascii_lowercase().replace(['-', '_'], "") == "kubeconfig")
        {
            return Err(StorageError::invalid(
                "kubeconfig",
                "a kubeconfig is never accepted (it can make kubectl run programs); \
                 give server, token and certificate_authority_data, and Aurora writes the kubeconfig",
            ));
        }
        let provider = match body.get("provider") {
            Some(Value::String(p)) => Provider::parse(p).ok_or_else(|| {
                StorageError::invalid(
                    "provider",
                    "unknown provider (expected aws, gcp, azure or kubernetes)",
                )
            })?,
            Some(_) => return Err(StorageError::invalid("provider", "must be a string")),
            None => return Err(StorageError::invalid("provider", "is required")),
        };
        let name = name(body.get("name"))?;
        if let Some(unknown) = body
            .keys()
            .find(|k| *k != "provider" && *k != "name" && !provider.fields().contains(&k.as_str()))
        {
            let shown: String = unknown.chars().take(64).collect();
            return Err(StorageError::invalid(
                "body",
                format!(
                    "unknown field '{shown}' for provider {} (expected {})",
                    provider.as_str(),
                    provider.fields().join(", ")
                ),
            ));
        }
        let f = Fields(body);
        let (metadata, secret) = match provider {
            Provider::Aws => aws(&f)?,
            Provider::Gcp => gcp(&f)?,
            Provider::Azure => azure(&f)?,
            Provider::Kubernetes => kubernetes(&f)?,
        };
        Ok(NewCredential {
            provider,
            name,
            metadata,
            secret,
        })
    }
}

fn name(value: Option<&Value>) -> Result<String, StorageError> {
    let Some(Value::String(name)) = value else {
        return Err(StorageError::invalid(
            "name",
            "is required and must be a string",
        ));
    };
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME {
        return Err(StorageError::invalid(
            "name",
            format!("must be 1 to {MAX_NAME} characters"),
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_' | '.'))
    {
        return Err(StorageError::invalid(
            "name",
            "may hold letters, digits, spaces, '-', '_' and '.' only",
        ));
    }
    Ok(name.to_string())
}

/// The body's fields, read with checks that never echo a value.
struct Fields<'a>(&'a Map<String, Value>);

impl Fields<'_> {
    /// A string field, trimmed; `None` when absent or null.
    fn opt(&self, field: &'static str, max: usize) -> Result<Option<String>, StorageError> {
        let v = match self.0.get(field) {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::String(v)) => v.trim(),
            Some(_) => return Err(StorageError::invalid(field, "must be a string")),
        };
        if v.is_empty() {
            return Err(StorageError::invalid(field, "must not be empty"));
        }
        if v.chars().count() > max {
            return Err(StorageError::invalid(
                field,
                format!("is too long (at most {max} characters)"),
            ));
        }
        if v.chars().any(char::is_control) {
            return Err(StorageError::invalid(
                field,
                "must not hold control characters",
            ));
        }
        Ok(Some(v.to_string()))
    }

    fn req(&self, field: &'static str, max: usize) -> Result<String, StorageError> {
        self.opt(field, max)?
            .ok_or_else(|| StorageError::invalid(field, "is required"))
    }

    /// A key, token or id: one word, no whitespace.
    fn word(&self, field: &'static str, max: usize) -> Result<Option<String>, StorageError> {
        let v = self.opt(field, max)?;
        if v.as_deref()
            .is_some_and(|v| v.contains(char::is_whitespace))
        {
            return Err(StorageError::invalid(field, "must not contain whitespace"));
        }
        Ok(v)
    }

    fn req_word(&self, field: &'static str, max: usize) -> Result<String, StorageError> {
        self.word(field, max)?
            .ok_or_else(|| StorageError::invalid(field, "is required"))
    }
}

/// An `http`/`https` URL with a host and no credentials or fragment in it (a URL is metadata:
/// it is listed back, so it must hold nothing secret).
fn endpoint(field: &'static str, value: &str) -> Result<Url, StorageError> {
    let url = Url::parse(value)
        .map_err(|_| StorageError::invalid(field, "must be an http or https URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(StorageError::invalid(field, "must be an http or https URL"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(StorageError::invalid(
            field,
            "must not carry a user name or password",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(StorageError::invalid(
            field,
            "must not carry a query or fragment",
        ));
    }
    Ok(url)
}

fn matches(value: &str, min: usize, max: usize, ok: impl Fn(usize, char) -> bool) -> bool {
    let n = value.chars().count();
    (min..=max).contains(&n) && value.chars().enumerate().all(|(i, c)| ok(i, c))
}

fn aws(f: &Fields) -> Result<(Map<String, Value>, SecretData), StorageError> {
    let mut secret = SecretData::new();
    secret.insert("access_key_id", f.req_word("access_key_id", 128)?);
    secret.insert("secret_access_key", f.req_word("secret_access_key", 256)?);
    if let Some(token) = f.word("session_token", MAX_TOKEN)? {
        secret.insert("session_token", token);
    }
    let region = f.req("region", 64)?;
    if !matches(&region, 1, 64, |i, c| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || (i > 0 && c == '-')
    }) {
        return Err(StorageError::invalid(
            "region",
            "must be a region name such as us-east-1",
        ));
    }
    let mut metadata = Map::new();
    metadata.insert("region".into(), region.into());
    if let Some(url) = f.opt("endpoint_url", 2048)? {
        let url = endpoint("endpoint_url", &url)?;
        metadata.insert("endpoint_url".into(), url.as_str().into());
    }
    Ok((metadata, secret))
}

fn gcp(f: &Fields) -> Result<(Map<String, Value>, SecretData), StorageError> {
    // Accepted as the key file's JSON text, or as the object itself.
    let text = match f.0.get("service_account_json") {
        Some(Value::Object(o)) => Value::Object(o.clone()).to_string(),
        // Key files are pretty-printed: newlines are fine here, the JSON parse checks the rest.
        Some(Value::String(text)) => text.trim().to_string(),
        Some(_) => {
            return Err(StorageError::invalid(
                "service_account_json",
                "must be a service account key (JSON object, or its text)",
            ))
        }
        None => return Err(StorageError::invalid("service_account_json", "is required")),
    };
    if text.len() > MAX_SERVICE_ACCOUNT {
        return Err(StorageError::invalid(
            "service_account_json",
            format!("is too long (at most {MAX_SERVICE_ACCOUNT} bytes)"),
        ));
    }
    let account: Map<String, Value> = serde_json::from_str(&text)
        .map_err(|_| StorageError::invalid("service_account_json", "is not a JSON object"))?;
    let str_field = |k: &str| account.get(k).and_then(Value::as_str);
    if str_field("type") != Some("service_account") {
        return Err(StorageError::invalid(
            "service_account_json",
            "must be a key of type service_account",
        ));
    }
    let Some(email) = str_field("client_email").filter(|e| e.contains('@')) else {
        return Err(StorageError::invalid(
            "service_account_json",
            "has no client_email",
        ));
    };
    if !str_field("private_key").is_some_and(|k| k.contains("PRIVATE KEY")) {
        return Err(StorageError::invalid(
            "service_account_json",
            "has no private_key in PEM form",
        ));
    }
    let project = match f.opt("project", 64)? {
        Some(p) => p,
        None => str_field("project_id").map(str::to_string).ok_or_else(|| {
            StorageError::invalid("project", "is required (the key names no project_id)")
        })?,
    };
    // Google's rule for project ids: 6 to 30 of a-z, 0-9 and '-', starting with a letter and
    // not ending with '-'.
    if !matches(&project, 6, 30, |i, c| {
        c.is_ascii_lowercase() || (i > 0 && (c.is_ascii_digit() || c == '-'))
    }) || project.ends_with('-')
    {
        return Err(StorageError::invalid(
            "project",
            "must be a project id (6 to 30 of a-z, 0-9 and '-', starting with a letter)",
        ));
    }
    let mut metadata = Map::new();
    metadata.insert("project".into(), project.into());
    metadata.insert("client_email".into(), email.into());
    let mut secret = SecretData::new();
    // Kept compact, as one line: how it is written to the tool's key file.
    secret.insert("service_account_json", Value::Object(account).to_string());
    Ok((metadata, secret))
}

fn azure(f: &Fields) -> Result<(Map<String, Value>, SecretData), StorageError> {
    let guid = |field: &'static str| -> Result<String, StorageError> {
        let v = f.req_word(field, 64)?;
        uuid::Uuid::parse_str(&v)
            .map(|u| u.hyphenated().to_string())
            .map_err(|_| StorageError::invalid(field, "must be a GUID"))
    };
    let tenant = f.req_word("tenant_id", 253)?;
    // A tenant is named by its GUID or by one of its domains.
    let tenant = match uuid::Uuid::parse_str(&tenant) {
        Ok(u) => u.hyphenated().to_string(),
        Err(_)
            if tenant.contains('.')
                && matches(&tenant, 3, 253, |_, c| {
                    c.is_ascii_alphanumeric() || c == '.' || c == '-'
                }) =>
        {
            tenant.to_ascii_lowercase()
        }
        Err(_) => {
            return Err(StorageError::invalid(
                "tenant_id",
                "must be a GUID or a domain name",
            ))
        }
    };
    let mut metadata = Map::new();
    metadata.insert("tenant_id".into(), tenant.into());
    metadata.insert("client_id".into(), guid("client_id")?.into());
    metadata.insert("subscription_id".into(), guid("subscription_id")?.into());
    let mut secret = SecretData::new();
    secret.insert("client_secret", f.req_word("client_secret", 1024)?);
    Ok((metadata, secret))
}

fn kubernetes(f: &Fields) -> Result<(Map<String, Value>, SecretData), StorageError> {
    let server = endpoint("server", &f.req("server", 2048)?)?;
    let mut metadata = Map::new();
    metadata.insert("server".into(), server.as_str().into());
    let mut secret = SecretData::new();
    secret.insert("token", f.req_word("token", MAX_TOKEN)?);
    if let Some(ca) = f.opt("certificate_authority_data", MAX_CA_DATA)? {
        use base64::Engine;
        let ca: String = ca.split_whitespace().collect();
        let pem = base64::engine::general_purpose::STANDARD
            .decode(&ca)
            .map_err(|_| StorageError::invalid("certificate_authority_data", "is not base64"))?;
        if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
            return Err(StorageError::invalid(
                "certificate_authority_data",
                "must be base64 of PEM certificates",
            ));
        }
        secret.insert("certificate_authority_data", ca);
    }
    if let Some(ns) = f.opt("namespace", 63)? {
        if !matches(&ns, 1, 63, |_, c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
        }) || ns.starts_with('-')
            || ns.ends_with('-')
        {
            return Err(StorageError::invalid(
                "namespace",
                "must be a namespace name (a-z, 0-9 and '-', at most 63)",
            ));
        }
        metadata.insert("namespace".into(), ns.into());
    }
    match f.0.get("insecure_skip_tls_verify") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => {}
        Some(Value::Bool(true)) => {
            if secret.get("certificate_authority_data").is_some() {
                return Err(StorageError::invalid(
                    "insecure_skip_tls_verify",
                    "cannot be used with certificate_authority_data",
                ));
            }
            metadata.insert("insecure_skip_tls_verify".into(), true.into());
        }
        Some(_) => {
            return Err(StorageError::invalid(
                "insecure_skip_tls_verify",
                "must be true or false",
            ))
        }
    }
    Ok((metadata, secret))
}
