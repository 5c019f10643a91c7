//! [`KafkaSink`]: events to Kafka topics through librdkafka's idempotent
//! producer (feature `sink-kafka`).
//!
//! One event is one Kafka message:
//!
//! - **topic**: the topic configured for the event's
//!   [`matched_rule`](crate::notify::Event::matched_rule)
//!   ([`KafkaSinkBuilder::topic_for_rule`]), else the default topic
//!   ([`KafkaSinkBuilder::topic`]); an event with neither is refused
//!   permanently;
//! - **key**: `bucket/key` (just `bucket` for bucket events, none when the
//!   request named no bucket), so all events of one object land in one
//!   partition and keep their order;
//! - **value**: the event encoded by the sink's [`Encoder`], by default
//!   CloudEvents in structured mode (`application/cloudevents+json`). In
//!   CloudEvents binary mode the value is the event data and the attributes
//!   travel as `ce_*` headers of the Kafka protocol binding;
//! - **headers**: `content-type`, plus the `ce_*` attributes in binary mode.
//!
//! The producer is idempotent (`enable.idempotence=true`, `acks=all`): the
//! broker drops librdkafka's own retries, and messages of one partition are
//! written in the order they were produced. A redelivery by the dispatcher
//! (after a timeout, a restart) is a new message with the same event id,
//! which consumers de-duplicate on (CloudEvents `id`).
//!
//! [`Sink::deliver`] enqueues the whole batch and waits for every delivery
//! report, so a batch is acknowledged only when the brokers have it. Errors
//! are sorted into [`SinkError`]s: a broker that is down, a full queue or a
//! timeout is transient; a message too large, an invalid topic or a refused
//! authorization is permanent; when only some messages fail the dispatcher
//! gets [`SinkError::Partial`] naming them.
//!
//! TLS and SASL go through [`KafkaSinkBuilder::config`] (`security.protocol`,
//! `sasl.mechanism`, ...); they need librdkafka built with them, which the
//! application enables on the `rdkafka` crate (its `ssl`/`sasl` features).
//!
//! ```no_run
//! use s3tap::sink::KafkaSink;
//! use s3tap::notify::format::{BindingProtocol, CloudEventsMode, Encoder, Format, FormatOptions};
//!
//! # fn main() -> Result<(), s3tap::sink::SinkBuildError> {
//! let sink = KafkaSink::builder("kafka-1:9092,kafka-2:9092")
//!     .topic("s3-events")
//!     .topic_for_rule("uploads", "s3-uploads")
//!     .format(Encoder::new(
//!         Format::CloudEvents { mode: CloudEventsMode::Binary(BindingProtocol::Kafka) },
//!         FormatOptions::default(),
//!     ))
//!     .config("compression.type", "zstd")
//!     .build()?;
//! # let _ = sink;
//! # Ok(())
//! # }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use super::{outcome, BoxFuture, Sink, SinkBuildError, SinkError};
use crate::notify::format::{
    binary_headers, BindingProtocol, CloudEventsMode, EncodedBody, Encoder, Format, FormatOptions,
};
use crate::notify::Event;

/// The default [`Sink::max_batch`] of a [`KafkaSink`].
pub const DEFAULT_MAX_BATCH: usize = 500;
/// The default `message.timeout.ms`: how long librdkafka keeps trying to
/// deliver a message before reporting it failed. librdkafka's own default
/// (5 minutes) would hold a batch far longer than the dispatcher's retry
/// schedule needs.
pub const DEFAULT_MESSAGE_TIMEOUT: Duration = Duration::from_secs(30);
/// Extra wait past the message timeout before a batch whose reports never
/// came is declared failed (librdkafka always reports; this is a backstop).
const REPORT_GRACE: Duration = Duration::from_secs(10);

/// The producer settings every s3tap producer starts from (the sink's and
/// the fleet outbox's): idempotent, so librdkafka's own retries are
/// dropped by the broker and one partition keeps the produced order, and
/// acknowledged by every in-sync replica.
pub(crate) fn producer_defaults(bootstrap_servers: &str) -> BTreeMap<String, String> {
    [
        ("bootstrap.servers", bootstrap_servers.to_owned()),
        ("client.id", "s3tap".to_owned()),
        ("enable.idempotence", "true".to_owned()),
        ("acks", "all".to_owned()),
        (
            "message.timeout.ms",
            DEFAULT_MESSAGE_TIMEOUT.as_millis().to_string(),
        ),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value))
    .collect()
}

/// How librdkafka's refusal reads as the crate's [`SinkBuildError`].
pub(crate) fn build_error(error: KafkaError) -> SinkBuildError {
    match error {
        // The value is not repeated: it may be a password.
        KafkaError::ClientConfig(_, reason, key, _value) => {
            SinkBuildError::InvalidSetting { key, reason }
        }
        other => SinkBuildError::Client(other.to_string()),
    }
}

/// Settings for a [`KafkaSink`]. See the [module docs](self).
#[derive(Clone)]
pub struct KafkaSinkBuilder {
    name: String,
    settings: BTreeMap<String, String>,
    default_topic: Option<String>,
    rule_topics: HashMap<String, String>,
    encoder: Encoder,
    max_batch: usize,
}

impl KafkaSinkBuilder {
    fn new(bootstrap_servers: &str) -> Self {
        let mut settings = producer_defaults(bootstrap_servers);
        // A batch is enqueued at once; a short linger lets librdkafka pack
        // it into few produce requests without delaying a lone event
        // noticeably.
        settings.insert("linger.ms".to_owned(), "5".to_owned());
        KafkaSinkBuilder {
            name: "kafka".to_owned(),
            settings,
            default_topic: None,
            rule_topics: HashMap::new(),
            encoder: Encoder::new(
                Format::CloudEvents {
                    mode: CloudEventsMode::Structured,
                },
                FormatOptions::default(),
            ),
            max_batch: DEFAULT_MAX_BATCH,
        }
    }

    /// The sink's name in logs and metrics (default `kafka`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The topic of events no per-rule topic applies to.
    pub fn topic(mut self, topic: impl Into<String>) -> Self {
        self.default_topic = Some(topic.into());
        self
    }

    /// The topic of events whose routing rule is `rule`
    /// ([`Event::matched_rule`]).
    pub fn topic_for_rule(mut self, rule: impl Into<String>, topic: impl Into<String>) -> Self {
        self.rule_topics.insert(rule.into(), topic.into());
        self
    }

    /// How message values are encoded (default CloudEvents, structured
    /// mode). Each event is one message whatever the format's batch size.
    /// In CloudEvents binary mode the headers always follow the Kafka
    /// binding (`ce_*`), whichever binding the mode names.
    pub fn format(mut self, encoder: Encoder) -> Self {
        self.encoder = encoder;
        self
    }

    /// Sets any librdkafka producer setting (`security.protocol`,
    /// `sasl.username`, `compression.type`, `message.timeout.ms`, ...),
    /// overriding the sink's defaults: `enable.idempotence=true`,
    /// `acks=all`, `message.timeout.ms=30000`, `linger.ms=5`,
    /// `client.id=s3tap`. Values never appear in `Debug` output or errors.
    pub fn config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.insert(key.into(), value.into());
        self
    }

    /// How long librdkafka tries to deliver a message
    /// (`message.timeout.ms`, default 30 s): the longest a
    /// [`deliver`](Sink::deliver) call waits on a broker that is down.
    pub fn timeout(self, timeout: Duration) -> Self {
        let millis = timeout.as_millis().max(1).to_string();
        self.config("message.timeout.ms", millis)
    }

    /// The largest batch the dispatcher hands over (default 500).
    pub fn max_batch(mut self, max: usize) -> Self {
        self.max_batch = max.max(1);
        self
    }

    /// Creates the producer. It connects in the background: an unreachable
    /// cluster shows up as transient delivery failures, not here.
    pub fn build(self) -> Result<KafkaSink, SinkBuildError> {
        let mut client_config = ClientConfig::new();
        for (key, value) in &self.settings {
            client_config.set(key, value);
        }
        let producer: FutureProducer = client_config.create().map_err(build_error)?;
        let timeout = ["message.timeout.ms", "delivery.timeout.ms"]
            .iter()
            .filter_map(|key| self.settings.get(*key)?.parse::<u64>().ok())
            .next_back()
            .map(Duration::from_millis)
            .unwrap_or(DEFAULT_MESSAGE_TIMEOUT);
        Ok(KafkaSink {
            name: self.name,
            client_config,
            producer: RwLock::new(producer),
            default_topic: self.default_topic,
            rule_topics: self.rule_topics,
            encoder: self.encoder,
            max_batch: self.max_batch,
            message_timeout: timeout,
            setting_names: self.settings.into_keys().collect(),
        })
    }
}

impl fmt::Debug for KafkaSinkBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaSinkBuilder")
            .field("name", &self.name)
            .field("settings", &self.settings.keys().collect::<Vec<_>>())
            .field("default_topic", &self.default_topic)
            .field("rule_topics", &self.rule_topics)
            .field("format", &self.encoder.format)
            .field("max_batch", &self.max_batch)
            .finish()
    }
}

/// Delivers events to Kafka. See the [module docs](self).
pub struct KafkaSink {
    name: String,
    client_config: ClientConfig,
    // Replaced when the idempotent producer hits a fatal error (it cannot
    // produce again after one; a new producer gets a new producer id).
    producer: RwLock<FutureProducer>,
    default_topic: Option<String>,
    rule_topics: HashMap<String, String>,
    encoder: Encoder,
    max_batch: usize,
    message_timeout: Duration,
    setting_names: Vec<String>,
}

impl KafkaSink {
    /// A builder for a sink producing to the cluster at `bootstrap_servers`
    /// (`host:port[,host:port...]`).
    pub fn builder(bootstrap_servers: &str) -> KafkaSinkBuilder {
        KafkaSinkBuilder::new(bootstrap_servers)
    }

    /// The topic an event goes to, if any.
    pub fn topic_of(&self, event: &Event) -> Option<&str> {
        event
            .matched_rule
            .as_deref()
            .and_then(|rule| self.rule_topics.get(rule))
            .or(self.default_topic.as_ref())
            .map(String::as_str)
    }

    /// The message key of an event: `bucket/key`, `bucket`, or none.
    pub fn message_key(event: &Event) -> Option<String> {
        match (&event.bucket, &event.key) {
            (Some(bucket), Some(key)) => Some(format!("{bucket}/{key}")),
            (Some(bucket), None) => Some(bucket.clone()),
            (None, _) => None,
        }
    }

    /// The message value and headers of an event.
    pub fn encode(&self, event: &Event) -> EncodedBody {
        let mut body = self.encoder.encode_one(event);
        if let Format::CloudEvents {
            mode: CloudEventsMode::Binary(BindingProtocol::Http),
        } = self.encoder.format
        {
            body.headers = binary_headers(event, BindingProtocol::Kafka, &self.encoder.options);
        }
        body
    }

    fn producer(&self) -> FutureProducer {
        self.producer
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Replaces a producer that reported a fatal error with a new one.
    fn renew_producer(&self, failed: &FutureProducer) {
        let mut current = self
            .producer
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Another batch may have renewed it already.
        if current.client().native_ptr() != failed.client().native_ptr() {
            return;
        }
        let reason = failed
            .client()
            .fatal_error()
            .map(|(code, reason)| format!("{code:?}: {reason}"))
            .unwrap_or_else(|| "unknown".to_owned());
        match self.client_config.create::<FutureProducer>() {
            Ok(producer) => {
                tracing::warn!(sink = %self.name, %reason, "Kafka producer hit a fatal error; replaced it");
                *current = producer;
            }
            Err(error) => {
                tracing::error!(sink = %self.name, %reason, error = %build_error(error), "Kafka producer hit a fatal error and cannot be replaced");
            }
        }
    }

    async fn deliver_batch(&self, batch: &[Event]) -> Result<(), SinkError> {
        let producer = self.producer();
        let deadline = Instant::now() + self.message_timeout;
        let mut failed: Vec<(usize, SinkError)> = Vec::new();
        let mut pending = Vec::with_capacity(batch.len());
        for (index, event) in batch.iter().enumerate() {
            let Some(topic) = self.topic_of(event) else {
                let rule = event.matched_rule.as_deref().unwrap_or("<none>");
                failed.push((
                    index,
                    SinkError::permanent(format!(
                        "no Kafka topic for the event (rule {rule:?}) and no default topic"
                    )),
                ));
                continue;
            };
            let body = self.encode(event);
            let key = Self::message_key(event);
            let mut headers = OwnedHeaders::new_with_capacity(1 + body.headers.len());
            headers = headers.insert(Header {
                key: "content-type",
                value: Some(body.content_type),
            });
            for (name, value) in &body.headers {
                headers = headers.insert(Header {
                    key: name,
                    value: Some(value.as_str()),
                });
            }
            let mut record: FutureRecord<'_, str, [u8]> = FutureRecord::to(topic)
                .payload(&body.body[..])
                .headers(headers)
                .timestamp(event.time_millis() as i64);
            if let Some(key) = key.as_deref() {
                record = record.key(key);
            }
            match enqueue(&producer, record, deadline, Duration::from_millis(5)).await {
                Ok(delivery) => pending.push((index, delivery)),
                Err(error) => failed.push((index, classify(&error))),
            }
        }

        let (indices, reports): (Vec<usize>, Vec<_>) = pending.into_iter().unzip();
        let wait = self.message_timeout + REPORT_GRACE;
        let mut fatal = false;
        match tokio::time::timeout(wait, join_all(reports)).await {
            Ok(reports) => fatal = settle_reports(indices, reports, &mut failed),
            Err(_elapsed) => {
                for index in indices {
                    failed.push((
                        index,
                        SinkError::transient(format!(
                            "no Kafka delivery report within {} ms",
                            wait.as_millis()
                        )),
                    ));
                }
            }
        }
        if fatal {
            self.renew_producer(&producer);
        }
        if !failed.is_empty() {
            tracing::debug!(sink = %self.name, failed = failed.len(), of = batch.len(), "Kafka delivery failures");
        }
        outcome::fold(batch.len(), failed)
    }
}

impl fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaSink")
            .field("name", &self.name)
            .field("settings", &self.setting_names)
            .field("default_topic", &self.default_topic)
            .field("rule_topics", &self.rule_topics)
            .field("format", &self.encoder.format)
            .field("max_batch", &self.max_batch)
            .field("message_timeout", &self.message_timeout)
            .finish_non_exhaustive()
    }
}

impl Sink for KafkaSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn max_batch(&self) -> usize {
        self.max_batch
    }

    fn deliver<'a>(&'a self, batch: &'a [Event]) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(self.deliver_batch(batch))
    }
}

/// Enqueues `record` on `producer`, waiting out a full local queue (in
/// steps of `pause`) until `deadline` rather than skipping it, so that the
/// records of one object are enqueued, and written, in order. Shared by
/// the Kafka sink and the Kafka outbox.
pub(crate) async fn enqueue<'a, C: rdkafka::ClientContext + 'static>(
    producer: &FutureProducer<C>,
    mut record: FutureRecord<'a, str, [u8]>,
    deadline: Instant,
    pause: Duration,
) -> Result<rdkafka::producer::DeliveryFuture, KafkaError> {
    loop {
        match producer.send_result(record) {
            Ok(delivery) => return Ok(delivery),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                if Instant::now() < deadline =>
            {
                record = back;
                tokio::time::sleep(pause).await;
            }
            Err((error, _)) => return Err(error),
        }
    }
}

/// Reads the delivery reports of records `indices` into `failed` (index,
/// reason); answers whether one was fatal (an idempotent producer that must
/// be replaced). Shared by the Kafka sink and the Kafka outbox.
pub(crate) fn settle_reports(
    indices: Vec<usize>,
    reports: Vec<<rdkafka::producer::DeliveryFuture as std::future::Future>::Output>,
    failed: &mut Vec<(usize, SinkError)>,
) -> bool {
    let mut fatal = false;
    for (index, report) in indices.into_iter().zip(reports) {
        match report {
            Ok(Ok(_delivery)) => {}
            Ok(Err((error, _message))) => {
                fatal |= error.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal);
                failed.push((index, classify(&error)));
            }
            Err(_canceled) => failed.push((
                index,
                SinkError::transient("the Kafka producer went away before reporting"),
            )),
        }
    }
    fatal
}

/// Sorts a librdkafka error into transient or permanent.
///
/// Permanent: what no retry can fix (the message is too large for the
/// broker, the topic name is invalid, the credentials are refused or lack
/// the right to write). Everything else, including codes not listed, is
/// transient: losing an event to an unforeseen code is worse than retrying
/// it.
pub(crate) fn classify(error: &KafkaError) -> SinkError {
    use RDKafkaErrorCode as C;
    let Some(code) = error.rdkafka_error_code() else {
        return SinkError::transient(format!("Kafka: {error}"));
    };
    let what = format!("Kafka {code}");
    match code {
        C::MessageSizeTooLarge | C::InvalidMessageSize | C::MessageBatchTooLarge => {
            SinkError::permanent(format!(
                "{what}: the message is larger than the broker or topic accepts"
            ))
        }
        C::InvalidTopic => SinkError::permanent(format!("{what}: invalid topic name")),
        C::TopicAuthorizationFailed
        | C::ClusterAuthorizationFailed
        | C::TransactionalIdAuthorizationFailed
        | C::SaslAuthenticationFailed
        | C::UnsupportedSASLMechanism
        | C::Authentication => SinkError::permanent(format!(
            "{what}: the broker refused the credentials or the right to write"
        )),
        C::InvalidRecord
        | C::InvalidMessage
        | C::BadMessage
        | C::InvalidRequiredAcks
        | C::PolicyViolation
        | C::UnsupportedForMessageFormat
        | C::InvalidArgument => {
            SinkError::permanent(format!("{what}: the broker refused the message"))
        }
        _ => SinkError::transient(what),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::S3Operation;

    fn event(bucket: Option<&str>, key: Option<&str>, rule: Option<&str>) -> Event {
        let mut event = Event::new(S3Operation::PutObject, "PUT", 200, "http://h/b/k");
        event.bucket = bucket.map(Into::into);
        event.key = key.map(Into::into);
        event.matched_rule = rule.map(Into::into);
        event
    }

    #[test]
    fn keys_and_topics() {
        let sink = KafkaSink::builder("127.0.0.1:1")
            .topic("all")
            .topic_for_rule("uploads", "up")
            .build()
            .unwrap();
        let e = event(Some("b"), Some("a/b c"), Some("uploads"));
        assert_eq!(KafkaSink::message_key(&e).as_deref(), Some("b/a/b c"));
        assert_eq!(sink.topic_of(&e), Some("up"));
        let e = event(Some("b"), None, Some("other"));
        assert_eq!(KafkaSink::message_key(&e).as_deref(), Some("b"));
        assert_eq!(sink.topic_of(&e), Some("all"));
        assert_eq!(KafkaSink::message_key(&event(None, None, None)), None);
        let no_default = KafkaSink::builder("127.0.0.1:1")
            .topic_for_rule("uploads", "up")
            .build()
            .unwrap();
        assert_eq!(no_default.topic_of(&event(Some("b"), None, None)), None);
    }

    #[test]
    fn binary_mode_uses_kafka_headers() {
        let sink = KafkaSink::builder("127.0.0.1:1")
            .format(Encoder::new(
                Format::CloudEvents {
                    mode: CloudEventsMode::Binary(BindingProtocol::Http),
                },
                FormatOptions::default(),
            ))
            .build()
            .unwrap();
        let e = event(Some("b"), Some("k é"), None);
        let body = sink.encode(&e);
        assert!(body.headers.iter().all(|(name, _)| name.starts_with("ce_")));
        // The subject is the S3 record's key, URL-encoded as S3 does it; the
        // id the record's request id (none here) and event id.
        assert!(body
            .headers
            .contains(&("ce_subject".to_owned(), "k+%C3%A9".to_owned())));
        assert!(body
            .headers
            .contains(&("ce_id".to_owned(), format!(".{}", e.id))));
    }

    #[test]
    fn errors_are_sorted() {
        let transient = [
            RDKafkaErrorCode::QueueFull,
            RDKafkaErrorCode::MessageTimedOut,
            RDKafkaErrorCode::AllBrokersDown,
            RDKafkaErrorCode::BrokerTransportFailure,
            RDKafkaErrorCode::RequestTimedOut,
            RDKafkaErrorCode::NotEnoughReplicas,
            RDKafkaErrorCode::LeaderNotAvailable,
            RDKafkaErrorCode::UnknownTopicOrPartition,
        ];
        for code in transient {
            let e = classify(&KafkaError::MessageProduction(code));
            assert!(matches!(e, SinkError::Transient { .. }), "{code:?}: {e}");
        }
        let permanent = [
            RDKafkaErrorCode::MessageSizeTooLarge,
            RDKafkaErrorCode::InvalidTopic,
            RDKafkaErrorCode::TopicAuthorizationFailed,
            RDKafkaErrorCode::SaslAuthenticationFailed,
        ];
        for code in permanent {
            let e = classify(&KafkaError::MessageProduction(code));
            assert!(matches!(e, SinkError::Permanent { .. }), "{code:?}: {e}");
        }
    }

    #[test]
    fn config_values_stay_out_of_debug_and_errors() {
        let builder = KafkaSink::builder("127.0.0.1:1").config("sasl.password", "hunter2-secret");
        assert!(!format!("{builder:?}").contains("hunter2"));
        let sink = builder.build().unwrap();
        assert!(!format!("{sink:?}").contains("hunter2"));
        let error = KafkaSink::builder("127.0.0.1:1")
            .config("acks", "not-a-number-secret")
            .build()
            .unwrap_err();
        assert!(
            !error.to_string().contains("not-a-number-secret"),
            "{error}"
        );
        assert!(error.to_string().contains("acks"), "{error}");
    }
}
