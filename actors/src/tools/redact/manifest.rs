//! Structural rules: fields that are secret because of what their mapping says about itself,
//! not because of their own name. Shared by the YAML / pretty-JSON line rules, the JSON document
//! rules and `Secrets::redact_json`, so all three agree.

use serde_json::Value;

use super::keys::is_secret_key;

/// The annotation in which `kubectl apply` keeps the whole applied manifest, `data` included.
pub(super) const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Fields that hold the name of a `value` field's entry (Kubernetes env vars, ECS environment,
/// tags, CloudFormation parameters).
const NAME_FIELDS: &[&str] = &["name", "Name", "key", "Key", "ParameterKey"];

/// Fields that hold an entry's value.
const VALUE_FIELDS: &[&str] = &["value", "Value", "ParameterValue"];

/// Fields whose whole content is secret in a Kubernetes Secret.
const SECRET_DATA: &[&str] = &["data", "stringData"];

/// Every field name a structural rule can mask: the line rules look at mappings only around these.
pub(super) fn is_structural(field: &str) -> bool {
    SECRET_DATA.contains(&field) || VALUE_FIELDS.contains(&field)
}

/// The fields of one mapping that hold secrets, given a lookup of its scalar fields:
/// - `data` and `stringData` of a `kind: Secret`;
/// - `value` of an entry named like a secret (`- name: DB_PASSWORD` / `value: hunter2`, an SSM
///   parameter `/prod/db/password`), of an SSM `SecureString`, and of an Azure key listing
///   (`az storage account keys list`: `keyName` / `value`).
pub(super) fn secret_fields<'a>(scalar: impl Fn(&str) -> Option<&'a str>) -> Vec<&'static str> {
    let mut fields = Vec::new();
    if scalar("kind") == Some("Secret") {
        fields.extend_from_slice(SECRET_DATA);
    }
    let named_secret = NAME_FIELDS
        .iter()
        .filter_map(|f| scalar(f))
        .any(is_secret_key);
    let secure = ["Type", "type"]
        .iter()
        .any(|f| scalar(f) == Some("SecureString"));
    if named_secret || secure || scalar("keyName").is_some() {
        fields.extend_from_slice(VALUE_FIELDS);
    }
    fields
}

/// Whether `text` is a JSON manifest of a Kubernetes Secret (the last-applied annotation's value).
pub(super) fn is_secret_manifest(text: &str) -> bool {
    serde_json::from_str::<Value>(text.trim())
        .is_ok_and(|v| v.get("kind").and_then(Value::as_str) == Some("Secret"))
}
