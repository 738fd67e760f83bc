//! aws (argparse): `aws [options] <service> <operation> [options]`, global options anywhere,
//! long options only, and any unambiguous prefix of one accepted (`--prof` is `--profile`).
//!
//! An operation reads when its name says so (`describe-`, `list-`, `get-`, ...), except the
//! operations that hand out a secret or a credential: those read nothing in the cloud, but what
//! they print is a key to it, so a person approves them like a write.

use super::flags::{self, find_abbreviated, Reading, Spec};
use super::{destroys, not_a_known_read, only_reads, quote, worst_reading, Classification};

#[rustfmt::skip]
const SPEC: Spec = Spec {
    long_valued: &[
        "--region", "--output", "--query", "--endpoint-url", "--color", "--ca-bundle",
        "--cli-read-timeout", "--cli-connect-timeout", "--cli-binary-format",
    ],
    long_boolean: &[
        "--debug", "--no-verify-ssl", "--no-paginate", "--no-sign-request", "--no-cli-pager",
        "--cli-auto-prompt", "--no-cli-auto-prompt", "--version",
    ],
    short_valued: "",
    short_boolean: "",
};

/// Operation name prefixes (or whole names) that read.
#[rustfmt::skip]
const READ_PREFIXES: &[&str] = &[
    "describe-", "list-", "get-", "head-", "search-", "lookup-", "batch-get-", "select-",
    "estimate-", "simulate-", "scan", "query", "filter-log-events", "tail", "validate-template",
    "transact-get-items",
];

/// Operation name prefixes that delete, stop or cut something off.
#[rustfmt::skip]
const DESTRUCTIVE_PREFIXES: &[&str] = &[
    "delete-", "batch-delete-", "terminate-", "remove-", "deregister-", "detach-",
    "disassociate-", "revoke-", "stop-", "reboot-", "purge-", "cancel-", "disable-",
];

/// Operations that look like reads but print a secret or a credential, or write a local file.
#[rustfmt::skip]
const NOT_READS: &[(&str, &str)] = &[
    ("secretsmanager", "get-secret-value"), ("secretsmanager", "batch-get-secret-value"),
    ("ecr", "get-login-password"), ("ecr", "get-authorization-token"), ("ecr", "get-login"),
    ("ecr-public", "get-login-password"), ("ecr-public", "get-authorization-token"),
    ("codeartifact", "get-authorization-token"),
    ("sts", "get-session-token"), ("sts", "get-federation-token"),
    ("eks", "get-token"),
    ("redshift", "get-cluster-credentials"), ("redshift", "get-cluster-credentials-with-iam"),
    ("redshift-serverless", "get-credentials"),
    ("lightsail", "get-instance-access-details"),
    ("lightsail", "get-relational-database-master-user-password"),
    ("ec2", "get-password-data"),
    ("cognito-identity", "get-credentials-for-identity"),
    ("cognito-identity", "get-open-id-token"),
    ("cognito-identity", "get-open-id-token-for-developer-identity"),
    ("cognito-idp", "describe-user-pool-client"),
    ("sso", "get-role-credentials"),
    ("appsync", "list-api-keys"),
    ("s3api", "get-object"), ("s3api", "get-object-torrent"), ("glacier", "get-job-output"),
];

pub(super) fn classify(args: &[String]) -> Classification {
    if find_abbreviated(args, &["profile"]).is_some() {
        return Classification::forbidden(
            "`--profile` is refused: the node supplies the credentials",
        );
    }
    worst_reading(flags::readings(args, &SPEC, 2), |r| by_operation(args, r))
}

fn by_operation(args: &[String], r: &Reading) -> Classification {
    let (service, op) = match r.words[..] {
        [] => return Classification::read("`aws` without a command prints usage"),
        [service] => (service, None),
        [service, op, ..] => (service, Some(op)),
    };
    let cmd = |words: &[&str]| quote("aws", words);
    match (service, op) {
        ("configure", _) => Classification::forbidden(format!(
            "{} is refused: it edits the node's credentials and configuration",
            cmd(&[service])
        )),
        ("login" | "logout", _) => signs_in(&cmd(&[service])),
        ("sso", Some(op @ ("login" | "logout"))) => signs_in(&cmd(&[service, op])),
        ("help", _) => only_reads("aws", &[service]),
        (_, None) => not_a_known_read("aws", &[service]),
        ("s3", Some(op)) => s3(args, op),
        (_, Some(op)) => operation(args, service, op),
    }
}

fn signs_in(cmd: &str) -> Classification {
    Classification::forbidden(format!(
        "{cmd} is refused: the node supplies the credentials"
    ))
}

/// The high-level `s3` commands, which are not named like API operations.
fn s3(args: &[String], op: &str) -> Classification {
    match op {
        "ls" => only_reads("aws", &["s3", op]),
        "rm" | "rb" => destroys("aws", &["s3", op]),
        "mv" => Classification::destructive("`aws s3 mv` deletes the source objects"),
        "sync" if find_abbreviated(args, &["delete"]).is_some() => Classification::destructive(
            "`aws s3 sync --delete` deletes objects missing from the source",
        ),
        // cp, sync, mb, presign (a URL carrying a signature), website.
        _ => not_a_known_read("aws", &["s3", op]),
    }
}

fn operation(args: &[String], service: &str, op: &str) -> Classification {
    let words = [service, op];
    let reveals = |why: &str| {
        Classification::write(format!("{} {why}: not a plain read", quote("aws", &words)))
    };
    if NOT_READS.contains(&(service, op)) {
        return reveals("prints a secret or a credential, or writes a local file");
    }
    let decrypts = service == "ssm"
        && op.starts_with("get-parameter")
        && find_abbreviated(
            args,
            &["with-decryption", "cli-input-json", "cli-input-yaml"],
        )
        .is_some();
    if decrypts {
        return reveals("may print decrypted parameter values");
    }
    let includes_keys = service == "apigateway"
        && matches!(op, "get-api-key" | "get-api-keys")
        && find_abbreviated(args, &["include-value", "include-values"]).is_some();
    if includes_keys {
        return reveals("prints API key values");
    }
    if matches!(op, "wait" | "help") || READ_PREFIXES.iter().any(|p| op.starts_with(p)) {
        return only_reads("aws", &words);
    }
    if DESTRUCTIVE_PREFIXES.iter().any(|p| op.starts_with(p)) {
        return destroys("aws", &words);
    }
    not_a_known_read("aws", &words)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{argv, check};
    use super::super::{classify, Class::*};

    #[test]
    fn reads() {
        check(&[
            ("aws sts get-caller-identity", Read),
            ("aws ec2 describe-instances --filters Name=x,Values=y", Read),
            ("aws --region us-east-1 s3 ls", Read),
            ("aws --region=us-east-1 --output json s3 ls s3://b", Read),
            (
                "aws s3 ls --region us-east-1 --endpoint-url http://127.0.0.1:9000",
                Read,
            ),
            ("aws --no-verify-ssl --debug iam list-users", Read),
            ("aws dynamodb scan --table-name t", Read),
            ("aws dynamodb query --table-name t", Read),
            ("aws dynamodb batch-get-item --request-items x", Read),
            ("aws logs filter-log-events --log-group-name g", Read),
            ("aws logs tail g --follow", Read),
            (
                "aws cloudformation validate-template --template-body x",
                Read,
            ),
            (
                "aws iam simulate-principal-policy --policy-source-arn a",
                Read,
            ),
            ("aws iam get-credential-report", Read),
            ("aws ssm get-parameter --name x", Read),
            ("aws apigateway get-api-keys", Read),
            ("aws ec2 wait instance-running --instance-ids i", Read),
            ("aws s3api head-object --bucket b --key k", Read),
            ("aws", Read),
        ]);
    }

    #[test]
    fn writes() {
        check(&[
            ("aws iam create-access-key --user-name u", Write),
            (
                "aws iam attach-user-policy --user-name u --policy-arn a",
                Write,
            ),
            ("aws ec2 run-instances --image-id ami", Write),
            (
                "aws --region us-east-1 ec2 run-instances --image-id ami",
                Write,
            ),
            ("aws ec2 run-instances --dry-run --image-id ami", Write),
            (
                "aws ec2 authorize-security-group-ingress --group-id g",
                Write,
            ),
            ("aws s3 cp a s3://b/a", Write),
            ("aws s3 sync . s3://b", Write),
            ("aws s3 presign s3://b/k", Write),
            ("aws s3 mb s3://b", Write),
            ("aws lambda invoke --function-name f out", Write),
            ("aws kms decrypt --ciphertext-blob x", Write),
            ("aws rds generate-db-auth-token --hostname h", Write),
            (
                "aws sts assume-role --role-arn a --role-session-name s",
                Write,
            ),
            ("aws sqs receive-message --queue-url q", Write),
            ("aws ec2", Write),
            // Reads in name that print a secret or a credential.
            ("aws secretsmanager get-secret-value --secret-id x", Write),
            ("aws ssm get-parameter --name x --with-decryption", Write),
            ("aws ssm get-parameters-by-path --path / --with-decr", Write),
            ("aws ssm get-parameter --cli-input-json file://x", Write),
            ("aws ecr get-login-password", Write),
            ("aws ecr get-authorization-token", Write),
            ("aws sts get-session-token", Write),
            ("aws sts get-federation-token --name n", Write),
            ("aws eks get-token --cluster-name c", Write),
            ("aws ec2 get-password-data --instance-id i", Write),
            (
                "aws apigateway get-api-key --api-key k --include-value",
                Write,
            ),
            ("aws s3api get-object --bucket b --key k out", Write),
            // An unknown option may take `s3` as its value: then `ls` is the service.
            ("aws --bogus s3 ls", Write),
            ("aws --region us-east-1 --bogus x iam list-users", Write),
        ]);
    }

    #[test]
    fn destructive() {
        check(&[
            ("aws ec2 terminate-instances --instance-ids i", Destructive),
            ("aws ec2 stop-instances --instance-ids i", Destructive),
            ("aws ec2 reboot-instances --instance-ids i", Destructive),
            ("aws s3api delete-object --bucket b --key k", Destructive),
            (
                "aws iam detach-user-policy --user-name u --policy-arn a",
                Destructive,
            ),
            (
                "aws ec2 revoke-security-group-ingress --group-id g",
                Destructive,
            ),
            (
                "aws ecr batch-delete-image --repository-name r",
                Destructive,
            ),
            ("aws sqs purge-queue --queue-url q", Destructive),
            ("aws s3 rm s3://b/k", Destructive),
            ("aws s3 rb s3://b --force", Destructive),
            ("aws s3 mv s3://b/a s3://b/c", Destructive),
            ("aws s3 sync . s3://b --delete", Destructive),
            ("aws s3 sync . s3://b --del", Destructive),
            (
                "aws --region us-east-1 s3 rm s3://b/k --recursive",
                Destructive,
            ),
        ]);
    }

    #[test]
    fn forbidden() {
        check(&[
            ("aws configure set credential_process /tmp/x", Forbidden),
            ("aws configure import --csv file://x", Forbidden),
            ("aws configure export-credentials", Forbidden),
            ("aws configure sso", Forbidden),
            ("aws configure list", Forbidden),
            ("aws --region us-east-1 configure set region x", Forbidden),
            ("aws --profile other s3 ls", Forbidden),
            ("aws s3 ls --profile=other", Forbidden),
            ("aws s3 ls --prof other", Forbidden),
            ("aws sso login", Forbidden),
            ("aws sso logout", Forbidden),
            ("aws login", Forbidden),
        ]);
    }

    #[test]
    fn reasons_name_the_operation() {
        let reason = |line: &str| classify(&argv(line)).reason;
        assert_eq!(
            reason("aws iam create-access-key --user-name u"),
            "`aws iam create-access-key` is not a known read"
        );
        assert_eq!(reason("aws --region x s3 ls"), "`aws s3 ls` only reads");
        assert_eq!(
            reason("aws ec2 terminate-instances --instance-ids i"),
            "`aws ec2 terminate-instances` destroys resources"
        );
    }
}
