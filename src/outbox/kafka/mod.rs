//! [`KafkaOutbox`]: the fleet's outbox on Kafka (feature `outbox-kafka`).
//! The topics it creates when missing, the publish a commit waits for,
//! and [`KafkaOutboxSink`], the dispatcher's write-behind route to the same
//! topic. The delivery role is [`KafkaDeliverer`], the dead letters
//! [`KafkaDeadLetters`], replay [`replay`].
//!
//! ```text
//!  proxy 1 ─┐                         ┌─► s3tap deliver ─► sinks
//!  proxy 2 ─┼─► events topic ─────────┤   (consumer group s3tap-deliver-<sink>,
//!  proxy N ─┘   (P partitions,        └─► s3tap deliver    partitions shared)
//!     │          R replicas)                    │ refused for good
//!     └─ local spool: write-behind              └─► dead-letter topic
//! ```
//!
//! - **Publishing**: one record per routed copy of an event (event, sink)
//!   on one topic for every sink. The record's key is `bucket/key` (as the
//!   Kafka sink keys its records), so one object's events land in one
//!   partition, in the order they were produced. Headers: `S3tap-Sink`,
//!   `S3tap-Rule`, `S3tap-Msg-Id` (`<event id>:<sink>:<rule>`); the value
//!   is the event as JSON. The producer is idempotent with `acks=all`, and
//!   a publish resolves once every delivery report came back: the commit
//!   before the answer waits for the brokers. `linger.ms = 1`: records of
//!   concurrent requests share produce requests (a group commit of about a
//!   millisecond). Kafka has no server-side de-duplication by id: a copy
//!   published again (a commit that timed out and then went through as
//!   well as through the spool) is a second record with the same event
//!   id, which receivers de-duplicate on.
//! - **Delivering**: per sink a consumer group `s3tap-deliver-<sink>` on the
//!   events topic; any number of deliverer processes share its partitions.
//!   Records for other sinks are skipped. Offsets are committed only once
//!   the sink acknowledged the record or it went to the dead-letter topic,
//!   so a deliverer killed mid-batch loses nothing: the group hands its
//!   partitions to another member (after the session timeout) from the
//!   last committed offset.
//! - **Dead letters** on their own topic, with the reason, attempts and
//!   time as headers. Kafka cannot delete one record: a redriven or purged
//!   letter is recorded on a compacted *handled* topic (key: partition and
//!   offset of the letter), which listing skips.
//! - **Replay**: `offsets_for_times` finds each partition's first record at
//!   or after `--since`.

mod dead_letters;
mod deliver;
mod replay;

pub use dead_letters::KafkaDeadLetters;
pub use deliver::{KafkaDeliverer, KafkaDelivererBuilder};
pub use replay::replay;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::message::{is_subject_token, OutboxMessage, MSG_ID_HEADER};
use super::OutboxError;
use crate::notify::{Event, Outbox};
use crate::sink::kafka::{build_error, classify, enqueue, producer_defaults, settle_reports};
use crate::sink::{BoxFuture, KafkaSink, Sink, SinkError};

/// The outbox on Kafka. Cheap to clone: clones share the producer. See
/// the [module docs](self).
///
/// ```no_run
/// use std::time::Duration;
/// use s3tap::outbox::KafkaOutbox;
///
/// # async fn run() -> Result<(), s3tap::outbox::OutboxError> {
/// let outbox = KafkaOutbox::builder("k1:9092,k2:9092,k3:9092")
///     .replicas(3)
///     .partitions(12)
///     .max_age(Duration::from_secs(7 * 24 * 3600))
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct KafkaOutbox {
    pub(super) shared: Arc<Shared>,
}

pub(super) struct Shared {
    // Replaced when the idempotent producer hits a fatal error (it cannot
    // produce again after one; a new producer gets a new producer id).
    producer: std::sync::RwLock<FutureProducer<Watch>>,
    producer_config: ClientConfig,
    /// The client settings consumers and the admin client start from
    /// (bootstrap servers and the user's settings, no producer ones).
    pub(super) client: BTreeMap<String, String>,
    pub(super) settings: Settings,
    topics_ready: AtomicBool,
    ensure_lock: tokio::sync::Mutex<()>,
    /// The last publish failed and none succeeded since.
    degraded: AtomicBool,
    watch: Arc<WatchState>,
}

impl Shared {
    fn current_producer(&self) -> FutureProducer<Watch> {
        self.producer
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Replaces a producer that reported a fatal error with a new one, as
    /// the Kafka sink does.
    fn renew_producer(&self, failed: &FutureProducer<Watch>) {
        use rdkafka::producer::Producer as _;
        let mut current = self
            .producer
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Another publish may have renewed it already.
        if current.client().native_ptr() != failed.client().native_ptr() {
            return;
        }
        match self
            .producer_config
            .create_with_context(Watch(self.watch.clone()))
        {
            Ok(producer) => {
                tracing::warn!("Kafka outbox producer hit a fatal error; replaced it");
                *current = producer;
            }
            Err(error) => {
                tracing::error!(error = %build_error(error), "Kafka outbox producer hit a fatal error and cannot be replaced");
            }
        }
    }
}

/// What the builder sets; read by the deliverer, dead letters and replay.
#[derive(Clone, Debug)]
pub(super) struct Settings {
    pub(super) topic: String,
    pub(super) dead_topic: String,
    pub(super) partitions: i32,
    pub(super) replicas: i32,
    pub(super) max_age: Duration,
    pub(super) max_bytes: Option<i64>,
    pub(super) timeout: Duration,
}

impl Settings {
    /// The compacted topic recording which dead letters were redriven or
    /// purged.
    pub(super) fn handled_topic(&self) -> String {
        format!("{}-handled", self.dead_topic)
    }
}

/// librdkafka tells its clients "all brokers down" through the error
/// callback only: it is what `/readyz` reads as unreachable.
#[derive(Default)]
struct WatchState {
    all_brokers_down: AtomicBool,
}

#[derive(Clone)]
struct Watch(Arc<WatchState>);

impl ClientContext for Watch {
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.0.all_brokers_down.store(true, Ordering::Relaxed);
            tracing::warn!(%error, reason, "Kafka outbox: no broker reachable");
        } else {
            // One broker's connection coming and going: librdkafka retries,
            // and a publish that fails says so itself.
            tracing::debug!(%error, reason, "Kafka outbox client");
        }
    }
}

impl fmt::Debug for KafkaOutbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaOutbox")
            .field("settings", &self.shared.settings)
            .field("degraded", &self.is_degraded())
            .finish_non_exhaustive()
    }
}

/// Configures a [`KafkaOutbox`]; [`connect`](Self::connect) it.
#[must_use = "a builder does nothing until connected"]
pub struct KafkaOutboxBuilder {
    client: BTreeMap<String, String>,
    settings: Settings,
}

impl fmt::Debug for KafkaOutboxBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Setting values may be passwords: only their names.
        f.debug_struct("KafkaOutboxBuilder")
            .field("client", &self.client.keys().collect::<Vec<_>>())
            .field("settings", &self.settings)
            .finish()
    }
}

impl KafkaOutbox {
    /// Starts building an outbox on the Kafka cluster at
    /// `bootstrap_servers` (`host:port[,host:port...]`).
    ///
    /// Defaults: events on topic `s3tap-events`, dead letters on
    /// `s3tap-dead-letters` (and `s3tap-dead-letters-handled`), 12
    /// partitions and 1 replica for topics it creates, kept 7 days, no size
    /// limit, 5 s for a produce to be acknowledged and for admin requests.
    pub fn builder(bootstrap_servers: impl Into<String>) -> KafkaOutboxBuilder {
        let mut client = BTreeMap::new();
        client.insert("bootstrap.servers".to_owned(), bootstrap_servers.into());
        client.insert("client.id".to_owned(), "s3tap-outbox".to_owned());
        // Topics are created with the outbox's partitions, replicas and
        // retention, not with the broker's defaults by a metadata request.
        client.insert("allow.auto.create.topics".to_owned(), "false".to_owned());
        KafkaOutboxBuilder {
            client,
            settings: Settings {
                topic: "s3tap-events".into(),
                dead_topic: "s3tap-dead-letters".into(),
                partitions: 12,
                replicas: 1,
                max_age: Duration::from_secs(7 * 24 * 3600),
                max_bytes: None,
                timeout: Duration::from_secs(5),
            },
        }
    }

    /// Whether the cluster is reachable as far as the producer knows: no
    /// "all brokers down" since the last publish that went through, and
    /// the last publish did.
    pub fn is_connected(&self) -> bool {
        !self.shared.watch.all_brokers_down.load(Ordering::Relaxed)
            && !self.shared.degraded.load(Ordering::Relaxed)
    }

    /// A route to the outbox for the dispatcher's sink named `sink` (see
    /// [`JetStreamOutbox::sink`](super::JetStreamOutbox::sink) for its
    /// role).
    pub fn sink(&self, sink: &str) -> Result<KafkaOutboxSink, OutboxError> {
        if !is_subject_token(sink) {
            return Err(OutboxError::Config(format!(
                "sink name {sink:?}: use letters, digits, '-' and '_' (it names a consumer group)"
            )));
        }
        Ok(KafkaOutboxSink {
            outbox: self.clone(),
            name: format!("outbox:{sink}"),
            sink: Arc::from(sink),
        })
    }

    /// A client configuration with the outbox's connection settings.
    pub(super) fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        for (key, value) in &self.shared.client {
            config.set(key, value);
        }
        config
    }

    /// Creates the events, dead-letter and handled topics if they are
    /// missing (an existing topic is used as it is: operators may have
    /// tuned it).
    pub async fn ensure_topics(&self) -> Result<(), OutboxError> {
        let shared = &*self.shared;
        if shared.topics_ready.load(Ordering::Acquire) {
            return Ok(());
        }
        let _guard = shared.ensure_lock.lock().await;
        if shared.topics_ready.load(Ordering::Acquire) {
            return Ok(());
        }
        let s = &shared.settings;
        let retention_ms = s.max_age.as_millis().to_string();
        let retention_bytes = s.max_bytes.unwrap_or(-1).to_string();
        let handled = s.handled_topic();
        let topics = [
            (s.topic.as_str(), s.partitions, "delete"),
            (s.dead_topic.as_str(), s.partitions.min(3), "delete"),
            // Compacted: one record per letter handled, kept as long as the
            // letters themselves.
            (handled.as_str(), 1, "compact,delete"),
        ];
        let new_topics: Vec<NewTopic<'_>> = topics
            .iter()
            .map(|(name, partitions, cleanup)| {
                NewTopic::new(name, *partitions, TopicReplication::Fixed(s.replicas))
                    .set("retention.ms", &retention_ms)
                    .set("retention.bytes", &retention_bytes)
                    .set("cleanup.policy", cleanup)
            })
            .collect();
        let admin: AdminClient<DefaultClientContext> = self
            .client_config()
            .create()
            .map_err(|e| OutboxError::Config(build_error(e).to_string()))?;
        let options = AdminOptions::new()
            .operation_timeout(Some(s.timeout))
            .request_timeout(Some(s.timeout));
        let mut failures = Vec::new();
        match admin.create_topics(&new_topics, &options).await {
            Ok(results) => {
                for result in results {
                    match result {
                        Ok(_) => {}
                        Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                        Err((name, code)) => failures.push((name, code.to_string())),
                    }
                }
            }
            Err(error) => {
                for (name, ..) in &topics {
                    failures.push(((*name).to_owned(), error.to_string()));
                }
            }
        }
        // A broker that cannot create topics (librdkafka's mock cluster has
        // no CreateTopics; an ACL may forbid it) may still have them: made
        // by an operator, which is fine.
        if !failures.is_empty() {
            let missing = self.missing_topics(&failures).await?;
            if let Some((name, error)) = missing.into_iter().next() {
                return Err(OutboxError::engine(&format!("topic {name}"), error));
            }
        }
        shared.topics_ready.store(true, Ordering::Release);
        Ok(())
    }

    /// Which of `candidates` (name, why it was not created) do not exist.
    async fn missing_topics(
        &self,
        candidates: &[(String, String)],
    ) -> Result<Vec<(String, String)>, OutboxError> {
        let config = self.client_config();
        let timeout = self.shared.settings.timeout;
        let candidates = candidates.to_vec();
        tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = config
                .create()
                .map_err(|e| OutboxError::Config(build_error(e).to_string()))?;
            let mut missing = Vec::new();
            for (name, why) in candidates {
                let exists = consumer
                    .fetch_metadata(Some(&name), timeout)
                    .ok()
                    .and_then(|m| {
                        m.topics()
                            .first()
                            .map(|t| t.error().is_none() && !t.partitions().is_empty())
                    })
                    .unwrap_or(false);
                if !exists {
                    missing.push((name, why));
                }
            }
            Ok(missing)
        })
        .await
        .map_err(|e| OutboxError::engine("topic check", e))?
    }

    /// The partitions of `topic` (blocking: call from a blocking thread).
    pub(super) fn partitions_of(
        consumer: &BaseConsumer,
        topic: &str,
        timeout: Duration,
    ) -> Result<Vec<i32>, OutboxError> {
        let metadata = consumer
            .fetch_metadata(Some(topic), timeout)
            .map_err(|e| OutboxError::engine(&format!("topic {topic}"), e))?;
        let topic_metadata = metadata
            .topics()
            .first()
            .ok_or_else(|| OutboxError::Engine(format!("topic {topic}: no metadata")))?;
        if let Some(error) = topic_metadata.error() {
            return Err(OutboxError::Engine(format!(
                "topic {topic}: {}",
                RDKafkaErrorCode::from(error)
            )));
        }
        Ok(topic_metadata.partitions().iter().map(|p| p.id()).collect())
    }

    /// Produces `records` and waits for every delivery report; per record,
    /// what went wrong. The reports are awaited on a task of their own, so
    /// that the outbox's health is recorded even when the caller stops
    /// waiting (a commit that timed out).
    pub(super) async fn produce(&self, records: Vec<Prepared>) -> Vec<(usize, SinkError)> {
        if let Err(error) = self.ensure_topics().await {
            // Commits stop waiting for an outbox that cannot even check its
            // topics; the spool's route keeps trying.
            self.shared.degraded.store(true, Ordering::Relaxed);
            let error = SinkError::transient(error.to_string());
            return (0..records.len()).map(|i| (i, error.clone())).collect();
        }
        let shared = self.shared.clone();
        let producer = shared.current_producer();
        let deadline = std::time::Instant::now() + shared.settings.timeout;
        let mut failed = Vec::new();
        let mut pending = Vec::with_capacity(records.len());
        for (index, prepared) in records.iter().enumerate() {
            let mut headers = OwnedHeaders::new_with_capacity(prepared.headers.len());
            for (name, value) in &prepared.headers {
                headers = headers.insert(Header {
                    key: name,
                    value: Some(value.as_bytes()),
                });
            }
            let mut record: FutureRecord<'_, str, [u8]> = FutureRecord::to(&prepared.topic)
                .payload(&prepared.payload[..])
                .headers(headers);
            if let Some(key) = prepared.key.as_deref() {
                record = record.key(key);
            }
            match enqueue(&producer, record, deadline, Duration::from_millis(2)).await {
                Ok(delivery) => pending.push((index, delivery)),
                Err(error) => failed.push((index, classify(&error))),
            }
        }
        let total = records.len();
        let (done, reported) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (indices, reports): (Vec<usize>, Vec<_>) = pending.into_iter().unzip();
            let fatal = settle_reports(indices, join_all(reports).await, &mut failed);
            if fatal {
                shared.renew_producer(&producer);
            }
            shared.degraded.store(!failed.is_empty(), Ordering::Relaxed);
            if failed.len() < total {
                shared
                    .watch
                    .all_brokers_down
                    .store(false, Ordering::Relaxed);
            }
            let _ = done.send(failed);
        });
        reported.await.unwrap_or_else(|_| {
            vec![(
                0,
                SinkError::transient("the Kafka outbox's report task ended"),
            )]
        })
    }

    /// Produces and folds the outcome as a sink's delivery.
    async fn publish_all(&self, records: Vec<Prepared>) -> Result<(), SinkError> {
        let len = records.len();
        let failed = self.produce(records).await;
        crate::sink::outcome::fold(len, failed)
    }

    /// A routed copy as a record of the events topic.
    pub(super) fn prepare(&self, message: &OutboxMessage) -> Prepared {
        let mut headers = message.header_pairs();
        headers.push((MSG_ID_HEADER, message.msg_id()));
        Prepared {
            topic: self.shared.settings.topic.clone(),
            key: KafkaSink::message_key(&message.event),
            headers,
            payload: message.payload(),
        }
    }
}

/// A record ready to produce.
#[derive(Debug)]
pub(super) struct Prepared {
    pub(super) topic: String,
    pub(super) key: Option<String>,
    pub(super) headers: Vec<(&'static str, String)>,
    pub(super) payload: bytes::Bytes,
}

impl KafkaOutboxBuilder {
    /// The events topic (default `s3tap-events`).
    pub fn topic(mut self, name: impl Into<String>) -> Self {
        self.settings.topic = name.into();
        self
    }

    /// The dead-letter topic (default `s3tap-dead-letters`); the handled
    /// letters go to `<name>-handled`.
    pub fn dead_letter_topic(mut self, name: impl Into<String>) -> Self {
        self.settings.dead_topic = name.into();
        self
    }

    /// Partitions of the events topic it creates (default 12): the most
    /// deliverers of one sink that work at once.
    pub fn partitions(mut self, partitions: i32) -> Self {
        self.settings.partitions = partitions;
        self
    }

    /// Replication factor of the topics it creates (default 1; 3 for a
    /// fleet that survives a broker, with `min.insync.replicas = 2` on the
    /// brokers so that `acks=all` means two copies).
    pub fn replicas(mut self, replicas: i32) -> Self {
        self.settings.replicas = replicas;
        self
    }

    /// `retention.ms` of the topics it creates (default 7 days): how far
    /// back a replay reaches.
    pub fn max_age(mut self, age: Duration) -> Self {
        self.settings.max_age = age;
        self
    }

    /// `retention.bytes` (per partition) of the topics it creates.
    pub fn max_bytes(mut self, bytes: i64) -> Self {
        self.settings.max_bytes = Some(bytes);
        self
    }

    /// How long a produce may take to be acknowledged
    /// (`message.timeout.ms`) and admin requests (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.settings.timeout = timeout;
        self
    }

    /// Any librdkafka client setting (`security.protocol`,
    /// `sasl.username`, ...), for the producer, the consumers and the
    /// admin client alike. Values never appear in `Debug` output.
    pub fn config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.client.insert(key.into(), value.into());
        self
    }

    /// Creates the producer and the topics when missing. A cluster that
    /// cannot be reached now is not an error: the topics are created at
    /// the first publish that gets through (until then the local spool
    /// holds the events). Bad settings are.
    pub async fn connect(self) -> Result<KafkaOutbox, OutboxError> {
        let s = &self.settings;
        for (what, name) in [("topic", &s.topic), ("dead-letter topic", &s.dead_topic)] {
            let valid = !name.is_empty()
                && name.len() <= 240
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            if !valid {
                return Err(OutboxError::Config(format!(
                    "{what} {name:?}: Kafka topic names are letters, digits, '.', '_' and '-'"
                )));
            }
        }
        if s.topic == s.dead_topic {
            return Err(OutboxError::Config(
                "the events and the dead letters need different topics".into(),
            ));
        }
        if s.partitions < 1 || s.replicas < 1 {
            return Err(OutboxError::Config(format!(
                "partitions = {} and replicas = {}: both must be at least 1",
                s.partitions, s.replicas
            )));
        }
        let mut producer_config = ClientConfig::new();
        let bootstrap = self.client["bootstrap.servers"].clone();
        for (key, value) in producer_defaults(&bootstrap) {
            producer_config.set(key, value);
        }
        for (key, value) in &self.client {
            producer_config.set(key, value);
        }
        producer_config
            .set(
                "message.timeout.ms",
                s.timeout.as_millis().max(1).to_string(),
            )
            // The group commit: records of concurrent requests wait at most
            // a millisecond to share a produce request.
            .set("linger.ms", "1");
        let watch = Arc::new(WatchState::default());
        let producer: FutureProducer<Watch> = producer_config
            .create_with_context(Watch(watch.clone()))
            .map_err(|e| OutboxError::Config(build_error(e).to_string()))?;
        let outbox = KafkaOutbox {
            shared: Arc::new(Shared {
                producer: std::sync::RwLock::new(producer),
                producer_config,
                client: self.client,
                settings: self.settings,
                topics_ready: AtomicBool::new(false),
                ensure_lock: tokio::sync::Mutex::new(()),
                degraded: AtomicBool::new(false),
                watch,
            }),
        };
        let timeout = outbox.shared.settings.timeout;
        match tokio::time::timeout(timeout * 2, outbox.ensure_topics()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::warn!(%error, "outbox topics not ready yet: events wait in the local spool")
            }
            Err(_) => tracing::warn!(
                "outbox not reachable yet: events wait in the local spool until it is"
            ),
        }
        Ok(outbox)
    }
}

impl Outbox for KafkaOutbox {
    fn publish(&self, routed: &[(Arc<str>, Event)]) -> BoxFuture<'static, Result<(), SinkError>> {
        let prepared: Vec<Prepared> = routed
            .iter()
            .map(|(sink, event)| {
                self.prepare(&OutboxMessage {
                    sink: sink.clone(),
                    event: event.clone(),
                })
            })
            .collect();
        let outbox = self.clone();
        Box::pin(async move {
            match outbox.produce(prepared).await.into_iter().next() {
                None => Ok(()),
                Some((_, error)) => Err(error),
            }
        })
    }

    fn is_degraded(&self) -> bool {
        !self.is_connected()
    }
}

/// The dispatcher's sink for one of the fleet's sinks on a Kafka outbox:
/// it publishes instead of delivering. Made by [`KafkaOutbox::sink`].
pub struct KafkaOutboxSink {
    outbox: KafkaOutbox,
    name: String,
    sink: Arc<str>,
}

impl fmt::Debug for KafkaOutboxSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaOutboxSink")
            .field("sink", &self.sink)
            .finish_non_exhaustive()
    }
}

impl Sink for KafkaOutboxSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn max_batch(&self) -> usize {
        500
    }

    fn deliver<'a>(&'a self, batch: &'a [Event]) -> BoxFuture<'a, Result<(), SinkError>> {
        let prepared = batch
            .iter()
            .map(|event| {
                self.outbox.prepare(&OutboxMessage {
                    sink: self.sink.clone(),
                    event: event.clone(),
                })
            })
            .collect();
        Box::pin(self.outbox.publish_all(prepared))
    }
}

/// Reads `topic` from the given start of each partition (the partition's
/// first record when absent or older) up to its end as it is when the
/// read starts, keeping the records `keep` selects. Blocking: call it on a
/// blocking thread.
pub(super) fn read_topic(
    config: ClientConfig,
    topic: &str,
    timeout: Duration,
    start: impl Fn(&BaseConsumer, i32, i64, i64) -> Result<i64, OutboxError>,
    mut keep: impl FnMut(rdkafka::message::OwnedMessage) -> bool,
) -> Result<(), OutboxError> {
    use rdkafka::message::Message as _;
    let mut config = config;
    // librdkafka assigns partitions only to a consumer with a group; this
    // one never joins it (assign, not subscribe) nor commits.
    config
        .set("group.id", "s3tap-outbox-reader")
        .set("enable.auto.commit", "false");
    let consumer: BaseConsumer = config
        .create()
        .map_err(|e| OutboxError::Config(build_error(e).to_string()))?;
    let mut assignment = rdkafka::TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for partition in KafkaOutbox::partitions_of(&consumer, topic, timeout)? {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, timeout)
            .map_err(|e| OutboxError::engine(&format!("{topic}[{partition}] offsets"), e))?;
        let from = start(&consumer, partition, low, high)?.max(low);
        if from < high {
            assignment
                .add_partition_offset(topic, partition, rdkafka::Offset::Offset(from))
                .map_err(|e| OutboxError::engine("assign", e))?;
            ends.insert(partition, high);
        }
    }
    if ends.is_empty() {
        return Ok(());
    }
    consumer
        .assign(&assignment)
        .map_err(|e| OutboxError::engine("assign", e))?;
    let mut last_progress = std::time::Instant::now();
    while !ends.is_empty() {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                last_progress = std::time::Instant::now();
                let (partition, offset) = (message.partition(), message.offset());
                let Some(&end) = ends.get(&partition) else {
                    continue;
                };
                if offset >= end {
                    ends.remove(&partition);
                    continue;
                }
                if offset + 1 >= end {
                    ends.remove(&partition);
                }
                if !keep(message.detach()) {
                    return Ok(());
                }
            }
            Some(Err(error)) => {
                tracing::debug!(%error, topic, "outbox reader");
            }
            None if last_progress.elapsed() > timeout * 2 => {
                return Err(OutboxError::Engine(format!(
                    "{topic}: no records for {:?} before the end of partitions {:?}",
                    timeout * 2,
                    ends.keys().collect::<Vec<_>>()
                )));
            }
            None => {}
        }
    }
    Ok(())
}
