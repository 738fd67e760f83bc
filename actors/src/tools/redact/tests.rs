//! Each leak the redaction closes, on output as the CLIs print it, and output it must leave alone.

use serde_json::json;

use super::{redact, Secrets};

/// Asserts that none of `secrets` survived in `out`.
#[track_caller]
fn assert_masked(out: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(!out.contains(secret), "{secret} survived:\n{out}");
    }
    assert!(out.contains("[REDACTED]"), "nothing masked:\n{out}");
}

#[test]
fn masks_common_credentials() {
    let text = "aws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n\
                password: hunter2\nAuthorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig\n\
                token=ghp_abcdefghijklmnopqrstuvwxyz0123\nkey sk-ant-api03-abcdefghijklmnop\n\
                -----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----\npods: 3 running";
    let out = redact(text);
    assert_masked(
        &out,
        &[
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI",
            "hunter2",
            "eyJhbGciOiJIUzI1NiJ9",
            "ghp_abc",
            "sk-ant-api03",
            "MIIEow",
        ],
    );
    assert!(out.contains("pods: 3 running"));
    assert!(out.contains("password: [REDACTED]"));
}

#[test]
fn leaves_ordinary_output_alone() {
    let text = "NAME    READY   STATUS\nweb-1   1/1     Running\ntokens-service   0/1   Pending";
    assert_eq!(redact(text), text);
}

#[test]
fn aws_secretsmanager_get_secret_value() {
    let text = r#"{
    "ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-AbCdEf",
    "Name": "prod/db",
    "VersionId": "a1b2c3d4-5678-90ab-cdef-EXAMPLE11111",
    "SecretString": "{\"username\":\"admin\",\"password\":\"Sup3r\\\"S3cret!\"}",
    "VersionStages": [
        "AWSCURRENT"
    ],
    "CreatedDate": "2024-05-01T10:00:00.000000+00:00"
}"#;
    let out = redact(text);
    assert_masked(&out, &["Sup3r", "S3cret", "admin"]);
    assert!(out.contains(r#""SecretString": "[REDACTED]","#), "{out}");
    assert!(out.contains(r#""Name": "prod/db","#));
    assert!(out.contains(r#""VersionStages": ["#));
}

#[test]
fn aws_sts_and_iam_keys_pretty_and_compact() {
    let pretty = r#"{
    "Credentials": {
        "AccessKeyId": "ASIAIOSFODNN7EXAMPLE",
        "SecretAccessKey": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "SessionToken": "FwoGZXIvYXdzEBYaDHqa0AP1/AQUoXEBqiLIAZk8kNkYPpj4b",
        "Expiration": "2024-05-01T11:00:00+00:00"
    }
}"#;
    let out = redact(pretty);
    assert_masked(&out, &["ASIAIOSFODNN7", "wJalrXUtnFEMI", "FwoGZXIvYXdz"]);
    assert!(out.contains(r#""Expiration": "2024-05-01T11:00:00+00:00""#));
    let compact = r#"{"AccessKey":{"UserName":"ci","AccessKeyId":"AKIAIOSFODNN7EXAMPLE","Status":"Active","SecretAccessKey":"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}}"#;
    let out = redact(compact);
    assert_masked(&out, &["AKIAIOSFODNN7", "wJalrXUtnFEMI"]);
    assert!(out.contains(r#""UserName":"ci""#));
    serde_json::from_str::<serde_json::Value>(&out).expect("still JSON");
}

#[test]
fn cloud_tokens_in_json() {
    let text = r#"{"token": "k8s-aws-v1.aHR0cHM6Ly9zdHMuYW1hem9uYXdzLmNvbS8_QWN0aW9u", "client_secret": "Xy7~Qp.secretvalue-123", "private_key": "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n-----END PRIVATE KEY-----\n", "privateKeyData": "ewogICJ0eXBlIjogInNlcnZpY2VfYWNjb3VudCIK", "accessToken": "eyJ0eXAiOiJKV1QiLCJhbGciOi.eyJhdWQiOiJodHRwczovL21hbmFnZW1lbnQ.c2lnbmF0dXJl", "tokenType": "Bearer", "expiresOn": "2024-05-01 11:00:00"}"#;
    let out = redact(text);
    assert_masked(
        &out,
        &[
            "k8s-aws-v1",
            "Xy7~Qp",
            "MIIEvQIBADANBg",
            "ewogICJ0eXBl",
            "eyJ0eXAiOiJKV1Qi",
        ],
    );
    assert!(out.contains(r#""tokenType": "Bearer""#), "{out}");
    assert!(out.contains(r#""expiresOn": "2024-05-01 11:00:00""#));
    serde_json::from_str::<serde_json::Value>(&out).expect("still JSON");
}

const SECRET_JSON: &str = r#"{
    "apiVersion": "v1",
    "data": {
        "password": "aHVudGVyMmh1bnRlcjI=",
        "tls.key": "LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0t",
        "username": "YWRtaW5pc3RyYXRvcg=="
    },
    "kind": "Secret",
    "metadata": {
        "annotations": {
            "kubectl.kubernetes.io/last-applied-configuration": "{\"apiVersion\":\"v1\",\"data\":{\"password\":\"aHVudGVyMmh1bnRlcjI=\",\"username\":\"YWRtaW5pc3RyYXRvcg==\"},\"kind\":\"Secret\",\"metadata\":{\"annotations\":{},\"name\":\"db\",\"namespace\":\"default\"},\"type\":\"Opaque\"}\n"
        },
        "creationTimestamp": "2024-05-01T10:00:00Z",
        "name": "db",
        "namespace": "default"
    },
    "type": "Opaque"
}"#;

#[test]
fn kubectl_get_secret_json() {
    let out = redact(SECRET_JSON);
    assert_masked(&out, &["aHVudGVy", "LS0tLS1C", "YWRtaW5p"]);
    assert!(out.contains(r#""username": "[REDACTED]""#), "{out}");
    assert!(out.contains(r#""tls.key": "[REDACTED]","#));
    assert!(out.contains(r#""name": "db","#));
    serde_json::from_str::<serde_json::Value>(&out).expect("still JSON");
}

#[test]
fn kubectl_get_secret_json_cut_by_the_output_cap() {
    let cut = &SECRET_JSON[..SECRET_JSON.find("\"kubectl.kubernetes").unwrap()];
    let text = format!(
        "{{\n    \"apiVersion\": \"v1\",\n    \"items\": [\n{}",
        indent(cut, 8)
    );
    let out = redact(&text);
    assert_masked(&out, &["aHVudGVy", "LS0tLS1C", "YWRtaW5p"]);
}

#[test]
fn kubectl_get_secret_json_compact() {
    let compact: serde_json::Value = serde_json::from_str(SECRET_JSON).unwrap();
    let list = json!({"apiVersion": "v1", "kind": "List", "items": [compact, {
        "apiVersion": "v1", "kind": "ConfigMap", "data": {"log_level": "debug"}
    }]});
    let out = redact(&list.to_string());
    assert_masked(&out, &["aHVudGVy", "LS0tLS1C", "YWRtaW5p"]);
    assert!(
        out.contains(r#""log_level":"debug""#),
        "a ConfigMap is no secret: {out}"
    );
}

fn indent(text: &str, by: usize) -> String {
    text.lines()
        .map(|l| format!("{}{l}\n", " ".repeat(by)))
        .collect()
}

const SECRET_YAML: &str = r#"apiVersion: v1
items:
- apiVersion: v1
  data:
    .dockerconfigjson: eyJhdXRocyI6eyJyZWdpc3RyeS5leGFtcGxlLmNvbSI6e319fQ==
    release: SDRzSUFBQUFBQUFDLyt5OWE=
  kind: Secret
  metadata:
    annotations:
      kubectl.kubernetes.io/last-applied-configuration: |
        {"apiVersion":"v1","kind":"Secret","metadata":{"name":"regcred"},"stringData":{"api":"plainvalue1"}}
    name: regcred
    namespace: default
  type: kubernetes.io/dockerconfigjson
- apiVersion: v1
  data:
    log_level: debug
  kind: ConfigMap
  metadata:
    name: settings
- apiVersion: v1
  kind: Secret
  metadata:
    name: app
  stringData:
    config.yaml: |
      endpoint: https://api.example.com
      apiSecret: plainvalue2
    note: plainvalue3
kind: List
"#;

#[test]
fn kubectl_get_secret_yaml() {
    let out = redact(SECRET_YAML);
    assert_masked(
        &out,
        &[
            "eyJhdXRocyI6",
            "SDRzSUFB",
            "plainvalue1",
            "plainvalue2",
            "plainvalue3",
            "api.example.com",
        ],
    );
    assert!(out.contains("    .dockerconfigjson: [REDACTED]\n"), "{out}");
    assert!(
        out.contains("    log_level: debug\n"),
        "a ConfigMap is no secret"
    );
    assert!(out.contains("    name: regcred\n"));
    assert!(out.contains("kind: List"));
}

#[test]
fn kubeconfig() {
    let text = r#"apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUM=
    server: https://10.0.0.1:6443
  name: prod
users:
- name: admin
  user:
    client-certificate-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSURhZ
    client-key-data: LS0tLS1CRUdJTiBSU0EgUFJJVkFURSBLRVktLS0tLQpNSUlFcG
- name: ci
  user:
    token: 3f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c
- name: sso
  user:
    auth-provider:
      config:
        client-secret: oidc-client-secret-value
        refresh-token: 1//0gLr6f-refresh
      name: oidc
"#;
    let out = redact(text);
    assert_masked(
        &out,
        &[
            "Q0FURS0tLS0tCk1JSURhZ",
            "UFJJVkFURSBLRVk",
            "3f9a8b7c6d5e",
            "oidc-client-secret-value",
            "1//0gLr6f",
        ],
    );
    assert!(out.contains("server: https://10.0.0.1:6443"));
    assert!(
        out.contains("certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUM=")
    );
}

#[test]
fn yaml_secret_keys_and_block_scalars() {
    let text = "db:\n  host: db.internal\n  password: correct horse battery staple\n  \
                SecretAccessKey: wJalrXUtnFEMI/K7MDENG\ngcp:\n  credentials: |\n    {\"type\": \"service_account\",\n     \"private_key_id\": \"abc\"}\n  project: demo\n";
    let out = redact(text);
    assert_masked(
        &out,
        &["horse", "battery", "wJalrXUtnFEMI", "service_account"],
    );
    assert!(out.contains("  host: db.internal\n"));
    assert!(
        out.contains("  credentials: |\n    [REDACTED]\n  project: demo\n"),
        "{out}"
    );
}

#[test]
fn env_vars_named_like_secrets() {
    let yaml = "    env:\n    - name: DB_PASSWORD\n      value: hunter2hunter2\n    - name: LOG_LEVEL\n      value: debug\n";
    let out = redact(yaml);
    assert_masked(&out, &["hunter2hunter2"]);
    assert!(out.contains("      value: debug\n"));
    let ssm = r#"{"Parameter": {"Name": "/prod/db/url", "Type": "SecureString", "Value": "opaque-ssm-value"}}"#;
    assert_masked(&redact(ssm), &["opaque-ssm-value"]);
    let az = r#"[{"keyName": "key1", "permissions": "FULL", "value": "c3RvcmFnZWtleQ=="}]"#;
    assert_masked(&redact(az), &["c3RvcmFnZWtleQ"]);
}

#[test]
fn gcloud_key_docker_config_and_azure_connection_strings() {
    let gcloud = r#"{
  "type": "service_account",
  "project_id": "demo",
  "private_key_id": "0123456789abcdef",
  "private_key": "-----BEGIN PRIVATE KEY-----\nMIIEvAIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n",
  "client_email": "ci@demo.iam.gserviceaccount.com"
}"#;
    let out = redact(gcloud);
    assert_masked(&out, &["MIIEvAIBADANBgkqhkiG9w0"]);
    assert!(out.contains(r#""client_email": "ci@demo.iam.gserviceaccount.com""#));
    assert!(out.contains(r#""private_key_id": "0123456789abcdef","#));
    let docker = r#"{"auths":{"registry.example.com":{"username":"bot","password":"hunter2hunter2","auth":"Ym90Omh1bnRlcjJodW50ZXIy"}}}"#;
    let out = redact(docker);
    assert_masked(&out, &["hunter2hunter2", "Ym90Omh1bnRlcjJo"]);
    assert!(out.contains(r#""username":"bot""#));
    let azure = r#"{"connectionString": "DefaultEndpointsProtocol=https;AccountName=st1;AccountKey=bXlrZXk=;EndpointSuffix=core.windows.net"}
Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=Root;SharedAccessKey=c2hhcmVka2V5"#;
    let out = redact(azure);
    assert_masked(&out, &["bXlrZXk", "c2hhcmVka2V5"]);
    assert!(out.contains("SharedAccessKeyName=Root"));
}

#[test]
fn env_vars_in_pretty_json_and_kubectl_describe() {
    let json = r#"        "env": [
            {
                "name": "DB_PASSWORD",
                "value": "hunter2hunter2"
            },
            {
                "value": "debug",
                "name": "LOG_LEVEL"
            }
        ],"#;
    let out = redact(json);
    assert_masked(&out, &["hunter2hunter2"]);
    assert!(out.contains(r#""value": "debug","#));
    let describe =
        "    Environment:\n      DB_HOST:      db.internal\n      DB_PASSWORD:  hunter2hunter2\n";
    let out = redact(describe);
    assert_masked(&out, &["hunter2hunter2"]);
    assert!(out.contains("DB_HOST:      db.internal"));
}

#[test]
fn urls_with_credentials() {
    for (text, keep, secret) in [
        (
            "postgres://app:s3cr3t@db.internal:5432/app",
            "postgres://app:[REDACTED]@db.internal:5432/app",
            "s3cr3t",
        ),
        (
            "remote: https://ci-bot:ghx_0123456789abcdef@github.com/org/repo.git",
            "https://ci-bot:[REDACTED]@github.com/org/repo.git",
            "ghx_0123",
        ),
        (
            "REDIS_URL=redis://:p@ss@cache:6379/0",
            "redis://:[REDACTED]@cache:6379/0",
            "p@ss",
        ),
        (
            "mongodb+srv://root:pa%40ss@cluster0.example.net/?retryWrites=true",
            "mongodb+srv://root:[REDACTED]@cluster0",
            "pa%40ss",
        ),
    ] {
        let out = redact(text);
        assert!(out.contains(keep), "{out}");
        assert!(!out.contains(secret), "{out}");
    }
    for text in [
        "https://example.com:8443/path",
        "see https://docs.aws.amazon.com/cli/ for help",
        "git@github.com:org/repo.git",
    ] {
        assert_eq!(redact(text), text);
    }
}

#[test]
fn command_lines() {
    for (command, secret, keep) in [
        ("aws configure set aws_secret_access_key wJalrXUtnFEMI/K7MDENG --profile prod", "wJalrXUtnFEMI", "--profile prod"),
        ("kubectl create secret generic db --from-literal=username=admin --from-literal=password=hunter2", "hunter2", "username=admin"),
        ("kubectl config set-credentials ci --token=abc123def456", "abc123def456", "set-credentials ci"),
        ("kubectl config set users.ci.token abc123def456", "abc123def456", "users.ci.token"),
        ("helm repo add private https://charts.example.com --username bot --password 'pa ss'", "pa ss", "--username bot"),
        ("helm upgrade app ./chart --set db.password=hunter2 --set replicas=3", "hunter2", "replicas=3"),
        ("mysql -h db -u root -phunter2 app", "hunter2", "-u root"),
        ("mysql -h db -u root -p hunter2", "hunter2", "-u root"),
        ("redis-cli -h cache -a hunter2 ping", "hunter2", "ping"),
        ("curl -u admin:hunter2 https://api.example.com", "hunter2", "-u admin:"),
        ("curl --user=admin:hunter2 https://api.example.com", "hunter2", "--user=admin:"),
        ("curl -H 'Authorization: Bearer abc123def456' https://api", "abc123def456", "Authorization: Bearer"),
        ("curl -H \"Authorization: Basic YWRtaW46aHVudGVyMg==\" https://api", "YWRtaW46", "Authorization: Basic"),
        ("az login --service-principal -u 0000-app -p s3cr3tvalue --tenant t", "s3cr3tvalue", "--tenant t"),
        ("PGPASSWORD=hunter2 psql -h db app", "hunter2", "psql -h db app"),
        ("terraform apply -var 'db_password=hunter2' -auto-approve", "hunter2", "-auto-approve"),
    ] {
        let out = redact(command);
        assert!(!out.contains(secret), "{command} -> {out}");
        assert!(out.contains(keep), "{command} -> {out}");
    }
}

#[test]
fn command_lines_left_alone() {
    for command in [
        "kubectl logs -p web-1 --tail=100",
        "kubectl get secret db -o yaml",
        "aws secretsmanager get-secret-value --secret-id prod/db",
        "aws configure set region us-east-1",
        "docker login --password-stdin -u bot registry.example.com",
        "pg_dump --no-password app",
        "kubectl create token ci --duration 1h",
    ] {
        assert_eq!(redact(command), command);
    }
}

#[test]
fn ordinary_output_stays_intact() {
    for text in [
        "NAME                  TYPE                                  DATA   AGE\ndefault-token-x7k2p   kubernetes.io/service-account-token   3      10d\ndb                    Opaque                                2      3d",
        "2024-05-01T10:00:00Z INFO refreshing token for client web\n2024-05-01T10:00:01Z WARN token expired, retrying",
        r#"{"Name": "x", "Status": "Active", "NextToken": "eyJhbGciOiJIUzI1NiJ9"}"#,
        "Name:         db\nNamespace:    default\nType:  Opaque\n\nData\n====\npassword:  12 bytes\nusername:  5 bytes",
        "    Environment:\n      DB_PASSWORD:  <set to the key 'password' in secret 'db'>  Optional: false",
        "      secretKeyRef:\n        key: password\n        name: db\n  volumes:\n  - name: creds\n    secret:\n      secretName: db",
        "apiVersion: v1\ndata:\n  log_level: debug\nkind: ConfigMap\n",
        "Outputs:\n\ndb_password = (sensitive value)\nendpoint = \"db.internal\"",
        r#"{"usage": {"prompt_tokens": 12, "total_tokens": 40}, "automountServiceAccountToken": false}"#,
    ] {
        assert_eq!(redact(text), text);
    }
}

#[test]
fn by_value_plain_and_encoded() {
    let secrets = Secrets::new(["Sup3r$ecret-Value", "short", "Tr0ub4dor&3xyz"]);
    assert!(!secrets.is_empty());
    let text = "\
connected with Sup3r$ecret-Value\n\
data:\n  k: U3VwM3IkZWNyZXQtVmFsdWU=\n\
urlsafe: VHIwdWI0ZG9yJjN4eXo\n\
newline: U3VwM3IkZWNyZXQtVmFsdWUK\n\
inside: dXNlcjpTdXAzciRlY3JldC1WYWx1ZUBob3N0\n\
query: ?pw=Tr0ub4dor%263xyz\n\
json: \"Sup3r$ecret-Value\\n\"\n\
short stays short";
    let out = secrets.redact(text);
    assert_masked(
        &out,
        &[
            "Sup3r$ecret",
            "U3VwM3IkZWNy",
            "VHIwdWI0ZG9yJjN4eXo",
            "dXNlcjpTdXAz",
            "Tr0ub4dor",
        ],
    );
    assert!(
        out.contains("short stays short"),
        "short values are not masked by value"
    );
    assert!(out.contains("inside: [REDACTED]\n"), "{out}");
    assert!(out.contains("urlsafe: [REDACTED]\n"));
}

#[test]
fn by_value_url_safe_base64_with_special_bytes() {
    // Bytes that encode to `+` and `/` in standard base64, `-` and `_` in the URL-safe one.
    let value = "a>>>b???c~~~d";
    let secrets = Secrets::new([value]);
    for encoded in [
        "YT4+PmI/Pz9jfn5+ZA==",
        "YT4-PmI_Pz9jfn5-ZA",
        "YT4-PmI_Pz9jfn5-ZA==",
    ] {
        let out = secrets.redact(&format!("blob {encoded} end"));
        assert_eq!(out, "blob [REDACTED] end", "{encoded}");
    }
}

#[test]
fn short_values_are_still_masked_by_key() {
    let secrets = Secrets::new(["abc"]);
    assert!(secrets.is_empty());
    assert_eq!(
        secrets.redact("password: abc\nabc"),
        "password: [REDACTED]\nabc"
    );
}

#[test]
fn secrets_debug_shows_no_value() {
    let secrets = Secrets::new(["Sup3r$ecret-Value"]);
    let shown = format!("{secrets:?}");
    assert!(!shown.contains("Sup3r"), "{shown}");
    assert!(shown.contains("values: 1"));
}

#[test]
fn json_arguments() {
    let secrets = Secrets::new(["org-stored-credential"]);
    let args = json!({
        "command": "kubectl create secret generic db --from-literal=password=hunter2",
        "env": {"API_TOKEN": "tok_live_123", "REGION": "eu-west-1"},
        "credentials": {"user": "bot", "key": "k"},
        "note": "uses org-stored-credential",
        "password": null,
        "manifest": {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
                     "stringData": {"user": "admin", "url": "db.internal"}},
        "items": [{"name": "DB_PASSWORD", "value": "plain"}],
        "retries": 3
    });
    let out = secrets.redact_json(&args);
    assert_eq!(
        out,
        json!({
            "command": "kubectl create secret generic db --from-literal=password=[REDACTED]",
            "env": {"API_TOKEN": "[REDACTED]", "REGION": "eu-west-1"},
            "credentials": "[REDACTED]",
            "note": "uses [REDACTED]",
            "password": null,
            "manifest": {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
                         "stringData": {"user": "[REDACTED]", "url": "[REDACTED]"}},
            "items": [{"name": "DB_PASSWORD", "value": "[REDACTED]"}],
            "retries": 3
        })
    );
}

#[test]
fn shapes_without_keys() {
    let text = "ghp_0123456789abcdefghijABCDEFGHIJ github_pat_11ABCDEFG0123456789_abcdefghij \
                xoxb-123456789012-abcdefghij AIzaSyA1234567890abcdefghijklmnopqrstuv \
                ya29.a0AfH6SMBx1234567890abcdef glpat-abcdefghij0123456789 \
                https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXX \
                eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ.eyJpc3MiOiJrdWJlcm5ldGVzIn0.c2ln";
    let out = redact(text);
    assert_masked(
        &out,
        &[
            "ghp_",
            "github_pat_",
            "xoxb-",
            "AIzaSy",
            "ya29.",
            "glpat-",
            "T000/B000",
            "eyJhbGciOiJSUzI1",
        ],
    );
}

#[test]
fn pem_cut_by_the_output_cap_is_masked_to_the_end() {
    let out = redact("key:\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA");
    assert_eq!(out, "key:\n[REDACTED]");
}

#[test]
fn large_output_is_linear_enough() {
    let secrets = Secrets::new(["abc12345xyz"]);
    let line = "web-1   1/1   Running   0   token=abc12345 password: x, \"secret\": \"y\"\n";
    let cap = 64 * 1024;
    for (text, secret) in [
        (line.repeat(cap / line.len()), "abc12345"),
        // One long line: rules that look to the end of the line must not do so per match.
        ("curl -u a:b token=abc12345 ".repeat(cap / 28), "abc12345"),
        // One flat mapping of many entries: walked once, not once per entry.
        (
            "name: DB_PASSWORD\nvalue: hunter2\n".repeat(cap / 32),
            "hunter2",
        ),
        ("[".repeat(cap) + "{", "\u{0}"),
    ] {
        let started = std::time::Instant::now();
        let out = secrets.redact(&text);
        assert!(!out.contains(secret));
        let took = started.elapsed();
        assert!(took < std::time::Duration::from_secs(2), "{took:?}");
    }
}
