//! What the message-broker sinks (NATS, Redis, RabbitMQ, MQTT) share: the
//! default wire format, one message per event, and folding per-message
//! outcomes into one [`SinkError`].

use std::future::Future;
use std::time::Duration;

use crate::notify::format::{CloudEventsMode, Encoder, Format, FormatOptions};

use super::{outcome, SinkError};

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
