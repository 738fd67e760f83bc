use std::time::Duration;

use s3::creds::Credentials;
use s3::error::S3Error;
use s3::{Bucket, BucketConfiguration, Region};

use super::ObjectKey;
use crate::StorageError;

/// Objects in an S3 bucket (any S3-compatible endpoint, path-style addressing), so every node
/// of a cluster sees the same objects.
#[derive(Clone, Debug)]
pub struct S3Store {
    bucket: Box<Bucket>,
}

/// Where and how to reach the bucket.
#[derive(Clone, Debug)]
pub struct S3Settings {
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    /// Both or neither; without keys requests are unsigned (servers without auth).
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
}

/// How long one object request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

fn s3_err(what: &str, key: &str, e: S3Error) -> StorageError {
    StorageError::Internal(format!("cannot {what} object {key}: {e}"))
}

impl S3Store {
    /// Opens the bucket, creating it when it does not exist yet.
    pub async fn open(settings: &S3Settings) -> Result<S3Store, StorageError> {
        let region = Region::Custom {
            region: settings.region.clone(),
            endpoint: settings.endpoint.trim_end_matches('/').to_string(),
        };
        let credentials = match (&settings.access_key, &settings.secret_key) {
            (Some(a), Some(s)) => Credentials::new(Some(a), Some(s), None, None, None),
            (None, None) => Credentials::anonymous(),
            _ => {
                return Err(StorageError::invalid(
                    "S3_ACCESS_KEY",
                    "S3_ACCESS_KEY and S3_SECRET_KEY go together",
                ))
            }
        }
        .map_err(|e| StorageError::Internal(format!("S3 credentials: {e}")))?;
        let bucket = Bucket::new(&settings.bucket, region.clone(), credentials.clone())
            .and_then(|b| b.with_path_style().with_request_timeout(REQUEST_TIMEOUT))
            .map_err(|e| StorageError::Internal(format!("S3 bucket {}: {e}", settings.bucket)))?;
        let exists = bucket.exists().await.map_err(|e| {
            StorageError::Internal(format!("cannot reach S3 at {}: {e}", settings.endpoint))
        })?;
        if !exists {
            let created = Bucket::create_with_path_style(
                &settings.bucket,
                region,
                credentials,
                BucketConfiguration::default(),
            )
            .await;
            match created {
                Ok(_) => {}
                // `exists` can say no for a bucket that is there (listing needs rights that
                // reading and writing do not): a 409 means it is ours already.
                Err(S3Error::HttpFailWithBody(409, _)) => {}
                Err(e) => {
                    let name = &settings.bucket;
                    return Err(StorageError::Internal(format!(
                        "cannot create bucket {name}: {e}"
                    )));
                }
            }
        }
        Ok(S3Store { bucket })
    }

    pub async fn put(&self, key: &ObjectKey, bytes: Vec<u8>) -> Result<(), StorageError> {
        // S3 replaces an object atomically: readers see the old or the new one.
        self.bucket
            .put_object(key.as_str(), &bytes)
            .await
            .map_err(|e| s3_err("write", key.as_str(), e))?;
        Ok(())
    }

    pub async fn get(&self, key: &ObjectKey) -> Result<Option<Vec<u8>>, StorageError> {
        match self.bucket.get_object(key.as_str()).await {
            Ok(data) => Ok(Some(data.to_vec())),
            Err(S3Error::HttpFailWithBody(404, _)) => Ok(None),
            Err(e) => Err(s3_err("read", key.as_str(), e)),
        }
    }

    pub async fn delete(&self, key: &ObjectKey) -> Result<(), StorageError> {
        match self.bucket.delete_object(key.as_str()).await {
            Ok(_) | Err(S3Error::HttpFailWithBody(404, _)) => Ok(()),
            Err(e) => Err(s3_err("delete", key.as_str(), e)),
        }
    }
}
