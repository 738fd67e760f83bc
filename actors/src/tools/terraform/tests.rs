use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use super::*;

/// A fake `terraform` that keeps a counter as its "state": apply adds one, destroy resets it,
/// plan reports what it found and which configuration files it sees.
pub const FAKE_TERRAFORM: &str = r#"#!/bin/sh
case "$1" in
  init) mkdir -p .terraform; echo "Terraform has been successfully initialized!";;
  plan) echo "files: $(ls *.tf 2>/dev/null | tr '\n' ' ')"; echo "state serial $(cat terraform.tfstate 2>/dev/null || echo none)"; echo "Plan: 1 to add, 0 to change, 0 to destroy.";;
  apply) n=$(cat terraform.tfstate 2>/dev/null || echo 0); n=$((n+1)); echo $n > terraform.tfstate; echo "Apply complete! serial $n";;
  destroy) echo 0 > terraform.tfstate; echo "Destroy complete!";;
  *) echo "unknown $1" >&2; exit 1;;
esac
"#;

fn setup() -> (tempfile::TempDir, Terraform, Owner) {
    let dir = tempfile::tempdir().unwrap();
    // Searchable by the sandbox user, which runs the tools.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o711),
    )
    .unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let path = bin.join("terraform");
    std::fs::write(&path, FAKE_TERRAFORM).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut search = OsString::from(bin.as_os_str());
    search.push(":/usr/bin:/bin");
    let exec = CloudExec {
        allowed: vec!["terraform".into()],
        search_path: search,
        // Under a data directory of its own: a PATH entry beside the sessions is never shown.
        workdir_root: dir.path().join("data/work"),
        timeout: Duration::from_secs(5),
        output_limit: 16 * 1024,
        grace: Duration::from_secs(2),
        sandbox: crate::tools::sandbox::Sandbox::new(Default::default()),
    };
    let tf = Terraform {
        exec,
        store: ObjectStore::local(dir.path().join("objects")),
        policy: TerraformPolicy {
            providers: vec!["hashicorp/aws".into()],
            mirror: None,
            allow_exec: false,
        },
    };
    let owner = Owner {
        org_id: Uuid::now_v7(),
        user_id: Uuid::now_v7(),
        session_id: Uuid::now_v7(),
    };
    (dir, tf, owner)
}

#[test]
fn parses_actions_and_refuses_bad_files() {
    let write = Terraform::parse(&json!({ "action": "write", "files": { "main.tf": "x" } }));
    assert_eq!(write.unwrap().command(), "terraform write main.tf");
    assert_eq!(
        Terraform::parse(&json!({ "action": "apply" })).unwrap(),
        Action::Apply
    );
    assert!(Action::Plan.is_read_only() && !Action::Apply.is_read_only());
    for bad in [
        json!({}),
        json!({ "action": "import" }),
        json!({ "action": "write" }),
        json!({ "action": "write", "files": {} }),
        json!({ "action": "write", "files": { "../escape.tf": "x" } }),
        json!({ "action": "write", "files": { "notes.txt": "x" } }),
        json!({ "action": "write", "files": { ".hidden.tf": "x" } }),
        json!({ "action": "write", "files": { "main.tf": 3 } }),
        json!({ "action": "write", "files": { "main.tf": "x".repeat(MAX_FILE_BYTES + 1) } }),
    ] {
        assert!(
            matches!(Terraform::parse(&bad), Err(ToolError::InvalidArguments(_))),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn state_and_configuration_survive_losing_the_working_directory() {
    let (dir, tf, owner) = setup();
    let files = BTreeMap::from([(
        "main.tf".to_string(),
        "resource \"terraform_data\" \"y\" {}".to_string(),
    )]);
    let out = tf.run(&owner, &Action::Write(files)).await.unwrap();
    assert!(out.output.contains("wrote main.tf"), "{}", out.output);

    let out = tf.run(&owner, &Action::Plan).await.unwrap();
    assert!(
        out.output.contains("successfully initialized"),
        "{}",
        out.output
    );
    assert!(out.output.contains("files: main.tf"), "{}", out.output);
    assert!(out.output.contains("state serial none"), "{}", out.output);
    let out = tf.run(&owner, &Action::Apply).await.unwrap();
    assert!(out.output.contains("serial 1"), "{}", out.output);

    // The node loses its disk (or the session moves): state and files come back from storage.
    std::fs::remove_dir_all(dir.path().join("data/work")).unwrap();
    let out = tf.run(&owner, &Action::Plan).await.unwrap();
    assert!(out.output.contains("files: main.tf"), "{}", out.output);
    assert!(out.output.contains("state serial 1"), "{}", out.output);
    let out = tf.run(&owner, &Action::Apply).await.unwrap();
    assert!(out.output.contains("serial 2"), "{}", out.output);

    // `terraform` through cloud_exec sees and saves the same state.
    std::fs::remove_dir_all(dir.path().join("data/work")).unwrap();
    let argv: Vec<String> = ["terraform", "apply"].map(String::from).to_vec();
    let out = tf.run_cli(&owner, &argv, &Call::default()).await.unwrap();
    assert!(out.output.contains("serial 3"), "{}", out.output);

    // Another session of the same user has its own state.
    let other = Owner {
        session_id: Uuid::now_v7(),
        ..owner
    };
    let out = tf.run(&other, &Action::Plan).await.unwrap();
    assert!(out.output.contains("state serial none"), "{}", out.output);
    assert!(out.output.contains("files: \n"), "{}", out.output);
    assert!(!out.output.contains("main.tf"), "{}", out.output);
}
