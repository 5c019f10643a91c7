//! Where events go: the [`Sink`] trait and its contract, and the sinks
//! s3tap ships, each behind its own cargo feature.
//!
//! | sink | feature | delivered means | de-duplication |
//! |---|---|---|---|
//! | `WebhookSink` | `sink-webhook` | a 2xx answer | receivers, by the event id in the payload |
//! | [`JsonLinesSink`] | `notify` | written (and flushed) | readers, by the `id` of each line |
//! | `NatsSink` | `sink-nats` | the JetStream stream acked it | server-side, `Nats-Msg-Id` = event id, within the stream's duplicate window |
//! | `RedisSink` | `sink-redis` | `XADD` ran (one `MULTI`/`EXEC` per batch) | none: consumers, by the entry's `id` field |
//! | `RabbitMqSink` | `sink-rabbitmq` | publisher confirm (ack) | none: consumers, by `message_id` |
//! | `MqttSink` | `sink-mqtt` | `PUBACK` (QoS 1) | none: consumers, by the body's `id` |
//!
//! The broker sinks send one event per message, CloudEvents 1.0 structured
//! JSON by default (`.format(Encoder)` picks another
//! [format](crate::notify::format)), and reconnect by themselves: after a
//! broker restart the next delivery goes through on the same sink.
//!
//! # Building a sink
//!
//! One rule for every sink s3tap ships:
//!
//! - `XSink::builder(target)` starts (the URL, brokers, topic ARN or queue
//!   URL; the JSON-lines sink takes none, stdout unless `.file(path)`);
//! - the same setter names mean the same thing everywhere: `name` (logs and
//!   metrics), `format` (a [`format::Encoder`](crate::notify::format::Encoder),
//!   the one wire-format type), `timeout` (the longest one delivery may
//!   take), `max_batch` (the largest batch the dispatcher hands over); every
//!   sink but the JSON-lines one (a local write) has all four;
//! - `.build()` where nothing connects while building (webhook, JSON lines,
//!   Kafka, SNS, SQS: connections open on the first delivery), and
//!   `.connect().await` where the sink must reach its broker first (NATS,
//!   Redis, RabbitMQ, MQTT);
//! - both fail with one error type, [`SinkBuildError`]: a refused setting,
//!   or [`SinkBuildError::Connect`] carrying the [`SinkError`] that says
//!   whether trying again later may help.
//!
//! `JsonLinesSink::stdout()` and `JsonLinesSink::file(path)` remain as
//! shorthands for the two common cases.
//!
//! ```
//! use s3tap::sink::{JsonLinesSink, Sink};
//!
//! let sink = JsonLinesSink::builder().name("audit").max_batch(10).build()?;
//! assert_eq!((sink.name(), sink.max_batch()), ("audit", 10));
//! # Ok::<(), s3tap::sink::SinkBuildError>(())
//! ```
//!
//! # The contract
//!
//! - **Batches.** [`Sink::deliver`] gets 1 to [`Sink::max_batch`] events
//!   from the dispatcher, which owns batching, retries, backoff and the
//!   spool. A sink sends, waits for the receiver's acknowledgement, and
//!   answers; it never sleeps or retries in a loop itself, and it bounds how
//!   long a delivery may take.
//! - **Retryable or not.** [`SinkError::Transient`] (network, timeout,
//!   overload, the receiver restarting; `retry_after` when the receiver
//!   asked for a wait): the events stay spooled and come again.
//!   [`SinkError::Permanent`] (rejected payload, bad credentials): the
//!   dispatcher retries the batch's events one at a time, then dead-letters
//!   those that still fail. [`SinkError::Disabled`] (HTTP 410): the sink is
//!   stopped. [`SinkError::Partial`] names the failed events of a batch
//!   whose others were delivered.
//! - **Idempotent by id.** Delivery is at-least-once: after a timeout, a
//!   lost acknowledgement or a restart, a sink sees an event again. Storing
//!   it twice must be harmless: key by [`Event::id`](crate::notify::Event::id) (a primary key, a
//!   de-duplication id, a message id the broker de-duplicates on, or an id
//!   the consumers de-duplicate by).
//!
//! # Writing a sink
//!
//! ```
//! use std::sync::Mutex;
//! use s3tap::notify::{Event, EventId};
//! use s3tap::sink::{BoxFuture, Sink, SinkError};
//!
//! /// Keeps events in memory, each id once.
//! #[derive(Default)]
//! struct MemorySink {
//!     events: Mutex<std::collections::BTreeMap<EventId, Event>>,
//! }
//!
//! impl Sink for MemorySink {
//!     fn name(&self) -> &str {
//!         "memory"
//!     }
//!
//!     fn max_batch(&self) -> usize {
//!         100
//!     }
//!
//!     fn deliver<'a>(&'a self, batch: &'a [Event]) -> BoxFuture<'a, Result<(), SinkError>> {
//!         Box::pin(async move {
//!             let mut events = self
//!                 .events
//!                 .lock()
//!                 .map_err(|_| SinkError::transient("poisoned"))?;
//!             for event in batch {
//!                 // Idempotent: a redelivered event replaces itself.
//!                 events.insert(event.id.clone(), event.clone());
//!             }
//!             Ok(())
//!         })
//!     }
//! }
//! ```
//!
//! `examples/custom_sink.rs` is a complete one outside the crate: events
//! into a PostgreSQL table, `ON CONFLICT (id) DO NOTHING`, SQLSTATE classes
//! mapped to transient or permanent, reconnecting after a failure.

mod error;
mod jsonl;
#[cfg(feature = "sink-webhook")]
pub mod webhook;

pub use error::SinkBuildError;
pub use jsonl::{JsonLinesSink, JsonLinesSinkBuilder};
#[cfg(feature = "sink-webhook")]
pub use webhook::{WebhookSink, WebhookSinkBuilder};

// The port the dispatcher delivers through lives beside the dispatcher
// (`notify` never imports `sink`); this is its public home.
pub use crate::notify::dispatcher::sink::{BoxFuture, Sink, SinkError};

#[cfg(feature = "sink-sns")]
mod aws_query;
#[cfg(feature = "sink-kafka")]
pub mod kafka;
#[cfg(any(
    feature = "sink-webhook",
    feature = "sink-kafka",
    feature = "sink-sns",
    feature = "sink-nats",
    feature = "sink-redis",
    feature = "sink-rabbitmq",
    feature = "sink-mqtt"
))]
pub(crate) mod outcome;
#[cfg(feature = "sink-sns")]
pub mod sns;

#[cfg(feature = "sink-kafka")]
pub use kafka::{KafkaSink, KafkaSinkBuilder};
#[cfg(feature = "sink-sns")]
pub use sns::{SnsSink, SnsSinkBuilder, SqsSink, SqsSinkBuilder};

#[cfg(any(
    feature = "sink-nats",
    feature = "sink-redis",
    feature = "sink-rabbitmq",
    feature = "sink-mqtt"
))]
mod broker;
#[cfg(feature = "sink-mqtt")]
pub mod mqtt;
#[cfg(feature = "sink-nats")]
pub mod nats;
#[cfg(feature = "sink-rabbitmq")]
pub mod rabbitmq;
#[cfg(feature = "sink-redis")]
pub mod redis;

#[cfg(feature = "sink-mqtt")]
pub use self::mqtt::{MqttSink, MqttSinkBuilder};
#[cfg(feature = "sink-nats")]
pub use self::nats::{NatsSink, NatsSinkBuilder};
#[cfg(feature = "sink-rabbitmq")]
pub use self::rabbitmq::{RabbitMqSink, RabbitMqSinkBuilder};
#[cfg(feature = "sink-redis")]
pub use self::redis::{RedisSink, RedisSinkBuilder};
