//! The cache: one-time claims (WebSocket tickets), rate limits, and running totals (a user's LLM
//! cost). On a cluster it must be shared, so the server backend is Redis; the embedded default
//! keeps the same semantics in process. Callers see only [`Cache`]'s methods.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bb8_redis::redis::cmd;

use crate::redis::RedisPool;
use crate::StorageError;

/// Whether a rate-limited action may go ahead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateDecision {
    Allowed {
        remaining: u32,
    },
    /// Over the limit; the oldest counted action leaves the window after `retry_after`.
    Limited {
        retry_after: Duration,
    },
}

#[derive(Clone)]
pub enum Cache {
    Redis(RedisPool),
    Local(Arc<LocalCache>),
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Cache::Redis(_) => "Cache::Redis",
            Cache::Local(_) => "Cache::Local",
        })
    }
}

/// Longest an `XREAD` of [`Cache::follow`] blocks: under the 500 ms response timeout of
/// redis-rs's multiplexed connections, which the pool's are.
const MAX_BLOCK: Duration = Duration::from_millis(400);

/// Sliding-window rate limit in one atomic step: drop entries older than the window, count,
/// and add this action only when under the limit. Returns {allowed, count, oldest_ms}.
const RATE_LIMIT_LUA: &str = r#"
local key, now, window, limit, member = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local count = redis.call('ZCARD', key)
if count < limit then
  redis.call('ZADD', key, now, member)
  redis.call('PEXPIRE', key, window)
  return {1, count + 1, 0}
end
local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
return {0, count, tonumber(oldest[2])}
"#;

fn redis_err(e: impl std::fmt::Display) -> StorageError {
    StorageError::Redis(e.to_string())
}

impl Cache {
    pub fn local() -> Cache {
        Cache::Local(Arc::new(LocalCache::default()))
    }

    /// Claims `key` for `ttl`: true the first time, false while an earlier claim lives. Used to
    /// burn single-use tokens cluster-wide (`SET NX PX`).
    pub async fn claim_once(&self, key: &str, ttl: Duration) -> Result<bool, StorageError> {
        match self {
            Cache::Redis(pool) => {
                let mut conn = pool.get().await?;
                let set: Option<String> = cmd("SET")
                    .arg(key)
                    .arg(1)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl.as_millis().max(1) as u64)
                    .query_async(&mut *conn)
                    .await
                    .map_err(redis_err)?;
                Ok(set.is_some())
            }
            Cache::Local(local) => Ok(local.claim_once(key, ttl)),
        }
    }

    /// Counts one action against `limit` per sliding `window` for `key`.
    pub async fn rate_limit(
        &self,
        key: &str,
        limit: u32,
        window: Duration,
    ) -> Result<RateDecision, StorageError> {
        match self {
            Cache::Redis(pool) => {
                let mut conn = pool.get().await?;
                let now_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_err(redis_err)?
                    .as_millis() as u64;
                let window_ms = window.as_millis().max(1) as u64;
                let member = format!("{now_ms}-{}", uuid::Uuid::new_v4().simple());
                let (allowed, count, oldest): (i64, i64, i64) = cmd("EVAL")
                    .arg(RATE_LIMIT_LUA)
                    .arg(1)
                    .arg(key)
                    .arg(now_ms)
                    .arg(window_ms)
                    .arg(limit)
                    .arg(member)
                    .query_async(&mut *conn)
                    .await
                    .map_err(redis_err)?;
                Ok(if allowed == 1 {
                    RateDecision::Allowed {
                        remaining: limit.saturating_sub(count as u32),
                    }
                } else {
                    let leaves_at = (oldest as u64).saturating_add(window_ms);
                    RateDecision::Limited {
                        retry_after: Duration::from_millis(leaves_at.saturating_sub(now_ms).max(1)),
                    }
                })
            }
            Cache::Local(local) => Ok(local.rate_limit(key, limit, window)),
        }
    }

    /// Adds `delta` to the number at `key` and returns the new total.
    pub async fn add_f64(&self, key: &str, delta: f64) -> Result<f64, StorageError> {
        match self {
            Cache::Redis(pool) => {
                let mut conn = pool.get().await?;
                let total: f64 = cmd("INCRBYFLOAT")
                    .arg(key)
                    .arg(delta)
                    .query_async(&mut *conn)
                    .await
                    .map_err(redis_err)?;
                Ok(total)
            }
            Cache::Local(local) => Ok(local.add_f64(key, delta)),
        }
    }

    /// The number at `key`, if any.
    pub async fn get_f64(&self, key: &str) -> Result<Option<f64>, StorageError> {
        match self {
            Cache::Redis(pool) => {
                let mut conn = pool.get().await?;
                let v: Option<f64> = cmd("GET")
                    .arg(key)
                    .query_async(&mut *conn)
                    .await
                    .map_err(redis_err)?;
                Ok(v)
            }
            Cache::Local(local) => {
                let totals = local.totals.lock().map_err(redis_err)?;
                Ok(totals
                    .get(key)
                    .filter(|(_, expires)| expires.is_none_or(|e| e > Instant::now()))
                    .map(|(v, _)| *v))
            }
        }
    }

    /// Forgets `key` (a claim, a window or a total).
    pub async fn remove(&self, key: &str) -> Result<(), StorageError> {
        match self {
            Cache::Redis(pool) => {
                let mut conn = pool.get().await?;
                let _: i64 = cmd("DEL")
                    .arg(key)
                    .query_async(&mut *conn)
                    .await
                    .map_err(redis_err)?;
            }
            Cache::Local(local) => {
                local.claims.lock().map_err(redis_err)?.remove(key);
                local.windows.lock().map_err(redis_err)?.remove(key);
                local.totals.lock().map_err(redis_err)?.remove(key);
            }
        }
        Ok(())
    }

    /// Sets the number at `key` to `value` unless it already holds a larger one, forgotten
    /// after `ttl`. For running totals, which only grow: a writer holding an older total can
    /// never replace a newer one.
    pub async fn raise_f64(
        &self,
        key: &str,
        value: f64,
        ttl: Duration,
    ) -> Result<(), StorageError> {
        self.raise_f64_many(&[(key.to_string(), value)], ttl).await
    }

    /// [`Cache::raise_f64`] for several keys, in one round trip to Redis.
    pub async fn raise_f64_many(
        &self,
        items: &[(String, f64)],
        ttl: Duration,
    ) -> Result<(), StorageError> {
        if items.is_empty() {
            return Ok(());
        }
        match self {
            Cache::Redis(pool) => {
                let mut pipe = bb8_redis::redis::pipe();
                for (key, value) in items {
                    pipe.cmd("EVAL")
                        .arg(RAISE_LUA)
                        .arg(1)
                        .arg(key)
                        .arg(value)
                        .arg(ttl.as_millis().max(1) as u64)
                        .ignore();
                }
                let mut conn = pool.get().await?;
                let () = pipe.query_async(&mut *conn).await.map_err(redis_err)?;
                Ok(())
            }
            Cache::Local(local) => {
                let now = Instant::now();
                let mut totals = local.totals.lock().map_err(redis_err)?;
                for (key, value) in items {
                    let live = totals
                        .get(key)
                        .filter(|(_, expires)| expires.is_none_or(|e| e > now))
                        .map(|(v, _)| *v);
                    if live.is_none_or(|v| v < *value) {
                        totals.insert(key.clone(), (*value, Some(now + ttl)));
                    }
                }
                Ok(())
            }
        }
    }

    /// Appends `value` to the stream `stream` (kept to its last thousand entries), for every
    /// node following it. The embedded backend serves one node: nothing follows, nothing to do.
    pub async fn post(&self, stream: &str, value: &str) -> Result<(), StorageError> {
        match self {
            Cache::Redis(pool) => {
                let mut conn = pool.get().await?;
                let _: String = cmd("XADD")
                    .arg(stream)
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(1000)
                    .arg("*")
                    .arg("v")
                    .arg(value)
                    .query_async(&mut *conn)
                    .await
                    .map_err(redis_err)?;
                Ok(())
            }
            Cache::Local(_) => Ok(()),
        }
    }

    /// Waits up to `block` for entries of `stream` after the id `last` (`"$"`: after the
    /// newest one now), moves `last` past what arrived, and returns their values.
    pub async fn follow(
        &self,
        stream: &str,
        last: &mut String,
        block: Duration,
    ) -> Result<Vec<String>, StorageError> {
        /// An XREAD reply: per stream, its entries as (id, [field, value, ...]).
        type Read = Option<Vec<(String, Vec<(String, Vec<(String, String)>)>)>>;
        match self {
            Cache::Redis(pool) => {
                let mut conn = pool.get().await?;
                if last == "$" {
                    // A concrete id, so nothing posted between two reads is missed.
                    let newest: Vec<(String, Vec<(String, String)>)> = cmd("XREVRANGE")
                        .arg(stream)
                        .arg("+")
                        .arg("-")
                        .arg("COUNT")
                        .arg(1)
                        .query_async(&mut *conn)
                        .await
                        .map_err(redis_err)?;
                    *last = newest.into_iter().next().map_or("0-0".into(), |(id, _)| id);
                }
                // Under the client's response timeout (redis-rs: 500 ms on the pool's multiplexed
                // connections): a longer block timed out every idle read, which the followers
                // took for Redis being down (the revocation follower dropped its token cache).
                let block = block.min(MAX_BLOCK);
                let reply: Read = cmd("XREAD")
                    .arg("COUNT")
                    .arg(100)
                    .arg("BLOCK")
                    .arg(block.as_millis().max(1) as u64)
                    .arg("STREAMS")
                    .arg(stream)
                    .arg(last.as_str())
                    .query_async(&mut *conn)
                    .await
                    .map_err(redis_err)?;
                let mut values = Vec::new();
                for (_, entries) in reply.unwrap_or_default() {
                    for (id, fields) in entries {
                        values.extend(fields.into_iter().map(|(_, v)| v));
                        *last = id;
                    }
                }
                Ok(values)
            }
            Cache::Local(_) => {
                tokio::time::sleep(block).await;
                Ok(Vec::new())
            }
        }
    }
}

/// KEYS[1]: the total; ARGV[1]: the new value; ARGV[2]: ttl in ms. Returns 1 if it was set.
const RAISE_LUA: &str = r"
local current = redis.call('GET', KEYS[1])
if current and tonumber(current) >= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
";

/// The in-process backend. Claims and rate-limit windows are pruned as they expire, so memory
/// stays bounded by what is live.
#[derive(Default)]
pub struct LocalCache {
    claims: Mutex<HashMap<String, Instant>>,
    windows: Mutex<HashMap<String, VecDeque<Instant>>>,
    totals: Mutex<HashMap<String, (f64, Option<Instant>)>>,
}

impl LocalCache {
    fn claim_once(&self, key: &str, ttl: Duration) -> bool {
        let now = Instant::now();
        let mut claims = self.claims.lock().unwrap_or_else(|p| p.into_inner());
        if claims.len() > 10_000 {
            claims.retain(|_, expires| *expires > now);
        }
        match claims.get(key) {
            Some(expires) if *expires > now => false,
            _ => {
                claims.insert(key.to_string(), now + ttl);
                true
            }
        }
    }

    fn rate_limit(&self, key: &str, limit: u32, window: Duration) -> RateDecision {
        let now = Instant::now();
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if windows.len() > 10_000 {
            windows.retain(|_, hits| hits.back().is_some_and(|t| now.duration_since(*t) < window));
        }
        let hits = windows.entry(key.to_string()).or_default();
        while hits
            .front()
            .is_some_and(|t| now.duration_since(*t) >= window)
        {
            hits.pop_front();
        }
        if (hits.len() as u32) < limit {
            hits.push_back(now);
            RateDecision::Allowed {
                remaining: limit - hits.len() as u32,
            }
        } else {
            let oldest = *hits.front().expect("limit > 0 means a hit is counted");
            RateDecision::Limited {
                retry_after: (oldest + window)
                    .saturating_duration_since(now)
                    .max(Duration::from_millis(1)),
            }
        }
    }

    fn add_f64(&self, key: &str, delta: f64) -> f64 {
        let mut totals = self.totals.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let total = totals.entry(key.to_string()).or_insert((0.0, None));
        if total.1.is_some_and(|e| e <= now) {
            *total = (0.0, None);
        }
        total.0 += delta;
        total.0
    }
}
