//! Events per second through the Dispatcher to a loopback webhook receiver,
//! against a baseline of the same receiver hit with plain batched POSTs.
//!
//! `cargo bench --bench dispatcher --features sink-webhook` (a custom
//! harness: each scenario runs once per round and prints events/s; the
//! figures in BENCHMARKS.md come from here). `S3TAP_BENCH_EVENTS` sets the
//! events per round (default 200 000), `S3TAP_BENCH_ROUNDS` the rounds (3).
//! Each round also times `emit` into a 16-slot queue whose sink never
//! answers (`SpillToSpool`): the speed goal that `tests/notify_dispatcher.rs`
//! only checks as "did not block".

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use s3tap::notify::{Dispatcher, Event, FsyncPolicy, OverflowPolicy, S3Operation};
use s3tap::sink::{BoxFuture, Sink, SinkError, WebhookSink};
use tokio::net::TcpListener;

const BATCH: usize = 1000;

/// A keep-alive HTTP/1.1 receiver that reads each body, counts the events
/// in it (a JSON array, one `"id":` per event) and answers 204.
async fn receiver() -> (String, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let events = Arc::new(AtomicU64::new(0));
    let counter = events.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let counter = counter.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let counter = counter.clone();
                    async move {
                        let body = request.into_body().collect().await.unwrap().to_bytes();
                        let n = memchr_count(&body, b"\"id\":");
                        counter.fetch_add(n, Ordering::Relaxed);
                        let mut response = Response::new(Full::new(Bytes::new()));
                        *response.status_mut() = http::StatusCode::NO_CONTENT;
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (format!("http://{addr}/hook"), events)
}

fn memchr_count(haystack: &[u8], needle: &[u8]) -> u64 {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle)
        .count() as u64
}

fn events(n: usize) -> Vec<Event> {
    (0..n)
        .map(|i| {
            let mut event = Event::new(
                S3Operation::PutObject,
                "PUT",
                200,
                format!("https://s3.example.com/bucket/objects/{i:08}.bin"),
            );
            event.bucket = Some("bucket".into());
            event.key = Some(format!("objects/{i:08}.bin"));
            event.size = Some(1_048_576);
            event.etag = Some("9b2cf535f27731c974343645a3985328".into());
            event.content_type = Some("application/octet-stream".into());
            event.access_key_id = Some("AKIAIOSFODNN7EXAMPLE".into());
            event.source_ip = Some("203.0.113.9".parse().unwrap());
            event.duration_ms = 12;
            event
        })
        .collect()
}

fn sink(url: &str) -> Arc<WebhookSink> {
    Arc::new(
        WebhookSink::builder(url)
            .max_batch(BATCH)
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
    )
}

/// Plain batched POSTs, one at a time, no dispatcher.
async fn baseline(url: &str, batch: Vec<Event>) -> (f64, Duration) {
    let sink = sink(url);
    let n = batch.len();
    let started = Instant::now();
    for chunk in batch.chunks(BATCH) {
        sink.deliver(chunk).await.unwrap();
    }
    let elapsed = started.elapsed();
    (n as f64 / elapsed.as_secs_f64(), elapsed)
}

/// Through the dispatcher: emit everything, wait until all is delivered.
/// Returns events/s end to end and the mean cost of one `emit`.
async fn dispatched(
    url: &str,
    received: &AtomicU64,
    batch: Vec<Event>,
    spool: Option<FsyncPolicy>,
) -> (f64, Duration, u64) {
    let dir = tempfile::tempdir().unwrap();
    let mut builder = Dispatcher::builder()
        .sink("hook", sink(url) as Arc<dyn Sink>)
        .batch(BATCH, Duration::from_millis(5));
    if let Some(policy) = spool {
        builder = builder.spool(dir.path().join("spool.redb"), policy);
    }
    let (dispatcher, task) = builder.build().await.unwrap();
    let before = received.load(Ordering::Relaxed);
    let n = batch.len() as u64;
    let started = Instant::now();
    for event in batch {
        dispatcher.emit("hook", event).unwrap();
    }
    let emitting = started.elapsed();
    while dispatcher.stats().sinks[0].delivered < n {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let elapsed = started.elapsed();
    let stats = dispatcher.shutdown(Duration::from_secs(5)).await;
    task.await.unwrap();
    assert!(received.load(Ordering::Relaxed) - before >= n);
    (
        n as f64 / elapsed.as_secs_f64(),
        emitting / n as u32,
        stats.commits,
    )
}

/// A sink that never answers.
struct Hang;

impl Sink for Hang {
    fn name(&self) -> &str {
        "hang"
    }
    fn max_batch(&self) -> usize {
        100
    }
    fn deliver<'a>(&'a self, _: &'a [Event]) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(std::future::pending())
    }
}

/// `emit` into a full 16-slot queue of a hung sink: mean and slowest call.
async fn emit_to_a_hung_sink(batch: Vec<Event>) -> (Duration, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let (dispatcher, task) = Dispatcher::builder()
        .sink("hang", Arc::new(Hang) as Arc<dyn Sink>)
        .queue_capacity(16)
        .lane_capacity(256)
        .overflow(OverflowPolicy::SpillToSpool)
        .spool(dir.path().join("spool.redb"), FsyncPolicy::Always)
        .build()
        .await
        .unwrap();
    let n = batch.len() as u32;
    let mut slowest = Duration::ZERO;
    let started = Instant::now();
    for event in batch {
        let t = Instant::now();
        dispatcher.emit("hang", event).unwrap();
        slowest = slowest.max(t.elapsed());
    }
    let mean = started.elapsed() / n;
    dispatcher.shutdown(Duration::from_millis(200)).await;
    task.await.unwrap();
    (mean, slowest)
}

fn main() {
    let n: usize = std::env::var("S3TAP_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let rounds: usize = std::env::var("S3TAP_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (url, received) = receiver().await;
        // Warm the connection pool and the receiver.
        baseline(&url, events(BATCH * 4)).await;
        println!("{n} events per round, batches of {BATCH}, 2 runtime threads, loopback receiver");
        for round in 1..=rounds {
            let (rate, elapsed) = baseline(&url, events(n)).await;
            println!("round {round}: baseline (plain batched POSTs)   {rate:>10.0} events/s  ({elapsed:.2?})");
            for (label, spool) in [
                ("dispatcher, in-memory spool", None),
                ("dispatcher, FsyncPolicy::Never", Some(FsyncPolicy::Never)),
                ("dispatcher, Interval(5 ms)", Some(FsyncPolicy::Interval(Duration::from_millis(5)))),
                ("dispatcher, FsyncPolicy::Always", Some(FsyncPolicy::Always)),
            ] {
                let (rate, emit, commits) = dispatched(&url, &received, events(n), spool).await;
                println!(
                    "round {round}: {label:<33} {rate:>10.0} events/s  (emit {emit:?}/event, {commits} commits)"
                );
            }
            let (mean, slowest) = emit_to_a_hung_sink(events(20_000)).await;
            println!(
                "round {round}: emit, hung sink, 16-slot queue   {mean:?}/event mean, slowest {slowest:?} (20 000 events)"
            );
        }
    });
}
