//! [`RedisSink`]: events appended to a Redis stream with `XADD`, one
//! transaction per batch.
//!
//! ```no_run
//! use s3tap::sink::RedisSink;
//!
//! # async fn run() -> Result<(), s3tap::sink::SinkBuildError> {
//! let sink = RedisSink::builder("redis://127.0.0.1:6379/")
//!     .stream("s3:events")
//!     .max_len(100_000)
//!     .connect()
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! Each event becomes one stream entry:
//!
//! ```text
//! XADD s3:events MAXLEN ~ 100000 * id <event id> event <body> content_type <media type> [<header> <value> ...]
//! ```
//!
//! `event` is the encoded message (CloudEvents structured JSON by default),
//! `content_type` its media type, followed by the format's headers, if any
//! (CloudEvents binary mode's attributes). The entries of a batch go in one
//! `MULTI`/`EXEC` transaction, sent as one pipeline: a batch is stored whole
//! or not at all.
//!
//! **Redis does not de-duplicate.** Delivery is at-least-once: when the
//! connection breaks after Redis ran the transaction but before its reply
//! arrived, the dispatcher sends the batch again and the stream holds it
//! twice. Consumers de-duplicate by the `id` field (the event id, a UUIDv7),
//! for instance by remembering the ids of the last few minutes.
//!
//! `MAXLEN ~ N` trims the stream to about `N` entries (Redis trims whole
//! macro nodes, so a few more may stay). Without [`max_len`](RedisSinkBuilder::max_len)
//! the stream grows until consumers trim it (`XTRIM`, `XDEL`).
//!
//! Errors: a refused or broken connection, a timeout, `LOADING`, `OOM`,
//! `READONLY` (a replica after failover) and the like are
//! [`SinkError::Transient`]; the connection is re-established in the
//! background and the next `deliver` after the server is back uses it. A key
//! holding something other than a stream (`WRONGTYPE`) or an ACL refusal
//! (`NOPERM`) is transient too, with a 5-second `retry_after`: an operator
//! has to fix it, and the events wait in the spool meanwhile.

use std::fmt;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind, RedisError};

use super::broker::{self, broker_sink, Settings};
use super::{SinkBuildError, SinkError};
use crate::notify::Event;

/// A sink that appends events to a Redis stream. Built by
/// [`RedisSink::builder`] and [`connect`](RedisSinkBuilder::connect).
pub struct RedisSink {
    settings: Settings,
    connection: ConnectionManager,
    stream: String,
    max_len: Option<usize>,
}

impl fmt::Debug for RedisSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSink")
            .field("settings", &self.settings)
            .field("stream", &self.stream)
            .field("max_len", &self.max_len)
            .finish_non_exhaustive()
    }
}

/// Configures a [`RedisSink`]; [`connect`](Self::connect) it.
#[must_use = "a builder does nothing until connected"]
pub struct RedisSinkBuilder {
    settings: Settings,
    url: String,
    stream: String,
    max_len: Option<usize>,
}

impl fmt::Debug for RedisSinkBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may carry a password: not printed.
        f.debug_struct("RedisSinkBuilder")
            .field("settings", &self.settings)
            .field("stream", &self.stream)
            .field("max_len", &self.max_len)
            .finish_non_exhaustive()
    }
}

impl RedisSink {
    /// Starts building a sink for the Redis server at `url`
    /// (`redis://[user:password@]host:port/[db]`, `rediss://` for TLS is not
    /// compiled in).
    ///
    /// Defaults: stream `s3:events`, no trimming, CloudEvents structured
    /// JSON, 5 s timeout per `deliver`, batches of up to 100 events.
    pub fn builder(url: impl Into<String>) -> RedisSinkBuilder {
        RedisSinkBuilder {
            url: url.into(),
            settings: Settings::new("redis"),
            stream: "s3:events".into(),
            max_len: None,
        }
    }

    /// The commands for one batch: `MULTI`, one `XADD` per event, `EXEC`.
    fn pipeline(&self, batch: &[Event]) -> redis::Pipeline {
        let mut pipe = redis::pipe();
        pipe.atomic();
        for event in batch {
            let body = self.settings.encoder.encode_one(event);
            let cmd = pipe.cmd("XADD").arg(&self.stream);
            if let Some(max_len) = self.max_len {
                cmd.arg("MAXLEN").arg("~").arg(max_len);
            }
            cmd.arg("*")
                .arg("id")
                .arg(event.id.as_str())
                .arg("event")
                .arg(body.body.as_ref())
                .arg("content_type")
                .arg(body.content_type);
            for (name, value) in &body.headers {
                cmd.arg(name).arg(value);
            }
        }
        pipe
    }

    async fn deliver_all(&self, batch: &[Event]) -> Vec<Result<(), SinkError>> {
        let pipe = self.pipeline(batch);
        let mut connection = self.connection.clone();
        let outcome = pipe
            .query_async::<Vec<redis::Value>>(&mut connection)
            .await
            .map(drop)
            .map_err(|e| self.classify(e));
        // One transaction: every event shares its outcome.
        vec![outcome]
    }

    fn classify(&self, error: RedisError) -> SinkError {
        let message = format!("{}: XADD {}: {error}", self.settings.name, self.stream);
        if error.is_io_error() || error.is_timeout() || error.is_connection_dropped() {
            return SinkError::transient(message);
        }
        match (error.kind(), error.code()) {
            (_, Some("WRONGTYPE" | "NOPERM")) => broker::misconfigured(message),
            (ErrorKind::AuthenticationFailed, _) => SinkError::permanent(message),
            _ => SinkError::transient(message),
        }
    }
}

impl RedisSinkBuilder {
    /// The stream key (default `s3:events`).
    pub fn stream(mut self, key: impl Into<String>) -> Self {
        self.stream = key.into();
        self
    }

    /// Trims the stream to about `entries` entries on every append
    /// (`MAXLEN ~`). Entries trimmed before a consumer read them are gone:
    /// size it for the longest consumer outage to ride out.
    pub fn max_len(mut self, entries: usize) -> Self {
        self.max_len = Some(entries);
        self
    }

    async fn open(self) -> Result<RedisSink, SinkBuildError> {
        let client = redis::Client::open(self.url.as_str())
            .map_err(|e| SinkBuildError::InvalidUrl(format!("{}: {e}", self.settings.name)))?;
        // Reconnection: the manager reconnects in the background after an
        // I/O error. Few, short retries per outage: `deliver` is bounded by
        // the timeout anyway and the dispatcher owns the backoff, so a
        // command must fail fast rather than wait on a long reconnect loop.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.settings.timeout))
            .set_response_timeout(Some(self.settings.timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let connection = tokio::time::timeout(
            self.settings.timeout,
            ConnectionManager::new_with_config(client, config),
        )
        .await
        .map_err(|_| SinkError::transient(format!("{}: connect: timed out", self.settings.name)))?
        .map_err(|e| {
            let message = format!("{}: connect: {e}", self.settings.name);
            match e.kind() {
                ErrorKind::AuthenticationFailed | ErrorKind::InvalidClientConfig => {
                    SinkError::permanent(message)
                }
                _ => SinkError::transient(message),
            }
        })?;
        Ok(RedisSink {
            settings: self.settings,
            connection,
            stream: self.stream,
            max_len: self.max_len,
        })
    }
}

broker_sink!(
    RedisSink,
    RedisSinkBuilder,
    timeout: "The longest a `deliver` may take (default 5 s); also the connect and response timeouts of the connection.",
    max_batch: "The largest batch the dispatcher hands over (default 100).",
    usize::MAX,
    connect: "Connects. A server that cannot be reached now is [`SinkBuildError::Connect`] with a transient [`SinkError`]; refused credentials, with a permanent one; a malformed URL is [`SinkBuildError::InvalidUrl`].",
);
