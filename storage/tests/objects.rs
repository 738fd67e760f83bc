//! The object store on both backends: a local directory, and S3 against a real SeaweedFS.

use aurora_fakes::seaweed::SeaweedFs;
use aurora_storage::objects::{ObjectKey, ObjectStore, S3Settings};
use uuid::Uuid;

async fn round_trips(store: ObjectStore) {
    let (org_a, org_b, user) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let key = ObjectKey::new(org_a, user, "terraform/s1/terraform.tfstate").unwrap();
    let same_path_other_org =
        ObjectKey::new(org_b, user, "terraform/s1/terraform.tfstate").unwrap();
    assert_eq!(store.get(&key).await.unwrap(), None);
    store.put(&key, b"{\"serial\": 1}".to_vec()).await.unwrap();
    store.put(&key, b"{\"serial\": 2}".to_vec()).await.unwrap();
    assert_eq!(
        store.get(&key).await.unwrap().as_deref(),
        Some(&b"{\"serial\": 2}"[..])
    );
    // The same path under another org is another object.
    assert_eq!(store.get(&same_path_other_org).await.unwrap(), None);
    // A large object comes back byte for byte.
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let big_key = ObjectKey::new(org_a, user, "kb/doc.bin").unwrap();
    store.put(&big_key, big.clone()).await.unwrap();
    assert_eq!(store.get(&big_key).await.unwrap().unwrap(), big);
    store.delete(&key).await.unwrap();
    store.delete(&key).await.unwrap();
    assert_eq!(store.get(&key).await.unwrap(), None);
    store.delete(&big_key).await.unwrap();
}

#[tokio::test]
async fn local_directory() {
    let dir = tempfile::tempdir().unwrap();
    round_trips(ObjectStore::local(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_on_seaweedfs() {
    let weed = tokio::task::spawn_blocking(SeaweedFs::start).await.unwrap();
    let settings = S3Settings {
        endpoint: weed.s3_endpoint.clone(),
        bucket: "aurora-test".into(),
        region: "us-east-1".into(),
        access_key: None,
        secret_key: None,
    };
    let store = ObjectStore::s3(&settings)
        .await
        .expect("the bucket opens (created on first use)");
    round_trips(store).await;
    // Opening again finds the existing bucket.
    ObjectStore::s3(&settings).await.unwrap();

    // Half a key pair is refused; an unreachable endpoint is a clear error, not a hang.
    let half = S3Settings {
        access_key: Some("ak".into()),
        ..settings.clone()
    };
    assert!(ObjectStore::s3(&half).await.is_err());
    let nowhere = S3Settings {
        endpoint: "http://127.0.0.1:9".into(),
        ..settings
    };
    let err = ObjectStore::s3(&nowhere).await.unwrap_err().to_string();
    assert!(err.contains("cannot reach S3"), "{err}");
}
