//! KafkaSink against librdkafka's in-process mock cluster (three brokers,
//! real Kafka protocol), read back with a real consumer; and, when
//! `KAFKA_BROKERS` is set, against that real broker.
#![cfg(feature = "sink-kafka")]

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use s3tap::notify::format::{BindingProtocol, CloudEventsMode, Encoder, Format, FormatOptions};
use s3tap::notify::{Event, S3Operation};
use s3tap::sink::{KafkaSink, Sink, SinkError};

/// A message as read back.
#[derive(Debug)]
struct Consumed {
    partition: i32,
    key: Option<String>,
    value: serde_json::Value,
    headers: HashMap<String, String>,
}

/// `n` PUT events over `objects` objects of bucket `photos`, in order.
fn events(n: usize, objects: usize) -> Vec<Event> {
    (0..n)
        .map(|i| {
            let mut event = Event::new(
                S3Operation::PutObject,
                "PUT",
                200,
                format!("http://s3.test/photos/img-{}.jpg", i % objects),
            );
            event.bucket = Some("photos".into());
            event.key = Some(format!("img-{}.jpg", i % objects));
            event.size = Some(i as u64);
            event.etag = Some(format!("etag{i}"));
            event
        })
        .collect()
}

/// Reads every message of `topic` (all partitions, from the beginning): at
/// least `expected` unless `timeout` passes first.
fn consume(bootstrap: &str, topic: &str, expected: usize, timeout: Duration) -> Vec<Consumed> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "s3tap-test")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let partitions = metadata.topics()[0].partitions().len() as i32;
    assert!(partitions > 0, "topic {topic} has no partitions");
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment
            .add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).expect("assign");
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    // At least `expected`, then on until the topic is drained: redeliveries
    // (at-least-once) may put more messages there than events.
    while Instant::now() < deadline {
        let Some(message) = consumer.poll(Duration::from_millis(300)) else {
            if out.len() >= expected {
                break;
            }
            continue;
        };
        let message = message.expect("consume");
        let headers = message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        (
                            h.key.to_owned(),
                            String::from_utf8(h.value.unwrap_or_default().to_vec()).unwrap(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push(Consumed {
            partition: message.partition(),
            key: message
                .key()
                .map(|k| String::from_utf8(k.to_vec()).unwrap()),
            value: serde_json::from_slice(message.payload().unwrap_or_default()).unwrap(),
            headers,
        });
    }
    out
}

fn mock_cluster() -> MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
    MockCluster::new(3).expect("mock cluster")
}

/// Produces 200 structured CloudEvents and checks each one read back: id,
/// key, value, content type, and per-object order within its partition.
async fn produce_and_consume(bootstrap: &str, topic: &str) {
    let sink = KafkaSink::builder(bootstrap)
        .topic(topic)
        .build()
        .expect("sink");
    let batch = events(200, 20);
    for chunk in batch.chunks(sink.max_batch().min(100)) {
        sink.deliver(chunk).await.expect("delivered");
    }
    let topic_owned = topic.to_owned();
    let bootstrap_owned = bootstrap.to_owned();
    let consumed = tokio::task::spawn_blocking(move || {
        consume(&bootstrap_owned, &topic_owned, 200, Duration::from_secs(60))
    })
    .await
    .unwrap();
    assert_eq!(consumed.len(), 200, "every event arrives exactly once");
    let by_id: HashMap<&str, &Event> = batch.iter().map(|e| (e.id.as_str(), e)).collect();
    let mut seen = HashSet::new();
    let mut partition_of_key: HashMap<String, i32> = HashMap::new();
    let mut last_position: HashMap<String, usize> = HashMap::new();
    for message in &consumed {
        let id = event_id(message.value["id"].as_str().expect("CloudEvents id"));
        assert!(seen.insert(id.to_owned()), "duplicate {id}");
        let event = by_id[id];
        let key = format!("photos/{}", event.key.as_deref().unwrap());
        assert_eq!(message.key.as_deref(), Some(key.as_str()));
        assert_eq!(message.value["specversion"], "1.0");
        assert_eq!(message.value["type"], "com.amazonaws.s3.ObjectCreated:Put");
        assert_eq!(
            message.value["subject"],
            s3tap::notify::format::s3::encode_key(event.key.as_deref().unwrap())
        );
        assert_eq!(
            message.value["data"]["s3"]["object"]["size"],
            event.size.unwrap()
        );
        assert_eq!(
            message.headers.get("content-type").map(String::as_str),
            Some("application/cloudevents+json")
        );
        // One object, one partition, produced order kept.
        let partition = *partition_of_key
            .entry(key.clone())
            .or_insert(message.partition);
        assert_eq!(partition, message.partition, "{key} moved partitions");
        let position = batch.iter().position(|e| e.id.as_str() == id).unwrap();
        if let Some(last) = last_position.insert(key.clone(), position) {
            assert!(last < position, "{key}: event {position} read after {last}");
        }
    }
}

/// The event id in a CloudEvents id (the AWS S3 adapter's: the record's
/// request id, `.`, its `x-amz-id-2`, which is the event id).
fn event_id(ce_id: &str) -> &str {
    ce_id.rsplit('.').next().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_cluster_round_trip_with_ids_keys_values_and_order() {
    let cluster = mock_cluster();
    cluster.create_topic("s3-events", 4, 3).unwrap();
    produce_and_consume(&cluster.bootstrap_servers(), "s3-events").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_mode_headers_and_topic_per_rule() {
    let cluster = mock_cluster();
    cluster.create_topic("all", 2, 3).unwrap();
    cluster.create_topic("uploads", 2, 3).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let sink = KafkaSink::builder(&bootstrap)
        .topic("all")
        .topic_for_rule("uploads-rule", "uploads")
        .format(Encoder::new(
            Format::CloudEvents {
                mode: CloudEventsMode::Binary(BindingProtocol::Kafka),
            },
            FormatOptions::default(),
        ))
        .build()
        .unwrap();
    let mut batch = events(10, 10);
    for event in &mut batch[..4] {
        event.matched_rule = Some("uploads-rule".into());
    }
    batch[9].key = Some("dir/é ü.txt".into());
    sink.deliver(&batch).await.expect("delivered");
    let b = bootstrap.clone();
    let uploads =
        tokio::task::spawn_blocking(move || consume(&b, "uploads", 4, Duration::from_secs(30)))
            .await
            .unwrap();
    let b = bootstrap.clone();
    let all = tokio::task::spawn_blocking(move || consume(&b, "all", 6, Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(uploads.len(), 4);
    assert_eq!(all.len(), 6);
    let ids_of = |messages: &[Consumed]| -> HashSet<String> {
        messages
            .iter()
            .map(|m| event_id(&m.headers["ce_id"]).to_owned())
            .collect()
    };
    let expected_uploads: HashSet<String> = batch[..4].iter().map(|e| e.id.to_string()).collect();
    assert_eq!(ids_of(&uploads), expected_uploads);
    for message in uploads.iter().chain(&all) {
        let event = batch
            .iter()
            .find(|e| e.id.as_str() == event_id(&message.headers["ce_id"]))
            .unwrap();
        assert_eq!(message.headers["ce_specversion"], "1.0");
        assert_eq!(
            message.headers["ce_type"],
            "com.amazonaws.s3.ObjectCreated:Put"
        );
        assert_eq!(message.headers["ce_source"], "aws:s3.us-east-1.photos");
        assert_eq!(
            message.headers["ce_subject"],
            s3tap::notify::format::s3::encode_key(event.key.as_deref().unwrap())
        );
        assert_eq!(message.headers["content-type"], "application/json");
        assert!(message.headers.contains_key("ce_time"));
        // Binary mode: the value is the data alone (the S3 record).
        assert_eq!(message.value["eventName"], "ObjectCreated:Put");
        assert!(message.value["s3"]["object"]["key"].is_string());
    }
    assert!(all
        .iter()
        .any(|m| m.headers["ce_subject"] == "dir/%C3%A9+%C3%BC.txt"
            && m.key.as_deref() == Some("photos/dir/é ü.txt")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brokers_down_is_transient_and_a_retry_loses_nothing() {
    let cluster = mock_cluster();
    cluster.create_topic("s3-events", 3, 3).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let sink = KafkaSink::builder(&bootstrap)
        .topic("s3-events")
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    // Connected first, so the outage hits a producer that knows the cluster.
    sink.deliver(&events(1, 1)).await.expect("warm-up");

    for broker in 1..=3 {
        cluster.broker_down(broker).unwrap();
    }
    let batch = events(50, 5);
    let started = Instant::now();
    let error = sink.deliver(&batch).await.expect_err("brokers are down");
    let waited = started.elapsed();
    eprintln!("brokers down: {error} after {waited:?}");
    assert!(
        matches!(error, SinkError::Transient { .. }),
        "brokers down must be transient: {error:?}"
    );
    assert!(waited < Duration::from_secs(15), "hung for {waited:?}");

    for broker in 1..=3 {
        cluster.broker_up(broker).unwrap();
    }
    // What the dispatcher does: deliver the same batch again, with a pause,
    // until librdkafka has reconnected (its reconnect backoff grows while
    // the brokers are down, so this can take a few attempts).
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut attempts = 0;
    loop {
        attempts += 1;
        match sink.deliver(&batch).await {
            Ok(()) => break,
            Err(e) if Instant::now() < deadline => {
                assert!(
                    matches!(e, SinkError::Transient { .. } | SinkError::Partial { .. }),
                    "{e:?}"
                );
                eprintln!("retry {attempts}: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("still failing 60 s after the brokers came back: {e:?}"),
        }
    }
    let consumed = tokio::task::spawn_blocking(move || {
        consume(&bootstrap, "s3-events", 51, Duration::from_secs(30))
    })
    .await
    .unwrap();
    let ids: HashSet<&str> = consumed
        .iter()
        .filter_map(|m| m.value["id"].as_str().map(event_id))
        .collect();
    for event in &batch {
        assert!(ids.contains(event.id.as_str()), "lost {}", event.id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_request_errors_are_retried_inside_the_timeout_or_reported_transient() {
    let cluster = mock_cluster();
    cluster.create_topic("s3-events", 1, 3).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let sink = KafkaSink::builder(&bootstrap)
        .topic("s3-events")
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    sink.deliver(&events(1, 1)).await.expect("warm-up");
    // Far more transient Produce failures than 2 s of librdkafka retries use.
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS; 500],
    );
    let batch = events(20, 4);
    let error = sink
        .deliver(&batch)
        .await
        .expect_err("produce keeps failing");
    assert!(matches!(error, SinkError::Transient { .. }), "{error:?}");
    cluster.clear_request_errors(RDKafkaApiKey::Produce);
    sink.deliver(&batch)
        .await
        .expect("delivered after the errors stop");
    let consumed = tokio::task::spawn_blocking(move || {
        consume(&bootstrap, "s3-events", 21, Duration::from_secs(30))
    })
    .await
    .unwrap();
    let ids: HashSet<&str> = consumed
        .iter()
        .filter_map(|m| m.value["id"].as_str().map(event_id))
        .collect();
    assert!(batch.iter().all(|e| ids.contains(e.id.as_str())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn some_events_failing_is_a_partial_failure_naming_them() {
    let cluster = mock_cluster();
    cluster.create_topic("ok", 1, 3).unwrap();
    cluster.create_topic("forbidden", 1, 3).unwrap();
    cluster
        .topic_error(
            "forbidden",
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
        )
        .unwrap();
    let sink = KafkaSink::builder(&cluster.bootstrap_servers())
        .topic_for_rule("good", "ok")
        .topic_for_rule("denied", "forbidden")
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut batch = events(6, 6);
    for (i, event) in batch.iter_mut().enumerate() {
        event.matched_rule = Some(
            match i {
                1 | 4 => "denied",
                5 => "unrouted",
                _ => "good",
            }
            .into(),
        );
    }
    match sink.deliver(&batch).await {
        Err(SinkError::Partial { failed }) => {
            let indices: Vec<usize> = failed.iter().map(|(i, _)| *i).collect();
            assert_eq!(indices, [1, 4, 5], "{failed:?}");
            for (i, error) in &failed {
                assert!(
                    matches!(error, SinkError::Permanent { .. }),
                    "{i}: {error:?}"
                );
            }
            assert!(failed[2].1.to_string().contains("no Kafka topic"));
            eprintln!("partial: {failed:?}");
        }
        other => panic!("expected a partial failure, got {other:?}"),
    }
}

/// The same round trip against a real broker, opt-in: `KAFKA_BROKERS` (see
/// README, "Kafka sink against a real broker").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_broker_round_trip_when_kafka_brokers_is_set() {
    let Ok(brokers) = std::env::var("KAFKA_BROKERS") else {
        let _ = writeln!(
            std::io::stderr(),
            "\n!!!!!!!! skipped: KAFKA_BROKERS not set (opt-in real broker); \
             real_broker_round_trip_when_kafka_brokers_is_set did NOT run !!!!!!!!"
        );
        return;
    };
    let topic = format!("s3tap-test-{}", uuid_like());
    create_topic_by_producing(&brokers, &topic).await;
    produce_and_consume(&brokers, &topic).await;
}

/// A unique suffix without another dependency.
fn uuid_like() -> String {
    s3tap::notify::EventId::new().to_string()
}

/// Real brokers create topics on first use (auto-creation); the first
/// metadata request triggers it.
async fn create_topic_by_producing(brokers: &str, topic: &str) {
    let brokers = brokers.to_owned();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("allow.auto.create.topics", "true")
            .create()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = consumer
                .fetch_metadata(Some(&topic), Duration::from_secs(5))
                .map(|m| !m.topics()[0].partitions().is_empty())
                .unwrap_or(false);
            if ok || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    })
    .await
    .unwrap();
}

/// Through the Dispatcher: the cluster is down when the events arrive, the
/// dispatcher spools and retries, the cluster comes back, every event is
/// delivered and read back once or more, none lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatcher_delivers_everything_after_a_kafka_outage() {
    use s3tap::notify::{Dispatcher, FsyncPolicy, RetryPolicy};
    use std::sync::Arc;

    let cluster = mock_cluster();
    cluster.create_topic("s3-events", 3, 3).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let sink = KafkaSink::builder(&bootstrap)
        .topic("s3-events")
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    // Warm-up: with a 1 s message timeout the first delivery can expire
    // while the fresh mock cluster is still electing leaders on a busy
    // machine; wait until one goes through (transient failures only).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match sink.deliver(&events(1, 1)).await {
            Ok(()) => break,
            Err(SinkError::Transient { .. }) if Instant::now() < deadline => {}
            Err(e) => panic!("warm-up: {e:?}"),
        }
    }
    for broker in 1..=3 {
        cluster.broker_down(broker).unwrap();
    }

    let dir = tempfile::tempdir().unwrap();
    let (dispatcher, task) = Dispatcher::builder()
        .sink("kafka", Arc::new(sink))
        .batch(100, Duration::from_millis(5))
        .retry(RetryPolicy {
            initial: Duration::from_millis(50),
            max: Duration::from_millis(500),
            multiplier: 2.0,
            jitter: true,
            max_attempts: None,
            max_age: None,
        })
        .spool(dir.path().join("spool.redb"), FsyncPolicy::default())
        .build()
        .await
        .unwrap();
    let batch = events(300, 30);
    for event in &batch {
        dispatcher.emit("kafka", event.clone()).unwrap();
    }
    // Let the dispatcher fail against the dead cluster for a while.
    let deadline = Instant::now() + Duration::from_secs(30);
    while dispatcher.stats().sinks[0].retried == 0 {
        assert!(Instant::now() < deadline, "no transient failure seen");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let during = dispatcher.stats();
    assert_eq!(during.sinks[0].delivered, 0, "{during:?}");
    assert_eq!(during.sinks[0].failed_permanent, 0, "{during:?}");
    for broker in 1..=3 {
        cluster.broker_up(broker).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while dispatcher.stats().sinks[0].delivered < 300 {
        assert!(
            Instant::now() < deadline,
            "not all delivered: {:?}",
            dispatcher.stats()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stats = dispatcher.shutdown(Duration::from_secs(5)).await;
    task.await.unwrap();
    assert_eq!(stats.sinks[0].delivered, 300, "{stats:?}");
    assert_eq!(stats.sinks[0].dead_lettered, 0, "{stats:?}");
    eprintln!("kafka outage through the dispatcher: {stats:?}");

    let consumed = tokio::task::spawn_blocking(move || {
        consume(&bootstrap, "s3-events", 301, Duration::from_secs(30))
    })
    .await
    .unwrap();
    let ids: HashSet<&str> = consumed
        .iter()
        .filter_map(|m| m.value["id"].as_str().map(event_id))
        .collect();
    for event in &batch {
        assert!(ids.contains(event.id.as_str()), "lost {}", event.id);
    }
}
