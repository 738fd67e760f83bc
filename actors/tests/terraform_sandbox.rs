//! Terraform in the sandbox: a run stopped at its timeout keeps the state it wrote (it is
//! interrupted, waited for, and saved; an older stored copy never replaces it), and a real
//! terraform refuses to run commands on the node (`local-exec`, `external`) or unlisted
//! providers, each shown working without the guard first where this machine allows it.

#[path = "common/escape.rs"]
mod escape;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use aurora_actors::tools::terraform::{Action, Owner, Terraform, TerraformPolicy};
use aurora_actors::tools::ToolError;
use aurora_storage::objects::{ObjectKey, ObjectStore};
use escape::{exists, node, require_sandbox};
use uuid::Uuid;

/// A terraform whose state is real JSON (lineage and serial). `apply slow` writes a state,
/// then works until interrupted, when it writes a newer one, as terraform does on Ctrl-C.
const FAKE: &str = r#"#!/bin/sh
serial() { sed -n 's/.*"serial":\([0-9]*\).*/\1/p' terraform.tfstate 2>/dev/null; }
state() { printf '{"version":4,"lineage":"lin-1","serial":%s}' "$1" > terraform.tfstate; }
case "$1" in
  init) mkdir -p .terraform; echo "initialized";;
  plan) echo "serial $(serial)";;
  apply)
    n=$(serial); n=$((${n:-0}+1)); state $n
    if [ "$2" = "slow" ]; then
      trap 'n=$((n+1)); state $n; echo "interrupted at serial $n"; exit 130' INT
      sleep 60 & wait $!
    fi
    echo "applied serial $n";;
esac
"#;

fn terraform(n: &escape::Node, bin: &std::path::Path, timeout: Duration) -> Terraform {
    let mut exec = n.exec.clone();
    let mut path = std::ffi::OsString::from(bin.as_os_str());
    path.push(":/usr/local/bin:/usr/bin:/bin");
    exec.search_path = path;
    exec.timeout = timeout;
    Terraform {
        exec,
        store: ObjectStore::local(n.data.join("objects")),
        policy: TerraformPolicy {
            providers: vec!["hashicorp/aws".into(), "hashicorp/null".into()],
            mirror: None,
            allow_exec: false,
        },
    }
}

fn owner() -> Owner {
    Owner {
        org_id: Uuid::now_v7(),
        user_id: Uuid::now_v7(),
        session_id: Uuid::now_v7(),
    }
}

#[tokio::test]
async fn a_timed_out_apply_keeps_the_state_it_wrote() {
    let n = node();
    require_sandbox(&n);
    let bin = n.data.parent().unwrap().join("fake-tf");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::write(bin.join("terraform"), FAKE).unwrap();
    std::fs::set_permissions(
        bin.join("terraform"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let tf = terraform(&n, &bin, Duration::from_secs(2));
    let o = owner();
    let run = |argv: &[&str]| -> Vec<String> { argv.iter().map(|s| s.to_string()).collect() };
    let call = Default::default();
    let out = tf
        .run_cli(&o, &run(&["terraform", "init"]), &call)
        .await
        .unwrap();
    assert!(out.output.contains("initialized"), "{}", out.output);
    let out = tf
        .run_cli(&o, &run(&["terraform", "apply"]), &call)
        .await
        .unwrap();
    assert!(out.output.contains("applied serial 1"), "{}", out.output);

    // The slow apply writes serial 2, is interrupted at the timeout and writes serial 3.
    let err = tf
        .run_cli(&o, &run(&["terraform", "apply", "slow"]), &call)
        .await
        .unwrap_err();
    assert_eq!(err, ToolError::Timeout(2));
    let key = ObjectKey::new(
        o.org_id,
        o.user_id,
        &format!("terraform/{}/terraform.tfstate", o.session_id),
    )
    .unwrap();
    let stored = String::from_utf8(tf.store.get(&key).await.unwrap().unwrap()).unwrap();
    assert!(stored.contains("\"serial\":3"), "{stored}");

    // The next run sees serial 3, not the older stored serial 1.
    let out = tf
        .run_cli(&o, &run(&["terraform", "plan"]), &call)
        .await
        .unwrap();
    assert!(out.output.contains("serial 3"), "{}", out.output);

    // An older state of the same lineage left in the directory does not replace it either.
    let work = n.workdir(&o.user_id.to_string(), &o.session_id.to_string());
    std::fs::write(
        work.join("terraform.tfstate"),
        r#"{"version":4,"lineage":"lin-1","serial":1}"#,
    )
    .unwrap();
    let out = tf
        .run_cli(&o, &run(&["terraform", "plan"]), &call)
        .await
        .unwrap();
    assert!(out.output.contains("serial 3"), "{}", out.output);
}

/// The real terraform, when this machine has one (the suite's set-up checks for it).
fn real_terraform() -> std::path::PathBuf {
    which::which("terraform").expect("terraform is installed (scripts/test.sh checks)")
}

const LOCAL_EXEC: &str = r#"
resource "terraform_data" "x" {
  provisioner "local-exec" {
    command = "echo pwned > local-exec-ran"
  }
}
"#;

#[tokio::test]
async fn local_exec_and_unlisted_providers_are_refused() {
    let n = node();
    require_sandbox(&n);
    let tf_bin = real_terraform();
    // Without the guard, terraform runs the provisioner's command on the machine
    // (terraform_data is built in: no provider download needed).
    let open = tempfile::tempdir().unwrap();
    std::fs::write(open.path().join("main.tf"), LOCAL_EXEC).unwrap();
    for args in [
        &["init", "-input=false"][..],
        &["apply", "-auto-approve", "-input=false"],
    ] {
        let st = std::process::Command::new(&tf_bin)
            .args(args)
            .current_dir(open.path())
            .env("CHECKPOINT_DISABLE", "1")
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "{}",
            String::from_utf8_lossy(&st.stderr)
        );
    }
    assert!(exists(&open.path().join("local-exec-ran")));

    let tf = terraform(&n, tf_bin.parent().unwrap(), Duration::from_secs(60));
    let o = owner();
    let write = |name: &str, text: &str| {
        Action::Write(BTreeMap::from([(name.to_string(), text.to_string())]))
    };
    tf.run(&o, &write("main.tf", LOCAL_EXEC)).await.unwrap();
    let err = tf.run(&o, &Action::Apply).await.unwrap_err();
    assert!(
        matches!(&err, ToolError::InvalidArguments(m) if m.contains("local-exec")),
        "{err:?}"
    );
    let work = n.workdir(&o.user_id.to_string(), &o.session_id.to_string());
    assert!(!exists(&work.join("local-exec-ran")));

    for (text, word) in [
        (
            r#"data "external" "x" { program = ["sh", "-c", "id"] }"#,
            "external",
        ),
        (
            "terraform {\n  required_providers {\n    evil = { source = \"evilcorp/evil\" }\n  }\n}\n",
            "evilcorp/evil",
        ),
    ] {
        let o = owner();
        tf.run(&o, &write("main.tf", text)).await.unwrap();
        let err = tf.run(&o, &Action::Plan).await.unwrap_err();
        assert!(
            matches!(&err, ToolError::InvalidArguments(m) if m.contains(word)),
            "{err:?}"
        );
    }

    // Configuration the guard accepts runs in the sandbox with the real terraform.
    let o = owner();
    tf.run(
        &o,
        &write(
            "main.tf",
            "resource \"terraform_data\" \"ok\" { input = \"x\" }\n",
        ),
    )
    .await
    .unwrap();
    let out = tf.run(&o, &Action::Apply).await.unwrap();
    assert_eq!(out.exit_code, Some(0), "{}", out.output);
    assert!(out.output.contains("Apply complete"), "{}", out.output);
}
