//! Every org's tools see only that org's credentials, fetched from the secret store (the sealed
//! file, and a real OpenBao) at each call, and the secret never comes back: not in frames, not
//! in the history, not in the audit rows. The fake `aws` prints its secret reversed (which no
//! redaction recognises, so the test can tell whose key arrived) and as is (which must be
//! masked).

mod common;

use aurora_fakes::openbao::{OpenBao, ROOT_TOKEN};
use aurora_fakes::Reply;
use common::ws::{chat_node, new_session, open, query, turn};
use common::TestNode;
use serde_json::{json, Value};

const AWS: &str = "#!/bin/sh\n\
    printf 'reversed=%s\\n' \"$(printf %s \"$AWS_SECRET_ACCESS_KEY\" | rev)\"\n\
    echo \"region=$AWS_DEFAULT_REGION\"\n\
    echo \"plain=$AWS_SECRET_ACCESS_KEY\"\n\
    env | grep -c '^SECRET_KEY=\\|^LLM_API_KEY=\\|^DATABASE_URL=' || true\n";

fn aws_call(id: &str) -> Reply {
    Reply::tool_call(
        id,
        "cloud_exec",
        &["{\"command\": \"aws sts get-caller-identity\"}"],
        (10, 2),
    )
}

fn reversed(s: &str) -> String {
    s.chars().rev().collect()
}

struct Org {
    token: String,
    secret: String,
}

async fn org(t: &TestNode, name: &str, region: &str) -> Org {
    let token = t.register(&format!("admin@{name}.io"), name).await;
    let secret = format!("{name}-aws-secret-{}", uuid::Uuid::new_v4().simple());
    let (status, body) = t
        .post(
            "/api/org/credentials",
            Some(&token),
            json!({ "provider": "aws", "name": "prod", "access_key_id": "AKIAIOSFODNN7EXAMPLE",
                    "secret_access_key": secret, "region": region }),
        )
        .await;
    assert_eq!(status.as_u16(), 201, "{body}");
    Org { token, secret }
}

async fn tool_output(t: &TestNode, o: &Org) -> (String, Vec<Value>, String) {
    let sid = new_session(t, &o.token).await;
    let mut ws = open(t, &o.token).await;
    query(&mut ws, &sid, "who am I on AWS?", "agent").await;
    let frames = turn(&mut ws, "execute").await;
    let output = frames
        .iter()
        .find(|f| f["type"] == "tool_result")
        .map(|f| f["data"]["output"].as_str().unwrap().to_string())
        .unwrap_or_else(|| panic!("no tool_result: {frames:?}"));
    (output, frames, sid)
}

async fn each_org_sees_its_own(t: &TestNode) {
    let acme = org(t, "acme", "us-east-1").await;
    let globex = org(t, "globex", "eu-west-1").await;
    for (me, other, region) in [(&acme, &globex, "us-east-1"), (&globex, &acme, "eu-west-1")] {
        let (output, frames, sid) = tool_output(t, me).await;
        assert!(output.contains(&reversed(&me.secret)), "{output}");
        assert!(output.contains(&format!("region={region}")), "{output}");
        assert!(!output.contains(&reversed(&other.secret)), "{output}");
        // The node's own variables never reach the tool.
        assert!(output.lines().any(|l| l.trim() == "0"), "{output}");
        // The secret itself is masked wherever it would show.
        assert!(output.contains("plain=[REDACTED]"), "{output}");
        let all_frames = serde_json::to_string(&frames).unwrap();
        assert!(!all_frames.contains(&me.secret), "{all_frames}");
        let (_, history) = t
            .get(&format!("/chat_api/sessions/{sid}"), Some(&me.token))
            .await;
        assert!(!history.to_string().contains(&me.secret), "{history}");
    }
    // Nor anywhere the node wrote: the database and its WAL (audit rows, messages, usage,
    // credential references), the sealed secrets file, the session directories.
    for o in [&acme, &globex] {
        let found = files_containing(t.data_dir(), o.secret.as_bytes());
        assert!(found.is_empty(), "a secret is stored in clear in {found:?}");
    }
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &std::path::Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            let ft = entry.file_type().unwrap();
            if ft.is_dir() {
                todo.push(path);
            } else if ft.is_file() {
                let bytes = std::fs::read(&path).unwrap_or_default();
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    found.push(path);
                }
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_org_gets_its_own_credentials_from_the_sealed_file() {
    let (t, _fake, dir) = chat_node(
        vec![
            aws_call("c1"),
            Reply::text(&["acme"], (5, 1)),
            aws_call("c2"),
            Reply::text(&["globex"], (5, 1)),
        ],
        "#!/bin/sh\n",
        &[],
    )
    .await;
    write_aws(dir.path());
    each_org_sees_its_own(&t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_org_gets_its_own_credentials_from_openbao() {
    let bao = tokio::task::spawn_blocking(OpenBao::start).await.unwrap();
    let (t, _fake, dir) = chat_node(
        vec![
            aws_call("c1"),
            Reply::text(&["acme"], (5, 1)),
            aws_call("c2"),
            Reply::text(&["globex"], (5, 1)),
        ],
        "#!/bin/sh\n",
        &[("VAULT_ADDR", &bao.addr), ("VAULT_TOKEN", ROOT_TOKEN)],
    )
    .await;
    write_aws(dir.path());
    each_org_sees_its_own(&t).await;
    drop(bao);
}

fn write_aws(dir: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("aws");
    std::fs::write(&path, AWS).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}
