//! A sink written outside s3tap, with only its public API: events into a
//! PostgreSQL table. The pattern for your own sinks.
//!
//! ```text
//! cargo run --example custom_sink     # DATABASE_URL, default postgres://postgres@127.0.0.1/test
//! ```
//!
//! A sink implements [`s3tap::sink::Sink`]: a name, the largest batch it
//! takes, and `deliver`, which gets 1 to `max_batch` events and says how it
//! went:
//!
//! - `Ok(())`: every event is stored; the dispatcher forgets them.
//! - `Err(SinkError::Transient { .. })`: nothing is lost, try again later
//!   (here: no connection, the server shutting down, too many connections,
//!   a serialization failure). The dispatcher keeps the events in its spool
//!   and retries with backoff, so the sink itself never sleeps or loops.
//! - `Err(SinkError::Permanent { .. })`: these events can never be stored as
//!   they are (here: a constraint or type error, a missing table). The
//!   dispatcher retries a failed batch one event at a time, then
//!   dead-letters the events that still fail.
//! - `Err(SinkError::Partial { failed })`: some events of the batch failed
//!   (index and reason); the others are done.
//!
//! Delivery is at-least-once: after a timeout or a crash the same event
//! comes again. The sink must be **idempotent by event id**: here the id is
//! the primary key and `INSERT ... ON CONFLICT (id) DO NOTHING` makes a
//! retry harmless, and the batch is one transaction, so it is stored whole
//! or not at all.
//!
//! The sink also reconnects by itself: a connection that failed is replaced
//! on the next delivery, so the dispatcher's retries need nothing more.
//!
//! Run it twice: the second run stores nothing new (same ids).

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use s3tap::notify::format::{CloudEventsMode, Encoder, Format, FormatOptions};
use s3tap::notify::{Event, EventId, S3Operation};
use s3tap::sink::{BoxFuture, Sink, SinkError};
use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls};

/// The table, created when missing.
const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS s3tap_events (
    id text PRIMARY KEY,
    time timestamptz NOT NULL,
    event_type text NOT NULL,
    bucket text,
    key text,
    size bigint,
    body jsonb NOT NULL
)";

const INSERT: &str = "INSERT INTO s3tap_events (id, time, event_type, bucket, key, size, body)
    VALUES ($1, $2, $3, $4, $5, $6, $7)
    ON CONFLICT (id) DO NOTHING";

/// Events into PostgreSQL, one transaction per batch.
struct PostgresSink {
    url: String,
    /// The connection, replaced after a failure. The lock also makes
    /// deliveries take turns on it (one transaction at a time).
    client: Mutex<Option<Client>>,
    /// The `body` column: the event as CloudEvents JSON (any s3tap format
    /// would do).
    encoder: Encoder,
}

impl PostgresSink {
    fn new(url: impl Into<String>) -> Self {
        PostgresSink {
            url: url.into(),
            client: Mutex::new(None),
            encoder: Encoder::new(
                Format::CloudEvents {
                    mode: CloudEventsMode::Structured,
                },
                FormatOptions::default(),
            ),
        }
    }

    async fn connect(&self) -> Result<Client, SinkError> {
        let (client, connection) = tokio::time::timeout(
            Duration::from_secs(5),
            tokio_postgres::connect(&self.url, NoTls),
        )
        .await
        .map_err(|_| SinkError::transient("postgres: connect timed out"))?
        .map_err(classify)?;
        // tokio-postgres does its I/O in this future; it ends when the
        // connection does, and `Client::is_closed` then says so.
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                eprintln!("postgres connection ended: {e}");
            }
        });
        client.batch_execute(SCHEMA).await.map_err(classify)?;
        Ok(client)
    }

    async fn store(&self, batch: &[Event]) -> Result<(), SinkError> {
        let mut slot = self.client.lock().await;
        if slot.as_ref().is_none_or(Client::is_closed) {
            *slot = Some(self.connect().await?);
        }
        let client = slot.as_mut().expect("connected above");
        let result = insert(client, &self.encoder, batch).await;
        if client.is_closed() {
            // Reconnect on the next delivery.
            *slot = None;
        }
        result.map_err(classify)
    }
}

async fn insert(
    client: &mut Client,
    encoder: &Encoder,
    batch: &[Event],
) -> Result<(), tokio_postgres::Error> {
    let transaction = client.transaction().await?;
    let statement = transaction.prepare(INSERT).await?;
    for event in batch {
        let body: serde_json::Value = serde_json::from_slice(&encoder.encode_one(event).body)
            .expect("s3tap's formats write JSON");
        let size = event.size.map(|s| i64::try_from(s).unwrap_or(i64::MAX));
        transaction
            .execute(
                &statement,
                &[
                    &event.id.as_str(),
                    &event.time,
                    &event.s3_or_s3tap_name(),
                    &event.bucket,
                    &event.key,
                    &size,
                    &body,
                ],
            )
            .await?;
    }
    transaction.commit().await
}

/// Retry later, or never? PostgreSQL's SQLSTATE classes decide.
fn classify(error: tokio_postgres::Error) -> SinkError {
    let message = format!("postgres: {error}");
    let Some(code) = error.code() else {
        // No SQLSTATE: the client could not talk to the server (refused,
        // reset, closed).
        return SinkError::transient(message);
    };
    let class = &code.code()[..2];
    match class {
        // Connection exception, insufficient resources (too many
        // connections, disk full), operator intervention (shutdown,
        // cancel), transaction rollback (serialization, deadlock),
        // system error.
        "08" | "53" | "57" | "40" | "58" => SinkError::transient(message),
        // Data exception (a value the column cannot hold), integrity
        // constraint (NOT NULL, CHECK, ...), syntax error or access rule
        // (a missing table or column, no privilege).
        "22" | "23" | "42" => SinkError::permanent(message),
        // Invalid authorization (wrong password, unknown role).
        "28" => SinkError::permanent(message),
        _ => SinkError::transient(message),
    }
}

impl Sink for PostgresSink {
    fn name(&self) -> &str {
        "postgres"
    }

    fn max_batch(&self) -> usize {
        100
    }

    fn deliver<'a>(&'a self, batch: &'a [Event]) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(self.store(batch))
    }
}

/// A few events with fixed ids, so that a second run delivers the same ones.
fn sample_events() -> Vec<Event> {
    let samples = [
        (
            "0190b5b1-0000-7000-8000-000000000001",
            S3Operation::PutObject,
            "PUT",
            "photos/2024/cat.jpg",
            Some(52_133),
        ),
        (
            "0190b5b1-0000-7000-8000-000000000002",
            S3Operation::CompleteMultipartUpload,
            "POST",
            "videos/holiday.mp4",
            Some(734_003_200),
        ),
        (
            "0190b5b1-0000-7000-8000-000000000003",
            S3Operation::DeleteObject,
            "DELETE",
            "photos/2024/dog.jpg",
            None,
        ),
    ];
    samples
        .into_iter()
        .enumerate()
        .map(|(i, (id, operation, method, key, size))| {
            let mut event = Event::new(
                operation,
                method,
                200,
                format!("https://s3.example.com/media/{key}"),
            );
            event.id = EventId(id.into());
            event.time = UNIX_EPOCH + Duration::from_secs(1_720_000_000 + i as u64 * 60);
            event.bucket = Some("media".into());
            event.key = Some(key.into());
            event.size = size;
            event
        })
        .collect()
}

/// Retries transient failures a few times, as the dispatcher would (with
/// its spool, backoff and dead letters, in a real deployment).
async fn deliver_with_retries<F, Fut>(mut deliver: F) -> Result<(), SinkError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), SinkError>>,
{
    let mut wait = Duration::from_millis(200);
    for _ in 0..5 {
        match deliver().await {
            Err(SinkError::Transient { message, .. }) => {
                eprintln!("transient failure, retrying in {wait:?}: {message}");
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            other => return other,
        }
    }
    deliver().await
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1/test".into());
    let sink = PostgresSink::new(url.clone());
    let events = sample_events();

    let started = SystemTime::now();
    deliver_with_retries(|| sink.deliver(&events)).await?;
    println!(
        "delivered {} events to {} in {:?}",
        events.len(),
        sink.name(),
        started.elapsed().unwrap_or_default()
    );

    let (client, connection) = tokio_postgres::connect(&url, NoTls).await?;
    tokio::spawn(connection);
    let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
    let rows = client
        .query(
            "SELECT id, time, event_type, bucket, key, size, body->>'type' AS ce_type
             FROM s3tap_events WHERE id = ANY($1) ORDER BY id",
            &[&ids],
        )
        .await?;
    println!("id\ttime\tevent_type\tbucket\tkey\tsize\tbody.type");
    for row in rows {
        let time: SystemTime = row.get("time");
        let secs = time.duration_since(UNIX_EPOCH)?.as_secs();
        let size: Option<i64> = row.get("size");
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}",
            row.get::<_, String>("id"),
            secs,
            row.get::<_, String>("event_type"),
            row.get::<_, Option<String>>("bucket").unwrap_or_default(),
            row.get::<_, Option<String>>("key").unwrap_or_default(),
            size.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
            row.get::<_, Option<String>>("ce_type").unwrap_or_default(),
        );
    }
    Ok(())
}
