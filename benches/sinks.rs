//! Sink throughput: events/s through `KafkaSink` into librdkafka's
//! in-process mock cluster (3 brokers, 4 partitions, replication 3), with
//! the sink's defaults (idempotent producer, acks=all, linger.ms=5,
//! CloudEvents structured values).
//!
//! `cargo bench --bench sinks --features sink-kafka` (custom harness; pass
//! `--quick` for a short run). Each case delivers batches the way the
//! dispatcher does: `deliver(batch)` awaited, with 1 or 4 batches in flight.

use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;
use s3tap::notify::{Event, S3Operation};
use s3tap::sink::{KafkaSink, Sink};

fn events(n: usize) -> Vec<Event> {
    (0..n)
        .map(|i| {
            let mut event = Event::new(
                S3Operation::PutObject,
                "PUT",
                200,
                format!("https://s3.example.com/photos/2024/img-{}.jpg", i % 1000),
            );
            event.bucket = Some("photos".into());
            event.key = Some(format!("2024/img-{}.jpg", i % 1000));
            event.size = Some(1_234_567);
            event.etag = Some("9b2cf535f27731c974343645a3985328".into());
            event.access_key_id = Some("AKIAIOSFODNN7EXAMPLE".into());
            event
        })
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn run(
    sink: &KafkaSink,
    events: &[Event],
    batch: usize,
    in_flight: usize,
) -> (f64, Duration, Duration) {
    let chunks: Vec<&[Event]> = events.chunks(batch).collect();
    let started = Instant::now();
    let mut latencies = Vec::with_capacity(chunks.len());
    for group in chunks.chunks(in_flight) {
        let results = futures_util::future::join_all(group.iter().map(|chunk| async move {
            let t = Instant::now();
            sink.deliver(chunk).await.expect("delivered");
            t.elapsed()
        }))
        .await;
        latencies.extend(results);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    (
        events.len() as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
    )
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let total = if quick { 20_000 } else { 100_000 };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cluster = MockCluster::new(3).expect("mock cluster");
    cluster.create_topic("bench", 4, 3).unwrap();
    let sink = KafkaSink::builder(&cluster.bootstrap_servers())
        .topic("bench")
        .build()
        .unwrap();
    let events = events(total);
    let sample = sink.encode(&events[0]);
    println!(
        "KafkaSink -> MockCluster(3 brokers, 4 partitions, rf 3); {total} events per case; value {} bytes (CloudEvents structured)",
        sample.body.len()
    );
    println!("| batch | in flight | events/s | batch p50 | batch p99 |");
    println!("|---:|---:|---:|---:|---:|");
    runtime.block_on(async {
        // Warm-up: connections, metadata, producer id.
        sink.deliver(&events[..100]).await.unwrap();
        for (batch, in_flight) in [(1, 1), (100, 1), (500, 1), (500, 4)] {
            // One event per deliver is slow: fewer of them.
            let n = if batch == 1 { total / 50 } else { total };
            let (rate, p50, p99) = run(&sink, &events[..n], batch, in_flight).await;
            println!(
                "| {batch} | {in_flight} | {rate:.0} | {:.1} ms | {:.1} ms |",
                p50.as_secs_f64() * 1e3,
                p99.as_secs_f64() * 1e3
            );
        }
    });
}
