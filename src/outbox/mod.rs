//! The fleet's outbox: routed events committed to a replicated log that
//! every proxy shares (NATS JetStream, feature `outbox-nats`, described
//! here; or Kafka, feature `outbox-kafka`, described in [`kafka`]), and
//! the delivery role that consumes it.
//!
//! ```text
//!  proxy 1 ─┐                        ┌─► s3tap deliver ─► sinks (webhook, Kafka, ...)
//!  proxy 2 ─┼─► JetStream stream ────┤   (one durable pull consumer per sink,
//!  proxy N ─┘   (R replicas)         └─► s3tap deliver    shared by every deliverer)
//!     │                                        │ refused for good
//!     └─ local spool: write-behind             └─► dead-letter stream
//!        while the stream is away
//! ```
//!
//! - **Publishing** ([`JetStreamOutbox`]): one message per routed copy of an
//!   event (event, sink), on the subject `<prefix>.<sink>.<shard>`, where the
//!   shard is a hash of bucket and key: one object's events stay on one
//!   subject, in the order they were published. `Nats-Msg-Id` is
//!   `<event id>:<sink>:<rule>`, so the stream drops a copy published twice
//!   within its duplicate window (a retry after a lost ack, the spool
//!   re-publishing what a timed-out commit had stored). The body is the
//!   event as JSON, the form the spool keeps it in.
//! - **Commit before the answer**: the proxy's
//!   [`RoutingEmitter::commit_through`](crate::notify::RoutingEmitter::commit_through)
//!   publishes the events of a request that changed the store and the
//!   answer waits for the stream's acknowledgements (see
//!   [`NotifyLayer::commit_before_answer`](crate::notify::NotifyLayer::commit_before_answer)).
//!   Publishes of concurrent requests share the connection's writes and
//!   are acknowledged together: a group commit without a timer. A publish
//!   that fails or outlasts the commit timeout hands the events to the local
//!   dispatcher, whose sinks are [`OutboxSink`]s publishing to the same
//!   stream: the redb spool is the write-behind buffer while the log is
//!   away, and clients are not slowed (while the outbox is degraded nothing
//!   waits for it).
//! - **Delivering** ([`Deliverer`]): per sink, a durable pull consumer
//!   (`deliver-<sink>`, explicit acks) that any number of deliverer
//!   processes share as a work queue. A batch is acknowledged only after the
//!   sink acknowledged it; a transient failure is `nak`ed with the backoff's
//!   delay (the stream is not blocked: other sinks' consumers go on) and the
//!   sink waits as the dispatcher's workers do; a permanent refusal is
//!   retried one event at a time and what still fails goes to the
//!   dead-letter stream; a `410` parks the sink in that deliverer.
//! - **Replay** ([`replay`]): re-delivers what the stream still retains
//!   since a time, with the events' own ids, to chosen sinks.
//!
//! The stream keeps messages by age and size (limits retention), not until
//! they are acknowledged, so replay can reach back. Consumers are created
//! when missing; the streams too, with the replicas and retention
//! configured.

#[cfg(feature = "outbox-nats")]
mod dead_letters;
#[cfg(feature = "outbox-nats")]
mod deliver;
#[cfg(feature = "outbox-nats")]
mod jetstream;
#[cfg(feature = "outbox-kafka")]
pub mod kafka;
mod message;
mod replay;

#[cfg(feature = "outbox-nats")]
pub use dead_letters::DeadLetterStream;
#[cfg(feature = "outbox-nats")]
pub use deliver::{Deliverer, DelivererBuilder};
#[cfg(feature = "outbox-nats")]
pub use jetstream::{JetStreamOutbox, JetStreamOutboxBuilder, OutboxSink};
#[cfg(feature = "outbox-kafka")]
pub use kafka::{
    KafkaDeadLetters, KafkaDeliverer, KafkaDelivererBuilder, KafkaOutbox, KafkaOutboxBuilder,
    KafkaOutboxSink,
};
pub use message::{shard_of, OutboxDeadLetter, OutboxMessage};
#[cfg(feature = "outbox-nats")]
pub use replay::replay;
pub use replay::{ReplayReport, ReplaySelection};

/// What a deliverer did for one sink since it started.
#[derive(Debug, Default)]
pub struct SinkProgress {
    /// Events the sink acknowledged.
    pub delivered: std::sync::atomic::AtomicU64,
    /// Events handed back to be tried again later.
    pub retried: std::sync::atomic::AtomicU64,
    /// Events moved to the dead letters.
    pub dead_lettered: std::sync::atomic::AtomicU64,
}

/// Why the outbox could not be set up or used.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// The URL or a setting is not usable.
    #[error("outbox: {0}")]
    Config(String),
    /// The engine refused or could not be reached.
    #[error("outbox: {0}")]
    Engine(String),
}

impl OutboxError {
    pub(crate) fn engine(context: &str, error: impl std::fmt::Display) -> Self {
        OutboxError::Engine(format!("{context}: {error}"))
    }
}
