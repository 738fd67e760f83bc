//! The Redis connection pool (bb8-redis). The server backend of the cache: one-time tickets, rate
//! limits and cluster-wide counters build on it ([`crate::cache::Cache`]), and the health check.

use std::time::Duration;

use bb8_redis::bb8::Pool;
use bb8_redis::redis::cmd;
use bb8_redis::RedisConnectionManager;

use crate::StorageError;

#[derive(Clone)]
pub struct RedisPool {
    pool: Pool<RedisConnectionManager>,
}

impl std::fmt::Debug for RedisPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedisPool")
    }
}

impl RedisPool {
    /// Builds the pool without connecting: a Redis that is down at start-up shows in `/health`
    /// instead of stopping the node.
    pub fn new(url: &str) -> Result<RedisPool, StorageError> {
        let manager =
            RedisConnectionManager::new(url).map_err(|e| StorageError::Redis(e.to_string()))?;
        let pool = Pool::builder()
            .max_size(16)
            .connection_timeout(Duration::from_secs(2))
            .build_unchecked(manager);
        Ok(RedisPool { pool })
    }

    /// A pooled connection.
    pub async fn get(
        &self,
    ) -> Result<bb8_redis::bb8::PooledConnection<'_, RedisConnectionManager>, StorageError> {
        self.pool
            .get()
            .await
            .map_err(|e| StorageError::Redis(e.to_string()))
    }

    pub async fn ping(&self) -> Result<(), StorageError> {
        let mut conn = self.get().await?;
        let pong: String = cmd("PING")
            .query_async(&mut *conn)
            .await
            .map_err(|e| StorageError::Redis(e.to_string()))?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(StorageError::Redis(format!(
                "unexpected PING answer {pong:?}"
            )))
        }
    }
}
