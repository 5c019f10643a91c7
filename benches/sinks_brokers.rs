//! Events per second through each broker sink to its real broker on
//! loopback, by batch size: `Sink::deliver` called in a loop, each call
//! returning only once the broker acknowledged the whole batch (JetStream
//! PubAck, `EXEC` reply, publisher confirm, PUBACK).
//!
//! `cargo bench --bench sinks_brokers --features sink-nats,sink-redis,sink-rabbitmq,sink-mqtt`
//! (a custom harness; the figures in BENCHMARKS.md come from here).
//! `S3TAP_BENCH_EVENTS` sets the events per run at batch sizes above 1
//! (default 20 000; batch size 1 runs a tenth), `S3TAP_BENCH_ROUNDS` the
//! rounds (3). Needs the brokers running (see PEERS.md);
//! `S3TAP_SKIP_PEERS=1` skips.

#[path = "../tests/broker_support/mod.rs"]
mod broker_support;

use std::time::{Duration, Instant};

use s3tap::notify::{Event, S3Operation};
use s3tap::sink::{MqttSink, NatsSink, RabbitMqSink, RedisSink, Sink};

const BATCHES: [usize; 4] = [1, 10, 100, 1000];

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A PutObject event as the NotifyLayer makes them (≈ 900 bytes as
/// CloudEvents JSON).
fn events(n: usize) -> Vec<Event> {
    (0..n)
        .map(|i| {
            let mut event = Event::new(
                S3Operation::PutObject,
                "PUT",
                200,
                format!("https://s3.us-west-004.backblazeb2.com/photos/2024/07/img_{i:06}.jpg"),
            );
            event.bucket = Some("photos".into());
            event.key = Some(format!("2024/07/img_{i:06}.jpg"));
            event.size = Some(2_345_678);
            event.etag = Some("9b2cf535f27731c974343645a3985328".into());
            event.content_type = Some("image/jpeg".into());
            event.access_key_id = Some("AKIAIOSFODNN7EXAMPLE".into());
            event.source_ip = Some("192.0.2.10".parse().unwrap());
            event.duration_ms = 42;
            event
        })
        .collect()
}

/// Delivers `events` in batches of `batch`; events/s.
async fn run(sink: &dyn Sink, events: &[Event], batch: usize) -> f64 {
    let started = Instant::now();
    for chunk in events.chunks(batch) {
        sink.deliver(chunk)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", sink.name()));
    }
    events.len() as f64 / started.elapsed().as_secs_f64()
}

async fn measure(label: &str, sink: &dyn Sink, events_per_run: usize, rounds: usize) {
    // Warm-up: connections, stream/queue creation on first write.
    run(sink, &events(200), 100).await;
    for batch in BATCHES {
        let n = if batch == 1 {
            events_per_run / 10
        } else {
            events_per_run
        };
        let events = events(n);
        let mut rates: Vec<f64> = Vec::new();
        for _ in 0..rounds {
            rates.push(run(sink, &events, batch).await);
        }
        let shown: Vec<String> = rates.iter().map(|r| format!("{r:.0}")).collect();
        rates.sort_by(f64::total_cmp);
        println!(
            "{label:<12} batch {batch:>4}: {:>8.0} events/s median  ({} events per round; rounds: {})",
            rates[rates.len() / 2],
            n,
            shown.join(" / ")
        );
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let events_per_run = env_or("S3TAP_BENCH_EVENTS", 20_000);
    let rounds = env_or("S3TAP_BENCH_ROUNDS", 3).max(1);
    let timeout = Duration::from_secs(30);

    if let Some(lease) = broker_support::NATS.lease() {
        use async_nats::jetstream::stream::{Config, StorageType};
        let url = format!("nats://{}", lease.broker.addr());
        let name = broker_support::unique("S3TAP_BENCH_");
        let subject = format!("s3tap.bench.{name}");
        let jetstream = async_nats::jetstream::new(async_nats::connect(&url).await.unwrap());
        jetstream
            .get_or_create_stream(Config {
                name: name.clone(),
                subjects: vec![subject.clone()],
                storage: StorageType::File,
                duplicate_window: Duration::from_secs(120),
                ..Default::default()
            })
            .await
            .unwrap();
        let sink = NatsSink::builder(&url)
            .subject(&subject)
            .timeout(timeout)
            .max_batch(1000)
            .connect()
            .await
            .unwrap();
        measure("nats", &sink, events_per_run, rounds).await;
        jetstream.delete_stream(&name).await.unwrap();
    }

    if let Some(lease) = broker_support::REDIS.lease() {
        let url = format!("redis://{}/", lease.broker.addr());
        let key = broker_support::unique("s3tap:bench:");
        let sink = RedisSink::builder(&url)
            .stream(&key)
            .max_len(100_000)
            .timeout(timeout)
            .connect()
            .await
            .unwrap();
        measure("redis", &sink, events_per_run, rounds).await;
        let client = redis::Client::open(url.as_str()).unwrap();
        let mut connection = client.get_multiplexed_async_connection().await.unwrap();
        let _: () = redis::cmd("DEL")
            .arg(&key)
            .query_async(&mut connection)
            .await
            .unwrap();
    }

    if let Some(lease) = broker_support::RABBITMQ.lease() {
        use lapin::options::{
            ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
            QueueDeleteOptions,
        };
        use lapin::types::{FieldTable, ShortString};
        use lapin::{Connection, ConnectionProperties, ExchangeKind};
        let url = format!("amqp://guest:guest@{}/%2f", lease.broker.addr());
        let name = broker_support::unique("s3tap.bench.");
        let connection = Connection::connect(&url, ConnectionProperties::default())
            .await
            .unwrap();
        let channel = connection.create_channel().await.unwrap();
        channel
            .exchange_declare(
                ShortString::from(name.as_str()),
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        channel
            .queue_declare(
                ShortString::from(name.as_str()),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        channel
            .queue_bind(
                ShortString::from(name.as_str()),
                ShortString::from(name.as_str()),
                ShortString::from("s3.events"),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        let sink = RabbitMqSink::builder(&url)
            .exchange(&name)
            .routing_key("s3.events")
            .timeout(timeout)
            .max_batch(1000)
            .connect()
            .await
            .unwrap();
        measure("rabbitmq", &sink, events_per_run, rounds).await;
        channel
            .queue_delete(
                ShortString::from(name.as_str()),
                QueueDeleteOptions::default(),
            )
            .await
            .unwrap();
        channel
            .exchange_delete(
                ShortString::from(name.as_str()),
                ExchangeDeleteOptions::default(),
            )
            .await
            .unwrap();
    }

    if let Some(lease) = broker_support::MOSQUITTO.lease() {
        let topic = broker_support::unique("s3tap/bench/");
        let sink = MqttSink::builder("127.0.0.1", lease.broker.port)
            .topic(&topic)
            .timeout(timeout)
            .max_batch(1000)
            .connect()
            .await
            .unwrap();
        measure("mqtt", &sink, events_per_run, rounds).await;
        drop(sink);

        // Mosquitto leaves Nagle's algorithm on for its clients by default
        // (`set_tcp_nodelay false`): after the first PUBACK of a batch, the
        // others wait for the client's delayed ACK, about 40 ms per batch.
        // The same measurement against a Mosquitto of this bench's own,
        // started with `set_tcp_nodelay true`.
        let dir = std::env::temp_dir().join(broker_support::unique("s3tap-bench-mosquitto-"));
        std::fs::create_dir_all(&dir).unwrap();
        let port = 18_831;
        let config = dir.join("mosquitto.conf");
        std::fs::write(
            &config,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nset_tcp_nodelay true\n"
            ),
        )
        .unwrap();
        let mut child = std::process::Command::new("mosquitto")
            .arg("-c")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("mosquitto");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the bench's mosquitto did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let sink = MqttSink::builder("127.0.0.1", port)
            .topic(&topic)
            .timeout(timeout)
            .max_batch(1000)
            .connect()
            .await
            .unwrap();
        measure("mqtt+nodelay", &sink, events_per_run, rounds).await;
        drop(sink);
        child.kill().unwrap();
        child.wait().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
