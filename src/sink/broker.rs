//! What the message-broker sinks (NATS, Redis, RabbitMQ, MQTT) share,
//! written once: the settings every one takes ([`Settings`], with the same
//! setters by [`broker_sink!`]), the default wire format, the `connect`
//! and `Sink` boilerplate, and folding per-message outcomes into one
//! [`SinkError`].

use std::fmt;
use std::future::Future;
use std::time::Duration;

use crate::notify::format::{CloudEventsMode, Encoder, Format, FormatOptions};

use super::{outcome, SinkError};

/// The settings every broker sink has, under the same names: `name`,
/// `format`, `timeout`, `max_batch`.
#[derive(Clone)]
pub(crate) struct Settings {
    pub(crate) name: String,
    pub(crate) encoder: Encoder,
    pub(crate) timeout: Duration,
    pub(crate) max_batch: usize,
}

impl Settings {
    /// The defaults: CloudEvents structured JSON, 5 s, batches of 100.
    pub(crate) fn new(name: &str) -> Self {
        Settings {
            name: name.to_owned(),
            encoder: default_encoder(),
            timeout: DEFAULT_TIMEOUT,
            max_batch: DEFAULT_MAX_BATCH,
        }
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("name", &self.name)
            .field("format", &self.encoder.format)
            .field("timeout", &self.timeout)
            .field("max_batch", &self.max_batch)
            .finish()
    }
}

/// Writes a broker sink's shared surface once: on the builder `$builder`
/// (a `settings: Settings` field) the setters `name`, `format`, `timeout`,
/// `max_batch` and `connect().await` (which runs the builder's own
/// `async fn open(self) -> Result<$sink, SinkBuildError>`); on `$sink` (a
/// `settings` field and an `async fn deliver_all`) the [`Sink`](super::Sink)
/// impl, each delivery bounded by the timeout.
macro_rules! broker_sink {
    (
        $sink:ident, $builder:ident,
        timeout: $timeout_doc:literal,
        max_batch: $max_batch_doc:literal, $max_batch_limit:expr,
        connect: $connect_doc:literal $(,)?
    ) => {
        impl $builder {
            /// The sink's name in logs and metrics (default: the kind of
            /// sink, `nats`, `redis`, ...).
            pub fn name(mut self, name: impl Into<String>) -> Self {
                self.settings.name = name.into();
                self
            }

            /// The wire format (default: CloudEvents structured JSON). Every
            /// message carries one event, whatever the format.
            pub fn format(mut self, encoder: $crate::notify::format::Encoder) -> Self {
                self.settings.encoder = encoder;
                self
            }

            #[doc = $timeout_doc]
            pub fn timeout(mut self, timeout: ::std::time::Duration) -> Self {
                self.settings.timeout = timeout;
                self
            }

            #[doc = $max_batch_doc]
            pub fn max_batch(mut self, max: usize) -> Self {
                self.settings.max_batch = max.clamp(1, $max_batch_limit);
                self
            }

            #[doc = $connect_doc]
            pub async fn connect(self) -> Result<$sink, $crate::sink::SinkBuildError> {
                self.open().await
            }
        }

        impl $crate::sink::Sink for $sink {
            fn name(&self) -> &str {
                &self.settings.name
            }

            fn max_batch(&self) -> usize {
                self.settings.max_batch
            }

            fn deliver<'a>(
                &'a self,
                batch: &'a [$crate::notify::Event],
            ) -> $crate::sink::BoxFuture<'a, Result<(), $crate::sink::SinkError>> {
                Box::pin($crate::sink::broker::within(
                    &self.settings.name,
                    self.settings.timeout,
                    self.deliver_all(batch),
                ))
            }
        }
    };
}
pub(crate) use broker_sink;

/// How long `deliver` may take before it gives up with a transient error,
/// unless a sink's builder says otherwise.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The batch the broker sinks take by default: one round of pipelined
/// publishes whose acknowledgements are awaited together.
pub(crate) const DEFAULT_MAX_BATCH: usize = 100;

/// The wait suggested when the destination itself is missing or
/// misconfigured (no stream, no exchange, wrong key type): an operator has to
/// act, so retrying at full speed only fills logs.
#[cfg_attr(
    not(any(
        feature = "sink-nats",
        feature = "sink-redis",
        feature = "sink-rabbitmq"
    )),
    allow(dead_code)
)]
pub(crate) const MISCONFIGURED_RETRY: Duration = Duration::from_secs(5);

/// CloudEvents 1.0, structured JSON: every broker sink's default. One event
/// per message, self-describing (`id`, `type`, `source`, `time` travel in the
/// body), so a consumer needs no broker-specific headers to read it.
pub(crate) fn default_encoder() -> Encoder {
    Encoder::new(
        Format::CloudEvents {
            mode: CloudEventsMode::Structured,
        },
        FormatOptions::default(),
    )
}

/// Folds the outcome of each message of a batch into the batch's outcome,
/// by the one policy every sink follows ([`outcome::fold`]).
pub(crate) fn fold(outcomes: Vec<Result<(), SinkError>>) -> Result<(), SinkError> {
    let total = outcomes.len();
    let failed = outcomes
        .into_iter()
        .enumerate()
        .filter_map(|(i, r)| r.err().map(|e| (i, e)))
        .collect();
    outcome::fold(total, failed)
}

/// A transient error for a destination that is missing or misconfigured.
#[cfg_attr(
    not(any(
        feature = "sink-nats",
        feature = "sink-redis",
        feature = "sink-rabbitmq"
    )),
    allow(dead_code)
)]
pub(crate) fn misconfigured(message: impl Into<String>) -> SinkError {
    SinkError::Transient {
        message: message.into(),
        retry_after: Some(MISCONFIGURED_RETRY),
    }
}

/// Runs a delivery (per-message outcomes) for at most `timeout`: past it the
/// whole batch is a transient failure (the dispatcher retries it; the ids
/// make the messages that did arrive harmless duplicates).
pub(crate) async fn within(
    sink: &str,
    timeout: Duration,
    outcomes: impl Future<Output = Vec<Result<(), SinkError>>>,
) -> Result<(), SinkError> {
    match tokio::time::timeout(timeout, outcomes).await {
        Ok(outcomes) => fold(outcomes),
        Err(_) => Err(SinkError::transient(format!(
            "{sink}: no acknowledgement within {timeout:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fold_outcomes() {
        assert!(fold(vec![Ok(()), Ok(())]).is_ok());
        match fold(vec![Ok(()), Err(SinkError::transient("x"))]) {
            Err(SinkError::Partial { failed }) => assert_eq!(failed[0].0, 1),
            other => panic!("{other:?}"),
        }
        // Mixed kinds stay per event: the dispatcher retries the transient
        // one and dead-letters the permanent one.
        match fold(vec![
            Err(SinkError::permanent("p")),
            Err(SinkError::transient("t")),
        ]) {
            Err(SinkError::Partial { failed }) => assert_eq!(failed.len(), 2),
            other => panic!("{other:?}"),
        }
        match fold(vec![Err(SinkError::permanent("p"))]) {
            Err(SinkError::Permanent { .. }) => {}
            other => panic!("{other:?}"),
        }
    }
}
