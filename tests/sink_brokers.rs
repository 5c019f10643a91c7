//! The broker sinks against the real brokers on loopback (NATS JetStream,
//! Redis, RabbitMQ, Mosquitto): events arrive with their ids and bodies, and
//! a broker stopped in the middle of a run and started again loses nothing
//! the sink said was delivered. The sink is never rebuilt: it reconnects.
//!
//! Each test holds its broker's lease (one test per broker at a time) and
//! starts the broker again in a drop guard, even when it fails.
#![cfg(any(
    feature = "sink-nats",
    feature = "sink-redis",
    feature = "sink-rabbitmq",
    feature = "sink-mqtt"
))]

mod broker_support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use s3tap::notify::{Event, S3Operation};
use s3tap::sink::{Sink, SinkError};

/// The sinks' timeout in these tests: a delivery while the broker is down
/// must fail within it (plus a little slack), never hang.
const TIMEOUT: Duration = Duration::from_secs(2);

fn events(tag: &str, n: usize) -> Vec<Event> {
    (0..n)
        .map(|i| {
            let mut event = Event::new(
                S3Operation::PutObject,
                "PUT",
                200,
                format!("http://127.0.0.1:9000/photos/{tag}/{i}.jpg"),
            );
            event.bucket = Some("photos".into());
            event.key = Some(format!("{tag}/{i}.jpg"));
            event.size = Some(1000 + i as u64);
            event.etag = Some(format!("etag{i}"));
            event
        })
        .collect()
}

fn ids(events: &[Event]) -> BTreeSet<String> {
    events.iter().map(|e| e.id.to_string()).collect()
}

/// Checks one received CloudEvents body against the events sent; returns
/// its id.
fn check_body(body: &[u8], sent: &BTreeMap<String, Event>) -> String {
    let json: serde_json::Value = serde_json::from_slice(body).expect("a JSON body");
    assert_eq!(json["specversion"], "1.0", "{json}");
    // CloudEvents' id (the AWS S3 adapter's): request id, `.`, event id.
    let ce_id = json["id"].as_str().expect("an id");
    let id = ce_id.rsplit('.').next().unwrap().to_owned();
    let event = sent
        .get(&id)
        .unwrap_or_else(|| panic!("received an id never sent: {ce_id}"));
    assert_eq!(json["type"], "com.amazonaws.s3.ObjectCreated:Put");
    assert_eq!(json["data"]["s3"]["object"]["key"], json["subject"]);
    assert_eq!(json["data"]["s3"]["object"]["size"], event.size.unwrap());
    assert_eq!(json["data"]["s3"]["bucket"]["name"], "photos");
    id
}

fn by_id(batches: &[&[Event]]) -> BTreeMap<String, Event> {
    batches
        .iter()
        .flat_map(|b| b.iter())
        .map(|e| (e.id.to_string(), e.clone()))
        .collect()
}

/// Delivers while the broker is down: a transient error, within the timeout.
async fn deliver_during_outage(sink: &dyn Sink, batch: &[Event]) {
    let started = Instant::now();
    let result = sink.deliver(batch).await;
    let took = started.elapsed();
    assert!(
        matches!(result, Err(SinkError::Transient { .. })),
        "{}: expected a transient error while the broker is down, got {result:?}",
        sink.name()
    );
    // Bounded by the sink's timeout, not a hang: generous on a loaded
    // machine, this is no speed goal.
    assert!(
        took < TIMEOUT + Duration::from_secs(5),
        "{}: the failed delivery took {took:?}",
        sink.name()
    );
}

/// Retries a delivery after the broker came back, as the dispatcher would,
/// until it succeeds (the sink reconnects by itself).
async fn retry_until_delivered(sink: &dyn Sink, batch: &[Event]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut attempts = 0;
    loop {
        attempts += 1;
        match sink.deliver(batch).await {
            Ok(()) => return attempts,
            Err(e) if Instant::now() < deadline => {
                assert!(
                    !matches!(e, SinkError::Permanent { .. } | SinkError::Disabled { .. }),
                    "{}: {e:?}",
                    sink.name()
                );
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => panic!("{}: still failing after the restart: {e:?}", sink.name()),
        }
    }
}

#[cfg(feature = "sink-nats")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_jetstream_delivers_and_survives_a_restart() {
    use async_nats::jetstream::stream::{Config, StorageType};
    use s3tap::sink::NatsSink;

    let Some(lease) = broker_support::NATS.lease() else {
        return;
    };
    let url = format!("nats://{}", lease.broker.addr());
    let name = broker_support::unique("S3TAP_TEST_");
    let subject = format!("s3tap.test.{name}");

    let client = async_nats::connect(&url).await.expect("connect");
    let jetstream = async_nats::jetstream::new(client.clone());
    // File storage: the stream and its messages survive the restart, as in
    // production. Duplicate window: the server drops a retried message.
    jetstream
        .get_or_create_stream(Config {
            name: name.clone(),
            subjects: vec![subject.clone()],
            storage: StorageType::File,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await
        .expect("create the stream");

    let sink = NatsSink::builder(&url)
        .subject(&subject)
        .timeout(TIMEOUT)
        .connect()
        .await
        .expect("the sink connects");

    let before = events("before", 5);
    let during = events("during", 5);
    let after = events("after", 5);
    sink.deliver(&before).await.expect("delivered");
    // Delivering the same batch again stores nothing new (Nats-Msg-Id).
    sink.deliver(&before).await.expect("delivered again");

    let mut outage = lease.stop();
    deliver_during_outage(&sink, &during).await;
    outage.restart();
    let attempts = retry_until_delivered(&sink, &during).await;
    eprintln!("nats: delivered after the restart in {attempts} attempt(s)");
    sink.deliver(&after)
        .await
        .expect("delivered after the restart");
    drop(outage);

    // Read the whole stream back: every id exactly once — the stream kept
    // what it stored before the restart (file storage), and the publishes
    // the client flushed on reconnect plus the retries were de-duplicated.
    let sent = by_id(&[&before, &during, &after]);
    let client = async_nats::connect(&url).await.expect("reconnect");
    let jetstream = async_nats::jetstream::new(client);
    let mut stream = jetstream.get_stream(&name).await.expect("the stream");
    let info = stream.info().await.expect("stream info").state.clone();
    let mut received = Vec::new();
    for seq in info.first_sequence..=info.last_sequence {
        let message = stream.get_raw_message(seq).await.expect("a message");
        let id = check_body(&message.payload, &sent);
        let header = message
            .headers
            .get("Nats-Msg-Id")
            .expect("Nats-Msg-Id")
            .to_string();
        assert_eq!(header, id);
        received.push(id);
    }
    let unique: BTreeSet<String> = received.iter().cloned().collect();
    assert_eq!(unique, sent.keys().cloned().collect::<BTreeSet<_>>());
    assert_eq!(received.len(), sent.len(), "duplicates: {received:?}");
    jetstream.delete_stream(&name).await.expect("clean up");
}

#[cfg(feature = "sink-redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stream_delivers_and_survives_a_restart() {
    use redis::AsyncCommands;
    use s3tap::sink::RedisSink;

    let Some(lease) = broker_support::REDIS.lease() else {
        return;
    };
    let url = format!("redis://{}/", lease.broker.addr());
    let key = broker_support::unique("s3tap:test:");

    /// Every entry of the stream: (id field, event field).
    async fn read(url: &str, key: &str) -> Vec<(String, Vec<u8>, String)> {
        let client = redis::Client::open(url).unwrap();
        let mut connection = client.get_multiplexed_async_connection().await.unwrap();
        let entries: redis::streams::StreamRangeReply =
            connection.xrange_all(key).await.expect("XRANGE");
        entries
            .ids
            .into_iter()
            .map(|entry| {
                let field = |name: &str| -> Vec<u8> {
                    redis::from_redis_value(entry.map.get(name).expect(name).clone()).unwrap()
                };
                (
                    String::from_utf8(field("id")).unwrap(),
                    field("event"),
                    String::from_utf8(field("content_type")).unwrap(),
                )
            })
            .collect()
    }

    let sink = RedisSink::builder(&url)
        .stream(&key)
        .max_len(1000)
        .timeout(TIMEOUT)
        .connect()
        .await
        .expect("the sink connects");

    let before = events("before", 5);
    let during = events("during", 5);
    let after = events("after", 5);
    sink.deliver(&before).await.expect("delivered");

    // Redis keeps nothing on disk here: what was stored before the restart
    // is read (and checked) before the broker goes away.
    let sent = by_id(&[&before]);
    let entries = read(&url, &key).await;
    let got: Vec<String> = entries
        .iter()
        .map(|(id, body, content_type)| {
            assert_eq!(content_type, "application/cloudevents+json");
            let body_id = check_body(body, &sent);
            assert_eq!(&body_id, id, "the id field is the body's id");
            body_id
        })
        .collect();
    assert_eq!(
        got,
        before.iter().map(|e| e.id.to_string()).collect::<Vec<_>>()
    );

    let mut outage = lease.stop();
    deliver_during_outage(&sink, &during).await;
    outage.restart();
    let attempts = retry_until_delivered(&sink, &during).await;
    eprintln!("redis: delivered after the restart in {attempts} attempt(s)");
    sink.deliver(&after)
        .await
        .expect("delivered after the restart");
    drop(outage);

    // After the restart the stream holds exactly what was delivered since:
    // the batch that failed during the outage (retried) and the next one.
    let sent = by_id(&[&during, &after]);
    let entries = read(&url, &key).await;
    let got: Vec<String> = entries
        .iter()
        .map(|(id, body, _)| {
            assert_eq!(&check_body(body, &sent), id);
            id.clone()
        })
        .collect();
    let unique: BTreeSet<String> = got.iter().cloned().collect();
    assert_eq!(unique, ids(&during).union(&ids(&after)).cloned().collect());
    // Redis does not de-duplicate; a retry can only duplicate a batch whose
    // EXEC reply was lost, which did not happen here (the server was down).
    assert_eq!(got.len(), unique.len(), "duplicates: {got:?}");

    let client = redis::Client::open(url.as_str()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = connection.del(&key).await.expect("clean up");
}

#[cfg(feature = "sink-rabbitmq")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_delivers_and_survives_a_restart() {
    use lapin::options::{
        BasicGetOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
        QueueDeclareOptions, QueueDeleteOptions,
    };
    use lapin::types::{FieldTable, ShortString};
    use lapin::{Connection, ConnectionProperties, ExchangeKind};
    use s3tap::sink::RabbitMqSink;

    let Some(lease) = broker_support::RABBITMQ.lease() else {
        return;
    };
    let url = format!("amqp://guest:guest@{}/%2f", lease.broker.addr());
    let exchange = broker_support::unique("s3tap.test.");
    let queue = exchange.clone();
    let routing_key = "s3.events";

    async fn channel(url: &str) -> (Connection, lapin::Channel) {
        let connection = Connection::connect(url, ConnectionProperties::default())
            .await
            .expect("connect");
        let channel = connection.create_channel().await.expect("channel");
        (connection, channel)
    }
    // Durable exchange and queue: they and the persistent messages in the
    // queue outlive the broker restart.
    let (connection, ch) = channel(&url).await;
    ch.exchange_declare(
        ShortString::from(exchange.as_str()),
        ExchangeKind::Topic,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("exchange");
    ch.queue_declare(
        ShortString::from(queue.as_str()),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("queue");
    ch.queue_bind(
        ShortString::from(queue.as_str()),
        ShortString::from(exchange.as_str()),
        ShortString::from(routing_key),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("bind");
    drop(ch);
    drop(connection);

    let sink = RabbitMqSink::builder(&url)
        .exchange(&exchange)
        .routing_key(routing_key)
        .timeout(TIMEOUT)
        .connect()
        .await
        .expect("the sink connects");

    let before = events("before", 5);
    let during = events("during", 5);
    let after = events("after", 5);
    sink.deliver(&before).await.expect("delivered");

    let mut outage = lease.stop();
    deliver_during_outage(&sink, &during).await;
    outage.restart();
    let attempts = retry_until_delivered(&sink, &during).await;
    eprintln!("rabbitmq: delivered after the restart in {attempts} attempt(s)");
    sink.deliver(&after)
        .await
        .expect("delivered after the restart");
    drop(outage);

    // Everything confirmed is in the queue, the batch confirmed before the
    // restart included (persistent messages in a durable queue).
    let sent = by_id(&[&before, &during, &after]);
    let (connection, ch) = channel(&url).await;
    let mut received = Vec::new();
    while let Some(message) = ch
        .basic_get(
            ShortString::from(queue.as_str()),
            BasicGetOptions { no_ack: true },
        )
        .await
        .expect("basic.get")
    {
        let properties = &message.delivery.properties;
        let id = check_body(&message.delivery.data, &sent);
        assert_eq!(
            properties.message_id().as_ref().map(|s| s.as_str()),
            Some(id.as_str())
        );
        assert_eq!(*properties.delivery_mode(), Some(2));
        assert_eq!(
            properties.content_type().as_ref().map(|s| s.as_str()),
            Some("application/cloudevents+json")
        );
        received.push(id);
    }
    let unique: BTreeSet<String> = received.iter().cloned().collect();
    assert_eq!(unique, sent.keys().cloned().collect::<BTreeSet<_>>());
    if received.len() != unique.len() {
        // At least once: RabbitMQ does not de-duplicate; consumers do, by
        // message_id.
        eprintln!("rabbitmq: {} duplicate(s)", received.len() - unique.len());
    }
    ch.queue_delete(
        ShortString::from(queue.as_str()),
        QueueDeleteOptions::default(),
    )
    .await
    .expect("clean up");
    ch.exchange_delete(
        ShortString::from(exchange.as_str()),
        ExchangeDeleteOptions::default(),
    )
    .await
    .expect("clean up");
    drop(connection);
}

#[cfg(feature = "sink-mqtt")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_delivers_and_survives_a_restart() {
    use rumqttc::{AsyncClient, Event as MqttEvent, MqttOptions, Packet, QoS};
    use s3tap::sink::MqttSink;
    use std::sync::{Arc, Mutex};
    use tokio::sync::watch;

    let Some(lease) = broker_support::MOSQUITTO.lease() else {
        return;
    };
    let topic = broker_support::unique("s3tap/test/");

    // A subscriber that reconnects by itself and subscribes again whenever
    // the broker did not keep its session; `ready` says it is subscribed.
    let received = Arc::new(Mutex::new(Vec::<Vec<u8>>::new()));
    let (ready_tx, mut ready) = watch::channel(false);
    let mut options =
        MqttOptions::new(broker_support::unique("s3tap-test-sub-"), "127.0.0.1", 1883);
    options
        .set_keep_alive(Duration::from_secs(5))
        .set_clean_session(false)
        .set_max_packet_size(1 << 20, 1 << 20);
    let (subscriber, mut events_loop) = AsyncClient::new(options, 100);
    let subscriber_task = {
        let received = received.clone();
        let topic = topic.clone();
        tokio::spawn(async move {
            loop {
                match events_loop.poll().await {
                    Ok(MqttEvent::Incoming(Packet::ConnAck(ack))) => {
                        if ack.session_present {
                            ready_tx.send_replace(true);
                        } else {
                            subscriber
                                .subscribe(topic.as_str(), QoS::AtLeastOnce)
                                .await
                                .unwrap();
                        }
                    }
                    Ok(MqttEvent::Incoming(Packet::SubAck(_))) => {
                        ready_tx.send_replace(true);
                    }
                    Ok(MqttEvent::Incoming(Packet::Publish(publish))) => {
                        received.lock().unwrap().push(publish.payload.to_vec());
                    }
                    Ok(_) => {}
                    Err(_) => {
                        ready_tx.send_replace(false);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        })
    };
    let wait_ready = |ready: &mut watch::Receiver<bool>| {
        let mut ready = ready.clone();
        async move {
            tokio::time::timeout(Duration::from_secs(30), ready.wait_for(|r| *r))
                .await
                .expect("the subscriber is subscribed")
                .unwrap();
        }
    };
    wait_ready(&mut ready).await;

    let sink = MqttSink::builder("127.0.0.1", lease.broker.port)
        .topic(&topic)
        .timeout(TIMEOUT)
        .connect()
        .await
        .expect("the sink connects");

    let before = events("before", 5);
    let during = events("during", 5);
    let after = events("after", 5);
    sink.deliver(&before).await.expect("delivered");

    let received_ids = |sent: &BTreeMap<String, Event>| -> Vec<String> {
        received
            .lock()
            .unwrap()
            .iter()
            .map(|body| check_body(body, sent))
            .collect()
    };
    let sent = by_id(&[&before, &during, &after]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ids(&before).is_subset(&received_ids(&sent).into_iter().collect()) {
        assert!(
            Instant::now() < deadline,
            "the subscriber got {:?}",
            received_ids(&sent)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut outage = lease.stop();
    deliver_during_outage(&sink, &during).await;
    assert!(!sink.is_connected());
    outage.restart();
    // Mosquitto holds no messages for a topic nobody subscribes to: wait
    // until the subscriber is back before publishing again.
    tokio::time::sleep(Duration::from_millis(200)).await;
    wait_ready(&mut ready).await;
    let attempts = retry_until_delivered(&sink, &during).await;
    eprintln!("mqtt: delivered after the restart in {attempts} attempt(s)");
    sink.deliver(&after)
        .await
        .expect("delivered after the restart");
    drop(outage);

    // Every event whose delivery succeeded reached the subscriber.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got: BTreeSet<String> = received_ids(&sent).into_iter().collect();
        if got == sent.keys().cloned().collect::<BTreeSet<_>>() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "missing: {:?}",
            sent.keys()
                .filter(|id| !got.contains(*id))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    subscriber_task.abort();
}

/// The whole path: events emitted through the [`Dispatcher`] (spool, batches,
/// retries) while NATS is stopped, then started again. The dispatcher keeps
/// retrying the same sink; every id ends up in the stream, each once (the
/// retries of batches whose acks were lost are de-duplicated by
/// `Nats-Msg-Id`).
///
/// [`Dispatcher`]: s3tap::notify::Dispatcher
#[cfg(feature = "sink-nats")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatcher_delivers_every_event_to_nats_across_a_restart() {
    use async_nats::jetstream::stream::{Config, StorageType};
    use s3tap::notify::{Dispatcher, FsyncPolicy, RetryPolicy};
    use s3tap::sink::NatsSink;
    use std::sync::Arc;

    let Some(lease) = broker_support::NATS.lease() else {
        return;
    };
    let url = format!("nats://{}", lease.broker.addr());
    let name = broker_support::unique("S3TAP_DISPATCH_");
    let subject = format!("s3tap.dispatch.{name}");
    let client = async_nats::connect(&url).await.expect("connect");
    let jetstream = async_nats::jetstream::new(client);
    jetstream
        .get_or_create_stream(Config {
            name: name.clone(),
            subjects: vec![subject.clone()],
            storage: StorageType::File,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await
        .expect("create the stream");

    let sink = NatsSink::builder(&url)
        .subject(&subject)
        .timeout(Duration::from_secs(1))
        .connect()
        .await
        .expect("the sink connects");
    let dir = tempfile::tempdir().unwrap();
    let (dispatcher, task) = Dispatcher::builder()
        .sink("nats", Arc::new(sink))
        .batch(20, Duration::from_millis(10))
        .retry(RetryPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(500),
            ..RetryPolicy::default()
        })
        .spool(dir.path().join("spool.redb"), FsyncPolicy::default())
        .build()
        .await
        .expect("the dispatcher starts");

    async fn delivered_reaches(dispatcher: &Dispatcher, n: u64, within: Duration) {
        let deadline = Instant::now() + within;
        while dispatcher.stats().delivered() < n {
            assert!(
                Instant::now() < deadline,
                "delivered {} of {n}: {:?}",
                dispatcher.stats().delivered(),
                dispatcher.stats()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    let before = events("before", 40);
    let during = events("during", 60);
    let after = events("after", 20);
    for event in &before {
        dispatcher.emit("nats", event.clone()).expect("emit");
    }
    delivered_reaches(&dispatcher, 40, Duration::from_secs(20)).await;

    let mut outage = lease.stop();
    for (i, event) in during.iter().enumerate() {
        // emit() never waits, broker or not: a generous "did not block"
        // bound, not a speed goal (benches/dispatcher.rs measures emit).
        let started = Instant::now();
        dispatcher.emit("nats", event.clone()).expect("emit");
        assert!(started.elapsed() < Duration::from_secs(2));
        if i % 10 == 9 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // Wait until the dispatcher has met the outage, then check that nothing
    // was delivered meanwhile.
    let deadline = Instant::now() + Duration::from_secs(20);
    while dispatcher.stats().sinks[0].retried == 0 {
        assert!(Instant::now() < deadline, "{:?}", dispatcher.stats());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stats = dispatcher.stats();
    assert_eq!(stats.delivered(), 40, "{stats:?}");
    assert!(
        stats.sinks[0].retried > 0,
        "the outage was noticed: {stats:?}"
    );
    assert_eq!(stats.dead_lettered(), 0, "{stats:?}");
    outage.restart();
    drop(outage);

    for event in &after {
        dispatcher.emit("nats", event.clone()).expect("emit");
    }
    delivered_reaches(&dispatcher, 120, Duration::from_secs(60)).await;
    let stats = dispatcher.shutdown(Duration::from_secs(5)).await;
    task.await.expect("the dispatcher task ends cleanly");
    assert_eq!(stats.dead_lettered(), 0, "{stats:?}");
    eprintln!(
        "dispatcher→nats: {} delivered, {} retried",
        stats.delivered(),
        stats.sinks[0].retried
    );

    let sent = by_id(&[&before, &during, &after]);
    let client = async_nats::connect(&url).await.expect("reconnect");
    let jetstream = async_nats::jetstream::new(client);
    let mut stream = jetstream.get_stream(&name).await.expect("the stream");
    let state = stream.info().await.expect("info").state.clone();
    let mut received = Vec::new();
    for seq in state.first_sequence..=state.last_sequence {
        let message = stream.get_raw_message(seq).await.expect("a message");
        received.push(check_body(&message.payload, &sent));
    }
    let unique: BTreeSet<String> = received.iter().cloned().collect();
    assert_eq!(unique, sent.keys().cloned().collect::<BTreeSet<_>>());
    assert_eq!(received.len(), sent.len(), "the stream holds duplicates");
    jetstream.delete_stream(&name).await.expect("clean up");
}

/// The one construction story: `builder(..)` then `connect().await`, with
/// `SinkBuildError` saying a refused setting from a failed connection, and
/// the shared setters (`name`, `max_batch`) seen through the `Sink` trait.
/// No broker is stopped here; Redis is only written to.
#[tokio::test]
async fn builders_connect_with_one_error_story() {
    use s3tap::sink::SinkBuildError;

    #[cfg(feature = "sink-mqtt")]
    {
        use s3tap::notify::format::{BindingProtocol, CloudEventsMode, Encoder, Format};
        use s3tap::sink::MqttSink;
        // Refused before any connection is tried: port 1 is never dialled.
        let binary = Encoder::new(
            Format::CloudEvents {
                mode: CloudEventsMode::Binary(BindingProtocol::Http),
            },
            Default::default(),
        );
        match MqttSink::builder("127.0.0.1", 1)
            .format(binary)
            .connect()
            .await
        {
            Err(SinkBuildError::InvalidSetting { key, .. }) => assert_eq!(key, "format"),
            other => panic!("{other:?}"),
        }
        match MqttSink::builder("127.0.0.1", 1)
            .topic("s3/#")
            .connect()
            .await
        {
            Err(SinkBuildError::InvalidSetting { key, .. }) => assert_eq!(key, "topic"),
            other => panic!("{other:?}"),
        }
    }

    #[cfg(feature = "sink-nats")]
    {
        use s3tap::sink::NatsSink;
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("nats://{}", closed.local_addr().unwrap());
        drop(closed);
        let error = NatsSink::builder(url)
            .timeout(Duration::from_millis(500))
            .connect()
            .await
            .unwrap_err();
        assert!(
            matches!(error, SinkBuildError::Connect(SinkError::Transient { .. })),
            "{error:?}"
        );
        assert!(error.is_transient());
    }

    #[cfg(feature = "sink-redis")]
    {
        use redis::AsyncCommands;
        use s3tap::sink::RedisSink;
        assert!(matches!(
            RedisSink::builder("not a url").connect().await,
            Err(SinkBuildError::InvalidUrl(_))
        ));
        if let Some(lease) = broker_support::REDIS.lease() {
            let url = format!("redis://{}/", lease.broker.addr());
            let key = broker_support::unique("s3tap:test:builder:");
            let sink = RedisSink::builder(url.as_str())
                .stream(&key)
                .name("orders")
                .max_batch(7)
                .timeout(TIMEOUT)
                .connect()
                .await
                .expect("the sink connects");
            assert_eq!((sink.name(), sink.max_batch()), ("orders", 7));
            let batch = events("builder", 3);
            sink.deliver(&batch).await.expect("delivered");
            let client = redis::Client::open(url.as_str()).unwrap();
            let mut connection = client.get_multiplexed_async_connection().await.unwrap();
            let length: usize = connection.xlen(&key).await.unwrap();
            assert_eq!(length, batch.len());
            let _: () = connection.del(&key).await.unwrap();
        }
    }
}
