use std::os::unix::fs::PermissionsExt;

use super::*;

/// A PATH holding a fake `kubectl` shell script, and a working-directory root.
fn setup() -> (tempfile::TempDir, CloudExec) {
    let dir = tempfile::tempdir().unwrap();
    // Searchable by the sandbox user, which runs the tools.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o711),
    )
    .unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let script = r#"#!/bin/sh
case "$1" in
  get) echo "NAME READY STATUS"; echo "web-1 1/1 Running"; echo "args: $*"; echo "cwd: $(pwd)";;
  secret) echo "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";;
  fail) echo "error: the server doesn't have a resource type \"podz\"" >&2; exit 1;;
  flood) i=0; while [ $i -lt 20000 ]; do echo "line $i of a very chatty command"; i=$((i+1)); done;;
  hang) sleep 30;;
esac
"#;
    let path = bin.join("kubectl");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let sys_path = std::env::var_os("PATH").unwrap_or_default();
    let mut search = OsString::from(bin.as_os_str());
    search.push(":");
    search.push(sys_path);
    let exec = CloudExec {
        allowed: DEFAULT_CLIS.iter().map(|s| s.to_string()).collect(),
        search_path: search,
        // Under a data directory of its own: a PATH entry beside the sessions is never shown.
        workdir_root: dir.path().join("data/work"),
        timeout: Duration::from_millis(1500),
        output_limit: 16 * 1024,
        grace: Duration::from_secs(1),
        sandbox: Sandbox::new(Default::default()),
    };
    (dir, exec)
}

fn argv(exec: &CloudExec, command: &str) -> Result<Vec<String>, ToolError> {
    exec.parse(&json!({ "command": command }))
}

#[tokio::test]
async fn runs_an_argument_vector_in_the_session_directory() {
    let (dir, exec) = setup();
    let a = argv(&exec, "kubectl get pods -n 'my ns'").unwrap();
    assert_eq!(a, ["kubectl", "get", "pods", "-n", "my ns"]);
    let out = exec.run("user-1", "session-1", &a).await.unwrap();
    assert_eq!(out.exit_code, Some(0));
    assert!(out.output.contains("web-1 1/1 Running"));
    assert!(out.output.contains("args: get pods -n my ns"));
    // The session directory, as the sandbox shows it.
    assert!(out.output.contains("cwd: /work"), "{}", out.output);
    assert!(dir.path().join("data/work/user-1/session-1").is_dir());
    assert!(!out.truncated);
}

#[tokio::test]
async fn failures_keep_stderr_and_exit_code() {
    let (_dir, exec) = setup();
    let out = exec
        .run("u", "s", &argv(&exec, "kubectl fail").unwrap())
        .await
        .unwrap();
    assert_eq!(out.exit_code, Some(1));
    assert!(
        out.output.contains("[stderr]") && out.output.contains("podz"),
        "{}",
        out.output
    );
}

#[tokio::test]
async fn secrets_are_redacted_and_floods_truncated() {
    let (_dir, exec) = setup();
    let out = exec
        .run("u", "s", &argv(&exec, "kubectl secret").unwrap())
        .await
        .unwrap();
    assert!(!out.output.contains("wJalrXUtnFEMI"), "{}", out.output);
    assert!(out.output.contains("[REDACTED]"));
    let out = exec
        .run("u", "s", &argv(&exec, "kubectl flood").unwrap())
        .await
        .unwrap();
    assert!(out.truncated);
    assert!(out.output.len() < 17 * 1024);
    assert!(out
        .output
        .ends_with("[output truncated: more than 16384 bytes]"));
    assert_eq!(
        out.exit_code,
        Some(0),
        "the flood was drained to the end, not blocked"
    );
}

#[tokio::test]
async fn a_hanging_command_times_out_and_is_killed() {
    let (_dir, exec) = setup();
    let started = Instant::now();
    let err = exec
        .run("u", "s", &argv(&exec, "kubectl hang").unwrap())
        .await
        .unwrap_err();
    assert_eq!(err, ToolError::Timeout(1));
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn refuses_what_it_must_not_run() {
    let (_dir, exec) = setup();
    for (command, why) in [
        ("rm -rf /", "not an allowed CLI"),
        ("bash -c 'kubectl get pods'", "not an allowed CLI"),
        ("kubectl get pods | grep web", "pipes"),
        ("kubectl get pods; rm -rf /", "pipes"),
        ("kubectl get pods && echo hi", "pipes"),
        ("kubectl get pods > /etc/passwd", "pipes"),
        ("kubectl get $(whoami)", "pipes"),
        ("", "empty"),
        ("kubectl 'unclosed", "cannot split"),
    ] {
        let err = argv(&exec, command).unwrap_err();
        assert!(err.to_string().contains(why), "{command}: {err}");
    }
    assert!(exec.parse(&json!({ "cmd": "kubectl get pods" })).is_err());
    assert!(exec.parse(&json!({ "command": 42 })).is_err());
    // Ids that would escape the working-directory root.
    let a = argv(&exec, "kubectl get pods").unwrap();
    for (user, session) in [("..", "s"), ("u", "../../etc"), ("u/x", "s"), ("", "s")] {
        assert!(
            matches!(
                exec.run(user, session, &a).await,
                Err(ToolError::InvalidArguments(_))
            ),
            "{user} {session}"
        );
    }
    // Allowed, but not installed here.
    let err = exec
        .run("u", "s", &argv(&exec, "az vm list").unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(err, ToolError::Spawn { .. }) && err.to_string().contains("not installed"),
        "{err}"
    );
}
