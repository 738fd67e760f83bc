//! The secret store on both backends: the sealed file under a data directory, and Vault KV v2
//! against a real OpenBao server (stopped and started again mid-test); and the credentials
//! repository on top of it, whose rows hold references only.

mod common;

use std::os::unix::fs::PermissionsExt;

use aurora_config::DatabaseConfig;
use aurora_fakes::openbao::{OpenBao, ROOT_TOKEN};
use aurora_storage::credentials::{Credentials, NewCredential};
use aurora_storage::secrets::{SealedFile, SecretData, SecretPath, SecretStore, VaultStore};
use aurora_storage::{Db, StorageError};
use sea_orm::ConnectionTrait;
use serde_json::json;
use uuid::Uuid;

const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
const SECRET: &str = "wJalrXUtnFEMI-the-secret-value-K7MDENG";

fn secret(value: &str) -> SecretData {
    [
        ("access_key_id", "AKIAEXAMPLE"),
        ("secret_access_key", value),
    ]
    .into_iter()
    .collect()
}

/// Get, put, replace, the same id under another org, delete (twice): the same on any backend.
/// Returns the path of a secret it leaves in place.
async fn round_trips(store: &SecretStore) -> SecretPath {
    let (org_a, org_b, id) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let path = SecretPath::credential(org_a, id);
    assert_eq!(store.get(&path).await.unwrap(), None);
    store.put(&path, &secret("first")).await.unwrap();
    store.put(&path, &secret(SECRET)).await.unwrap();
    let got = store.get(&path).await.unwrap().expect("stored");
    assert_eq!(got, secret(SECRET));
    assert_eq!(
        store.get(&SecretPath::credential(org_b, id)).await.unwrap(),
        None
    );
    store.health().await.unwrap();
    store.delete(&path).await.unwrap();
    store.delete(&path).await.unwrap();
    assert_eq!(store.get(&path).await.unwrap(), None);
    // Left in place for the callers' own checks.
    store.put(&path, &secret(SECRET)).await.unwrap();
    path
}

#[tokio::test]
async fn sealed_file_round_trips_and_holds_no_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secrets.sealed");
    let store = SecretStore::Sealed(SealedFile::open(file.clone(), KEY).await.unwrap());
    store.health().await.unwrap();
    assert!(!file.exists(), "nothing is written before the first secret");
    let kept = round_trips(&store).await;

    // Only the sealed file is left (no temporary file), readable by its owner only, and no
    // byte sequence of it is the secret or one of the field names.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["secrets.sealed"]);
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let bytes = std::fs::read(&file).unwrap();
    for needle in [SECRET.as_bytes(), b"secret_access_key", b"credentials"] {
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "{} found in the sealed file",
            String::from_utf8_lossy(needle)
        );
    }

    // Opened again with the same key (a restarted node), the secrets are there.
    let again = SealedFile::open(file.clone(), KEY).await.unwrap();
    assert_eq!(again.get(&kept).await.unwrap(), Some(secret(SECRET)));

    // A wrong key is refused at open, clearly and without the secret.
    let err = SealedFile::open(file.clone(), b"another key that is 32 bytes long")
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(message.contains("SECRET_KEY"), "{message}");
    assert!(!message.contains(SECRET), "{message}");

    // A changed byte: the store already open refuses its next read, and so does a new open.
    let mut tampered = bytes.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0x01;
    std::fs::write(&file, &tampered).unwrap();
    let err = store.health().await.unwrap_err();
    assert!(err.to_string().contains("altered"), "{err}");
    let err = store
        .get(&SecretPath::credential(Uuid::now_v7(), Uuid::now_v7()))
        .await
        .unwrap_err();
    assert!(!err.to_string().contains(SECRET), "{err}");
    assert!(SealedFile::open(file.clone(), KEY).await.is_err());
    // Not a sealed file at all.
    std::fs::write(&file, b"{\"secrets\": {}}").unwrap();
    let err = SealedFile::open(file, KEY).await.unwrap_err();
    assert!(
        err.to_string().contains("not a sealed secrets file"),
        "{err}"
    );
}

#[tokio::test]
async fn a_reopened_sealed_file_returns_what_was_stored() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nested/dir/secrets.sealed");
    let path = SecretPath::credential(Uuid::now_v7(), Uuid::now_v7());
    let first = SealedFile::open(file.clone(), KEY).await.unwrap();
    first.put(&path, &secret(SECRET)).await.unwrap();
    drop(first);
    let second = SealedFile::open(file, KEY).await.unwrap();
    assert_eq!(second.get(&path).await.unwrap(), Some(secret(SECRET)));
}

async fn start_bao() -> OpenBao {
    tokio::task::spawn_blocking(OpenBao::start).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_round_trips_on_openbao() {
    let bao = start_bao().await;
    let addr = bao.addr.parse().unwrap();
    // The mount does not exist on a fresh server: connecting enables it as KV v2.
    let store = SecretStore::Vault(
        VaultStore::connect(&addr, ROOT_TOKEN, "aurora-test")
            .await
            .unwrap(),
    );
    round_trips(&store).await;
    // Connecting again finds the mount in place.
    VaultStore::connect(&addr, ROOT_TOKEN, "aurora-test")
        .await
        .unwrap();

    // A token Vault does not know stops the connection with a clear refusal.
    let err = VaultStore::connect(&addr, "s.not-a-real-token", "aurora-test")
        .await
        .unwrap_err();
    assert!(!err.is_unavailable(), "{err}");
    assert!(err.to_string().contains("refused the token"), "{err}");
    assert!(!err.to_string().contains("not-a-real-token"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_stopped_mid_run_is_a_clear_error_then_recovers() {
    let mut bao = start_bao().await;
    let addr = bao.addr.parse().unwrap();
    let store = SecretStore::Vault(
        VaultStore::connect(&addr, ROOT_TOKEN, "aurora")
            .await
            .unwrap(),
    );
    let path = SecretPath::credential(Uuid::now_v7(), Uuid::now_v7());
    store.put(&path, &secret(SECRET)).await.unwrap();

    tokio::task::block_in_place(|| bao.stop());
    for err in [
        store.get(&path).await.unwrap_err(),
        store.put(&path, &secret(SECRET)).await.unwrap_err(),
        store.delete(&path).await.unwrap_err(),
        store.health().await.unwrap_err(),
    ] {
        assert!(err.is_unavailable(), "{err}");
        let message = err.to_string();
        assert!(message.contains("cannot reach vault"), "{message}");
        assert!(!message.contains(SECRET), "{message}");
    }

    // A new server on the same address. A dev server keeps nothing, so what it held is gone
    // (a real Vault keeps its storage); the store works again at once, re-enabling its mount.
    tokio::task::block_in_place(|| bao.restart());
    store.health().await.unwrap();
    assert_eq!(store.get(&path).await.unwrap(), None);
    store.put(&path, &secret(SECRET)).await.unwrap();
    assert_eq!(store.get(&path).await.unwrap(), Some(secret(SECRET)));
}

async fn sqlite() -> (Db, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = DatabaseConfig::Sqlite {
        url: format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display()),
    };
    let db = Db::connect(&config, 1, "aurora_app").await.unwrap();
    db.migrate().await.unwrap();
    (db, dir)
}

#[tokio::test]
async fn credentials_keep_references_and_fetch_materials_each_time() {
    let (db, dir) = sqlite().await;
    let store = SecretStore::Sealed(
        SealedFile::open(dir.path().join("secrets.sealed"), KEY)
            .await
            .unwrap(),
    );
    let creds = Credentials::new(db.clone(), store.clone());
    let admin = common::principal(&db, "admin@acme.io", "Acme").await;
    let other = common::principal(&db, "admin@globex.io", "Globex").await;
    let new = |body: serde_json::Value| NewCredential::from_json(&body).unwrap();
    let aws = creds
        .create(
            &admin,
            new(
                json!({ "provider": "aws", "name": "prod", "access_key_id": "AKIAEXAMPLE",
                        "secret_access_key": SECRET, "region": "us-east-1" }),
            ),
        )
        .await
        .unwrap();
    creds
        .create(
            &admin,
            new(json!({ "provider": "kubernetes", "name": "cluster", "server": "https://10.1.2.3:6443",
                        "token": "kube-token-value", "namespace": "apps" })),
        )
        .await
        .unwrap();
    // Names are unique per org, not across orgs.
    let err = creds
        .create(
            &admin,
            new(
                json!({ "provider": "aws", "name": "prod", "access_key_id": "AKIAOTHER",
                        "secret_access_key": "other-secret", "region": "us-east-1" }),
            ),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::Conflict(_)), "{err}");
    creds
        .create(
            &other,
            new(
                json!({ "provider": "aws", "name": "prod", "access_key_id": "AKIAGLOBEX",
                        "secret_access_key": "globex-secret", "region": "eu-west-1" }),
            ),
        )
        .await
        .unwrap();

    let m = creds.materials(admin.org_id).await.unwrap();
    let aws_cli = m.for_cli("aws");
    assert!(aws_cli
        .env
        .contains(&("AWS_SECRET_ACCESS_KEY".into(), SECRET.into())));
    assert!(m.secret_values.iter().any(|v| v == "kube-token-value"));
    assert!(!m.secret_values.iter().any(|v| v == "globex-secret"));
    let kube = m.for_cli("kubectl");
    assert_eq!(kube.files.len(), 1);
    assert_eq!(kube.endpoints[0].as_str(), "https://10.1.2.3:6443/");

    // The database holds the reference, not the secret.
    let rows = db
        .connection()
        .query_all_raw(sea_orm::Statement::from_string(
            db.backend(),
            "SELECT provider, name, CAST(metadata AS TEXT) AS metadata, secret_ref \
             FROM org_credentials",
        ))
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);
    let mut dump = String::new();
    for row in &rows {
        for column in ["provider", "name", "metadata", "secret_ref"] {
            dump.push_str(&row.try_get::<String>("", column).unwrap());
            dump.push('\n');
        }
    }
    assert!(
        !dump.contains(SECRET) && !dump.contains("kube-token-value"),
        "{dump}"
    );
    assert!(dump.contains(&format!("orgs/{}/credentials/{}", admin.org_id, aws.id)));
    assert!(dump.contains("https://10.1.2.3:6443/"), "{dump}");

    // Fetched at each call: a secret gone from the store fails the next call, naming the
    // credential (and a delete then still works, so the admin can add it again).
    store
        .delete(&SecretPath::credential(admin.org_id, aws.id))
        .await
        .unwrap();
    let err = creds.materials(admin.org_id).await.unwrap_err();
    assert!(err.to_string().contains("'prod' (aws) is missing"), "{err}");
    // Another org cannot delete it; its admin can.
    assert!(matches!(
        creds.delete(&other, aws.id).await.unwrap_err(),
        StorageError::NotFound(_)
    ));
    creds.delete(&admin, aws.id).await.unwrap();
    let m = creds.materials(admin.org_id).await.unwrap();
    assert!(m.for_cli("aws").env.is_empty());
    assert_eq!(creds.list(admin.org_id).await.unwrap().len(), 1);
}

#[tokio::test]
async fn single_org_mode_refuses_a_second_org_from_the_cli_path() {
    use aurora_storage::auth::{Accounts, Role};
    let (db, _dir) = sqlite().await;
    let accounts = Accounts::new(db.clone(), 1, 0).single_org(true);
    accounts
        .admin_create_user("a@acme.io", "correct horse battery", "Acme", Role::Admin)
        .await
        .unwrap();
    // More users of the one org are fine; another org is not.
    accounts
        .admin_create_user("b@acme.io", "correct horse battery", "Acme", Role::Viewer)
        .await
        .unwrap();
    let err = accounts
        .admin_create_user(
            "c@globex.io",
            "correct horse battery",
            "Globex",
            Role::Admin,
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("AURORA_HOST_CLOUD_CONFIG"),
        "{err}"
    );
    assert_eq!(accounts.organization_count().await.unwrap(), 1);
    // Off, the same request makes the second org.
    Accounts::new(db, 1, 0)
        .admin_create_user(
            "c@globex.io",
            "correct horse battery",
            "Globex",
            Role::Admin,
        )
        .await
        .unwrap();
    assert_eq!(accounts.organization_count().await.unwrap(), 2);
}
