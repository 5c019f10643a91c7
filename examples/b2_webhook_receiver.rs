//! Receives Backblaze B2 Event Notifications, verifies their signature and
//! appends one CSV row per new event.
//!
//! ```text
//! B2_WEBHOOK_SECRET=<rule signing secret> CSV_PATH=events.csv PORT=8080 \
//!     cargo run --example b2_webhook_receiver
//! ```
//!
//! - `B2_WEBHOOK_SECRET` (required): the rule's `hmacSha256SigningSecret`.
//! - `CSV_PATH` or the first argument: the file to append to (default
//!   `b2-events.csv`); a header row is written when the file is new.
//! - `PORT`: where to listen on 127.0.0.1 (default 8080; 0 picks a free
//!   port). Once ready the program prints `listening on http://ADDR`.
//!
//! The handler answers `200` as soon as the events are queued; a single writer
//! task owns the file, so rows are never interleaved and the request never
//! waits for the disk. B2 delivers at least once, so the writer skips events
//! whose `eventId` it has already written (remembered in memory, for the most
//! recent 100 000 events). Columns: event timestamp in milliseconds since the
//! Unix epoch (as B2 sends it), event type, object name, object size, object
//! version id.

use std::collections::{HashSet, VecDeque};
use std::fs::OpenOptions;
use std::path::PathBuf;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use s3tap::webhook::VerifyWebhookLayer;
use serde::Deserialize;
use tokio::sync::mpsc;

/// The body of one B2 notification request.
#[derive(Debug, Deserialize)]
struct Notification {
    events: Vec<Event>,
}

/// The fields of a B2 event this receiver records or de-duplicates on; the
/// others (account, bucket, rule name, version) are ignored.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Event {
    event_id: String,
    event_timestamp: u64,
    event_type: String,
    #[serde(default)]
    object_name: String,
    #[serde(default)]
    object_size: Option<u64>,
    #[serde(default)]
    object_version_id: Option<String>,
}

const QUEUE_DEPTH: usize = 1024;
const REMEMBERED_EVENT_IDS: usize = 100_000;

/// The receiving app: `POST /b2` verified with `secret`, events queued to
/// `events`.
fn app(secret: &str, events: mpsc::Sender<Vec<Event>>) -> Router {
    Router::new()
        .route("/b2", post(receive))
        .route_layer(VerifyWebhookLayer::b2(secret).max_body_size(1 << 20))
        .with_state(events)
}

async fn receive(State(events): State<mpsc::Sender<Vec<Event>>>, body: Bytes) -> StatusCode {
    let notification: Notification = match serde_json::from_slice(&body) {
        Ok(notification) => notification,
        Err(_) => return StatusCode::BAD_REQUEST,
    };
    // A full queue means the disk is not keeping up; 503 makes B2 retry later
    // instead of the request waiting here.
    match events.try_send(notification.events) {
        Ok(()) => StatusCode::OK,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// Owns the CSV file: appends each event not written before, flushing after
/// every request's batch so a crash loses at most the batch being written.
fn write_events(path: PathBuf, mut events: mpsc::Receiver<Vec<Event>>) -> std::io::Result<()> {
    let file = OpenOptions::new().create(true).append(true).open(&path)?;
    let is_new = file.metadata()?.len() == 0;
    let mut csv = csv::Writer::from_writer(file);
    if is_new {
        csv.write_record([
            "event_timestamp_ms",
            "event_type",
            "object_name",
            "object_size",
            "object_version_id",
        ])?;
        csv.flush()?;
    }
    let mut seen = HashSet::new();
    let mut seen_order = VecDeque::new();
    while let Some(batch) = events.blocking_recv() {
        for event in batch {
            if seen.contains(&event.event_id) {
                continue;
            }
            csv.write_record([
                event.event_timestamp.to_string(),
                event.event_type,
                event.object_name,
                event
                    .object_size
                    .map(|size| size.to_string())
                    .unwrap_or_default(),
                event.object_version_id.unwrap_or_default(),
            ])?;
            if seen_order.len() == REMEMBERED_EVENT_IDS {
                if let Some(oldest) = seen_order.pop_front() {
                    seen.remove(&oldest);
                }
            }
            seen.insert(event.event_id.clone());
            seen_order.push_back(event.event_id);
        }
        csv.flush()?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let secret = std::env::var("B2_WEBHOOK_SECRET")
        .map_err(|_| "set B2_WEBHOOK_SECRET to the rule's signing secret")?;
    let csv_path: PathBuf = std::env::var_os("CSV_PATH")
        .or_else(|| std::env::args_os().nth(1))
        .unwrap_or_else(|| "b2-events.csv".into())
        .into();
    let port: u16 = std::env::var("PORT")
        .ok()
        .map(|port| port.parse())
        .transpose()?
        .unwrap_or(8080);

    let (sender, receiver) = mpsc::channel(QUEUE_DEPTH);
    // File I/O is blocking; it gets a thread of its own, off the request path.
    let writer = tokio::task::spawn_blocking(move || write_events(csv_path, receiver));

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app(&secret, sender)).await?;
    writer.await??;
    Ok(())
}
