//! Validation of new credentials and the materials each CLI gets (no store, no database).

use serde_json::json;
use url::Url;

use super::materials::{build, Resolved};
use super::*;

const PEM_KEY: &str =
    "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n";

fn service_account() -> Value {
    json!({
        "type": "service_account",
        "project_id": "demo-project-1",
        "private_key_id": "0123456789abcdef0123456789abcdef01234567",
        "private_key": PEM_KEY,
        "client_email": "robot@demo-project-1.iam.gserviceaccount.com",
    })
}

fn refused(body: Value) -> (String, String) {
    match NewCredential::from_json(&body) {
        Err(StorageError::Invalid { field, message }) => (field.to_string(), message),
        other => panic!("{body}: expected a refusal, got {other:?}"),
    }
}

#[test]
fn each_provider_splits_metadata_from_secret() {
    let aws = NewCredential::from_json(&json!({
        "provider": "aws", "name": "prod", "access_key_id": "AKIAEXAMPLE",
        "secret_access_key": "wJalrXUtnFEMI/K7MDENG", "region": "eu-west-1",
        "endpoint_url": "http://127.0.0.1:5000"
    }))
    .unwrap();
    assert_eq!(
        Value::Object(aws.metadata),
        json!({ "region": "eu-west-1", "endpoint_url": "http://127.0.0.1:5000/" })
    );
    assert_eq!(
        aws.secret.get("secret_access_key"),
        Some("wJalrXUtnFEMI/K7MDENG")
    );

    // The key file as text (pretty-printed, as Google hands it out) or as an object.
    let text = serde_json::to_string_pretty(&service_account()).unwrap();
    for key in [Value::String(text), service_account()] {
        let gcp = NewCredential::from_json(
            &json!({ "provider": "gcp", "name": "g", "service_account_json": key }),
        )
        .unwrap();
        assert_eq!(gcp.metadata["project"], "demo-project-1");
        assert!(!Value::Object(gcp.metadata).to_string().contains("PRIVATE"));
    }

    let azure = NewCredential::from_json(&json!({
        "provider": "azure", "name": "a",
        "tenant_id": "72F988BF-86F1-41AF-91AB-2D7CD011DB47",
        "client_id": "04b07795-8ddb-461a-bbee-02f9e1bf7b46",
        "client_secret": "az-secret-value",
        "subscription_id": "00000000-0000-0000-0000-000000000001"
    }))
    .unwrap();
    assert_eq!(
        azure.metadata["tenant_id"],
        "72f988bf-86f1-41af-91ab-2d7cd011db47"
    );
    assert_eq!(azure.secret.get("client_secret"), Some("az-secret-value"));

    let kube = NewCredential::from_json(&json!({
        "provider": "kubernetes", "name": "k", "server": "https://10.0.0.1:6443",
        "token": "kube-token", "namespace": "apps", "insecure_skip_tls_verify": true
    }))
    .unwrap();
    assert_eq!(
        Value::Object(kube.metadata),
        json!({ "server": "https://10.0.0.1:6443/", "namespace": "apps", "insecure_skip_tls_verify": true })
    );
}

#[test]
fn bad_input_is_refused_by_field_without_its_value() {
    let aws = |extra: Value| {
        let mut body = json!({ "provider": "aws", "name": "prod", "access_key_id": "AKIA1",
            "secret_access_key": "SECRETVALUE123", "region": "us-east-1" });
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                body.as_object_mut().unwrap().remove(k);
            } else {
                body[k] = v.clone();
            }
        }
        body
    };
    let cases = [
        (json!({ "provider": "oracle", "name": "x" }), "provider"),
        (json!({ "name": "x" }), "provider"),
        (json!([1, 2]), "body"),
        (aws(json!({ "name": null })), "name"),
        (aws(json!({ "name": "a/b" })), "name"),
        (
            aws(json!({ "secret_access_key": null })),
            "secret_access_key",
        ),
        (aws(json!({ "secret_access_key": 5 })), "secret_access_key"),
        (
            aws(json!({ "secret_access_key": "has space SECRETVALUE" })),
            "secret_access_key",
        ),
        (
            aws(json!({ "secret_access_key": "S".repeat(300) })),
            "secret_access_key",
        ),
        (aws(json!({ "region": "US East" })), "region"),
        (
            aws(json!({ "endpoint_url": "ftp://files.example.com" })),
            "endpoint_url",
        ),
        (aws(json!({ "endpoint_url": "not a url" })), "endpoint_url"),
        (
            aws(json!({ "endpoint_url": "https://user:SECRETVALUE@s3.example.com" })),
            "endpoint_url",
        ),
        (aws(json!({ "token": "x" })), "body"),
        (aws(json!({ "kubeconfig": "apiVersion: v1" })), "kubeconfig"),
        (
            json!({ "provider": "kubernetes", "name": "k", "kube_config": "users: [{user: {exec: {command: sh}}}]" }),
            "kubeconfig",
        ),
        (
            json!({ "provider": "kubernetes", "name": "k", "server": "https://k:6443" }),
            "token",
        ),
        (
            json!({ "provider": "kubernetes", "name": "k", "server": "k:6443", "token": "t" }),
            "server",
        ),
        (
            json!({ "provider": "kubernetes", "name": "k", "server": "https://k", "token": "t",
                 "certificate_authority_data": "not base64!" }),
            "certificate_authority_data",
        ),
        (
            json!({ "provider": "kubernetes", "name": "k", "server": "https://k", "token": "t",
                 "namespace": "Bad_NS" }),
            "namespace",
        ),
        (
            json!({ "provider": "kubernetes", "name": "k", "server": "https://k", "token": "t",
                 "insecure_skip_tls_verify": "yes" }),
            "insecure_skip_tls_verify",
        ),
        (
            json!({ "provider": "gcp", "name": "g", "service_account_json": "{not json" }),
            "service_account_json",
        ),
        (
            json!({ "provider": "gcp", "name": "g", "service_account_json": { "type": "authorized_user" } }),
            "service_account_json",
        ),
        (
            json!({ "provider": "azure", "name": "a", "tenant_id": "t.example.com", "client_id": "nope",
                 "client_secret": "s", "subscription_id": "00000000-0000-0000-0000-000000000001" }),
            "client_id",
        ),
    ];
    for (body, field) in cases {
        let (got, message) = refused(body.clone());
        assert_eq!(got, field, "{body}: {message}");
        assert!(!message.contains("SECRETVALUE"), "{message}");
    }
}

fn fleet() -> Vec<Resolved> {
    vec![
        Resolved::Aws {
            access_key_id: "AKIAFIRST".into(),
            secret_access_key: "first-secret".into(),
            session_token: Some("first-session".into()),
            region: "us-east-1".into(),
            endpoint_url: Some("http://127.0.0.1:5000/".parse().unwrap()),
        },
        Resolved::Aws {
            access_key_id: "AKIASECOND".into(),
            secret_access_key: "second-secret".into(),
            session_token: None,
            region: "eu-west-1".into(),
            endpoint_url: Some("http://127.0.0.1:6000/".parse().unwrap()),
        },
        Resolved::Gcp {
            service_account_json: service_account().to_string(),
            project: "demo-project-1".into(),
        },
        Resolved::Azure {
            tenant_id: "t".into(),
            client_id: "c".into(),
            client_secret: "azure-secret".into(),
            subscription_id: "s".into(),
        },
        Resolved::Kubernetes {
            name: "prod".into(),
            server: "https://10.0.0.1:6443/".parse().unwrap(),
            token: "kube-token".into(),
            certificate_authority_data: Some("Q0E=".into()),
            namespace: Some("apps".into()),
            insecure_skip_tls_verify: false,
        },
    ]
}

fn env<'a>(m: &'a Materials, k: &str) -> Option<&'a str> {
    m.env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

#[test]
fn each_cli_gets_its_own_part() {
    let all = build(&fleet());
    let aws = all.for_cli("aws");
    assert_eq!(
        env(&aws, "AWS_ACCESS_KEY_ID"),
        Some("AKIAFIRST"),
        "the oldest is used"
    );
    assert_eq!(env(&aws, "AWS_SESSION_TOKEN"), Some("first-session"));
    assert_eq!(env(&aws, "AWS_REGION"), Some("us-east-1"));
    assert_eq!(
        env(&aws, "AWS_ENDPOINT_URL"),
        Some("http://127.0.0.1:5000/")
    );
    assert!(aws.files.is_empty());
    assert!(aws.env.iter().all(|(k, _)| k.starts_with("AWS_")));
    assert_eq!(
        aws.endpoints,
        vec!["http://127.0.0.1:5000/".parse::<Url>().unwrap()]
    );

    let kubectl = all.for_cli("/usr/local/bin/kubectl");
    assert!(kubectl.env.is_empty());
    assert_eq!(kubectl.files.len(), 1);
    assert_eq!(kubectl.files[0].env.as_deref(), Some("KUBECONFIG"));
    let config: Value = serde_json::from_slice(&kubectl.files[0].contents).unwrap();
    assert_eq!(config["current-context"], "prod");
    assert_eq!(config["users"][0]["user"], json!({ "token": "kube-token" }));
    assert_eq!(config["contexts"][0]["context"]["namespace"], "apps");
    assert_eq!(
        config["clusters"][0]["cluster"]["certificate-authority-data"],
        "Q0E="
    );
    assert!(!String::from_utf8_lossy(&kubectl.files[0].contents).contains("exec"));
    assert_eq!(
        kubectl.endpoints,
        vec!["https://10.0.0.1:6443/".parse::<Url>().unwrap()]
    );
    assert_eq!(all.for_cli("helm"), kubectl);

    let gcloud = all.for_cli("gcloud");
    assert_eq!(
        env(&gcloud, "CLOUDSDK_CORE_PROJECT"),
        Some("demo-project-1")
    );
    let vars: Vec<_> = gcloud
        .files
        .iter()
        .map(|f| f.env.clone().unwrap())
        .collect();
    assert_eq!(
        vars,
        [
            "GOOGLE_APPLICATION_CREDENTIALS",
            "CLOUDSDK_AUTH_CREDENTIAL_FILE_OVERRIDE"
        ]
    );
    assert_ne!(gcloud.files[0].name, gcloud.files[1].name);
    assert!(gcloud.endpoints.is_empty());

    let az = all.for_cli("az");
    assert_eq!(env(&az, "AZURE_CLIENT_SECRET"), Some("azure-secret"));
    assert!(az.files.is_empty() && az.env.len() == 4);

    let tf = all.for_cli("terraform");
    for k in [
        "AWS_SECRET_ACCESS_KEY",
        "ARM_CLIENT_SECRET",
        "ARM_TENANT_ID",
        "GOOGLE_PROJECT",
    ] {
        assert!(env(&tf, k).is_some(), "{k}");
    }
    assert!(env(&tf, "AZURE_CLIENT_SECRET").is_none());
    let tf_files: Vec<_> = tf.files.iter().map(|f| f.env.clone().unwrap()).collect();
    assert_eq!(
        tf_files,
        ["GOOGLE_APPLICATION_CREDENTIALS", "KUBE_CONFIG_PATH"]
    );
    assert_eq!(tf.endpoints.len(), 2);

    let other = all.for_cli("curl");
    assert!(other.is_empty() && other.endpoints.is_empty());
}

#[test]
fn every_secret_is_listed_for_redaction_and_none_shows_in_debug() {
    let all = build(&fleet());
    for s in [
        "first-secret",
        "second-secret",
        "first-session",
        "azure-secret",
        "kube-token",
        PEM_KEY,
        // The key as it appears inside the JSON key file.
        &PEM_KEY.replace('\n', "\\n"),
    ] {
        assert!(all.secret_values.iter().any(|v| v == s), "{s:?} not listed");
    }
    let lengths: Vec<_> = all.secret_values.iter().map(String::len).collect();
    assert!(lengths.windows(2).all(|w| w[0] >= w[1]), "longest first");
    let shown = format!("{all:?}");
    for s in &all.secret_values {
        assert!(!shown.contains(s.as_str()), "{s} in {shown}");
    }
    assert!(build(&[]).is_empty());
}
