//! The [`Dispatcher`]: takes events from producers without ever making them
//! wait, spools them durably, and delivers them to sinks in batches with
//! retries.
//!
//! # How an event travels
//!
//! ```text
//! emit() ──try_send──► ingress queue ──► spool writer ──(due and not yet acked)──► redb spool
//!    │ (full: overflow list,               │ hands over at once                        │
//!    │  drained first)                     ▼                                           │
//!    ▼                           lane (bounded, in memory) ──► sink worker ◄───────────┘
//! never awaits                   "spilled" when full: the        │    (reads the spool
//!                                worker reads the spool          ▼     while spilled)
//!                                                           Sink::deliver
//!                     ack: delete from the spool, or never write it if not yet due
//!                     transient: back off, retry · permanent: dead letter · 410: disable the sink
//! ```
//!
//! Operators act on what failed through the handle: list and inspect the
//! dead letters ([`Dispatcher::dead_letters_matching`],
//! [`Dispatcher::dead_letter`]), deliver them again
//! ([`Dispatcher::redrive`]) or drop them ([`Dispatcher::purge`]), chosen
//! by a [`DeadLetterFilter`](crate::notify::DeadLetterFilter) (sink, event id, age), and enable a sink a
//! `410` disabled ([`Dispatcher::enable_sink`]). These run in the spool
//! writer between two group commits, so they see every accepted event.
//!
//! - [`Dispatcher::emit`] is synchronous: a `try_send` on a bounded channel.
//!   When the channel is full the [`OverflowPolicy`] decides; the default,
//!   [`SpillToSpool`](OverflowPolicy::SpillToSpool), puts the event on an
//!   overflow list that the spool writer drains first. Nothing is dropped
//!   until the spool's own bound is reached, and then `emit` says so
//!   ([`EmitError::SpoolFull`]).
//! - One writer task owns all writes to the spool: new events, acks,
//!   reschedules and dead letters go into one transaction per group commit
//!   (see [`FsyncPolicy`](crate::notify::FsyncPolicy)). It hands each event to its sink's lane as soon as
//!   it takes it, and writes the event to the spool only once it is due: under
//!   the default `Interval` policy, when it has waited a full interval without
//!   an acknowledgement (at once if the lane spilled or a delivery failed). An
//!   event acknowledged before it is due is never written: with a healthy
//!   sink, the spool costs next to nothing, and it fills only when a sink is
//!   slow or down, which is when it is needed.
//! - Each sink has its own worker and its own in-memory lane. A sink that is
//!   slow or down fills only its own lane; the writer then stops feeding the
//!   lane ("spilled") and the worker later catches up by reading the spool
//!   from where the lane stopped. Memory stays bounded and other sinks and
//!   producers do not notice.
//! - Delivery is at-least-once: an event is deleted from the spool (or
//!   never written) only after its sink acknowledged it, and everything in
//!   the spool is delivered again after a restart (with the attempt count
//!   and next-attempt time it had). Sinks de-duplicate by [`EventId`](crate::notify::EventId).
//! - A batch is up to `min(sink.max_batch(), batch max)` events, sent when
//!   full or when its first event has waited `linger`. After a transient
//!   failure the whole sink waits (exponential backoff with full jitter, at
//!   least the `Retry-After` it was given, see [`RetryPolicy`](crate::notify::RetryPolicy)). A batch
//!   refused permanently is retried one event at a time, so one poisoned
//!   event does not dead-letter its neighbours.
//! - [`Dispatcher::shutdown`] stops accepting, commits everything not yet
//!   acknowledged, delivers until the deadline and leaves the rest in the
//!   spool.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use s3tap::notify::{Dispatcher, Event, FsyncPolicy, S3Operation};
//! use s3tap::sink::JsonLinesSink;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let log = dir.path().join("events.jsonl");
//! let (dispatcher, task) = Dispatcher::builder()
//!     .sink("log", Arc::new(JsonLinesSink::file(&log)?))
//!     .batch(500, Duration::from_millis(5))
//!     .spool(dir.path().join("spool.redb"), FsyncPolicy::default())
//!     .build()
//!     .await?;
//!
//! let event = Event::new(S3Operation::PutObject, "PUT", 200, "https://s3.example/b/k");
//! let id = event.id.clone();
//! dispatcher.emit("log", event)?; // never waits
//!
//! let stats = dispatcher.shutdown(Duration::from_secs(5)).await;
//! task.await?;
//! assert_eq!(stats.sinks[0].delivered, 1);
//! assert!(std::fs::read_to_string(&log)?.contains(id.as_str()));
//! # Ok(())
//! # }
//! ```

mod builder;
mod error;
mod handle;
mod lanes;
mod messages;
pub(super) mod retry;
pub(crate) mod sink;
pub(super) mod spool;
mod stats;
mod supervisor;
mod worker;
mod writer;

pub use builder::DispatcherBuilder;
pub use error::{DispatcherError, EmitError};
pub use handle::{Dispatcher, OverflowPolicy};
pub use stats::{DispatcherStats, SinkStats};
pub use supervisor::DispatcherTask;
