//! What every CLI's table tests share, and the checks that span CLIs.

use super::*;

/// Splits a test's command line on whitespace (no quoting needed in these tables).
pub(super) fn argv(line: &str) -> Vec<String> {
    line.split_whitespace().map(String::from).collect()
}

/// Checks each command line's class, naming the line and the reason on failure.
pub(super) fn check(cases: &[(&str, Class)]) {
    for (line, want) in cases {
        let got = classify(&argv(line));
        assert_eq!(got.class, *want, "{line}: {}", got.reason);
    }
}

#[test]
fn empty_and_unknown_programs_are_writes() {
    assert_eq!(
        classify(&[]),
        Classification::write("empty command"),
        "an empty argv"
    );
    for line in [
        "bash -c true",
        "/usr/bin/kubectl get pods",
        "./aws s3 ls",
        "Kubectl get",
    ] {
        let got = classify(&argv(line));
        assert_eq!(got, Classification::write("unknown program"), "{line}");
    }
}

#[test]
fn classes_order_by_severity_and_serialize_lowercase() {
    assert!(Class::Read < Class::Write);
    assert!(Class::Write < Class::Destructive);
    assert!(Class::Destructive < Class::Forbidden);
    let json = serde_json::to_value(classify(&argv("kubectl get pods"))).unwrap();
    assert_eq!(json["class"], "read");
    assert_eq!(json["reason"], "`kubectl get` only reads");
    let back: Class = serde_json::from_str("\"destructive\"").unwrap();
    assert_eq!(back, Class::Destructive);
}

#[test]
fn reasons_never_echo_values() {
    let secret = "hunter2-Secret";
    for line in [
        format!("kubectl {secret} get"),
        format!("kubectl --token {secret} get pods"),
        format!("kubectl get secret {secret} -o yaml"),
        format!("aws --x {secret} s3 ls"),
        format!("aws ssm get-parameter --name {secret} --with-decryption"),
        format!("gcloud compute ssh {secret}"),
        format!("gcloud {secret} list"),
        format!("az {secret} show"),
        format!("helm {secret} install"),
        format!("terraform {secret}"),
        format!("terraform -chdir={secret} plan"),
    ] {
        let got = classify(&argv(&line));
        assert!(!got.reason.contains(secret), "{line}: {}", got.reason);
        assert!(!got.reason.contains("hunter2"), "{line}: {}", got.reason);
    }
}

#[test]
fn shown_words_are_subcommand_shaped() {
    assert_eq!(shown("get-caller-identity"), "get-caller-identity");
    assert_eq!(shown("Secret"), "<arg>");
    assert_eq!(shown("a=b"), "<arg>");
    assert_eq!(shown("/tmp/x"), "<arg>");
    assert_eq!(shown(&"a".repeat(MAX_SHOWN + 1)), "<arg>");
    assert_eq!(quote("aws", &["iam", "X"]), "`aws iam <arg>`");
}
