//! [`RedisReplayStore`]: the replay store a fleet of receivers shares, one
//! `SET NX PX` per verified message.

use std::fmt;
use std::time::{Duration, SystemTime};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::replay::{ReplayCheck, ReplayStore, ReplayStoreError};
use super::scheme::ReplayId;

/// The key prefix unless [`prefix`](RedisReplayStore::prefix) says otherwise.
const DEFAULT_PREFIX: &str = "s3tap:webhook:replay:";

/// How long one `SET` may take unless [`timeout`](RedisReplayStore::timeout)
/// says otherwise.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

/// A [`ReplayStore`] in Redis, shared by every receiver that connects to the
/// same server with the same prefix.
///
/// Each verified message runs
///
/// ```text
/// SET <prefix><hex of the replay id> 1 NX PX <ttl in ms>
/// ```
///
/// `OK` means the id was new; a nil reply means another receiver (or this
/// one) stored it inside the window. `NX` makes the check and the insert one
/// atomic step, so two receivers given the same message at once cannot both
/// accept it, and `PX` lets Redis forget the id when the window closes (the
/// time is Redis's own clock, not the layer's).
///
/// Failure is closed: a refused connection, a timeout
/// ([`timeout`](Self::timeout), default 1 s) or an error reply is a
/// [`ReplayStoreError`], which the layer answers with `503
/// replay_store_unavailable`. Senders retry a 5xx; the message is accepted
/// once Redis answers again. The connection is re-established in the
/// background after it breaks.
///
/// ```no_run
/// use s3tap::webhook::{RedisReplayStore, VerifyWebhookLayer};
///
/// # async fn run() -> Result<(), s3tap::webhook::ReplayStoreError> {
/// let store = RedisReplayStore::connect("redis://127.0.0.1:6379/")
///     .await?
///     .prefix("b2:replay:");
/// let layer = VerifyWebhookLayer::b2("b2-rule-signing-secret-0123456789").replay_store(store);
/// # let _ = layer;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisReplayStore {
    connection: ConnectionManager,
    prefix: String,
    timeout: Duration,
}

impl RedisReplayStore {
    /// Connects to the Redis at `url` (`redis://[user:password@]host:port/[db]`,
    /// or `rediss://` for TLS when the `redis` crate is built with it).
    /// Fails when the URL is invalid or the server cannot be reached.
    pub async fn connect(url: &str) -> Result<Self, ReplayStoreError> {
        let client = redis::Client::open(url)
            .map_err(|e| ReplayStoreError::new(format!("invalid Redis URL: {e}")))?;
        // Few, short retries: a webhook sender waits for the answer, and a
        // 503 it retries later is better than a request hanging on Redis.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(DEFAULT_TIMEOUT))
            .set_response_timeout(Some(DEFAULT_TIMEOUT))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let connection = tokio::time::timeout(
            DEFAULT_TIMEOUT,
            ConnectionManager::new_with_config(client, config),
        )
        .await
        .map_err(|_| ReplayStoreError::new("connect to Redis: timed out"))?
        .map_err(|e| ReplayStoreError::new(format!("connect to Redis: {e}")))?;
        Ok(Self::from_connection(connection))
    }

    /// Uses an existing connection (with its own timeouts and retries).
    pub fn from_connection(connection: ConnectionManager) -> Self {
        Self {
            connection,
            prefix: DEFAULT_PREFIX.to_owned(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Puts `prefix` before every key (default `s3tap:webhook:replay:`).
    /// Receivers of the same sender share a prefix; give each sender (or
    /// each environment sharing a Redis) its own.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The longest one check may take before the message is refused with
    /// `503` (default 1 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The key under which `id` is stored.
    fn key(&self, id: &ReplayId) -> String {
        // Hex, whatever the id: signatures are binary, and one encoding for
        // every id means no two ids share a key.
        let mut key = String::with_capacity(self.prefix.len() + 2 * id.as_bytes().len());
        key.push_str(&self.prefix);
        key.push_str(&hex::encode(id.as_bytes()));
        key
    }
}

impl ReplayStore for RedisReplayStore {
    fn insert_new(&self, id: ReplayId, _now: SystemTime, ttl: Duration) -> ReplayCheck {
        let key = self.key(&id);
        // PX 0 is an error in Redis; a shorter window than 1 ms is none.
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut connection = self.connection.clone();
        let timeout = self.timeout;
        Box::pin(async move {
            let mut command = redis::cmd("SET");
            command.arg(&key).arg(1).arg("NX").arg("PX").arg(ttl_ms);
            let set = command.query_async::<Option<String>>(&mut connection);
            match tokio::time::timeout(timeout, set).await {
                Ok(Ok(reply)) => Ok(reply.is_some()),
                Ok(Err(error)) => Err(ReplayStoreError::new(format!("Redis SET NX: {error}"))),
                Err(_) => Err(ReplayStoreError::new(format!(
                    "Redis SET NX: no answer within {timeout:?}"
                ))),
            }
        })
    }
}

impl fmt::Debug for RedisReplayStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisReplayStore")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}
