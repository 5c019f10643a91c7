//! The proxy's event notifications: `[notify]`, `[[sinks]]` and `[[rules]]`
//! from the configuration, turned into a running [`Dispatcher`] and the
//! [`EventEmitter`] that routes each event through the rules to its sinks.
//!
//! With nothing configured, events are written as JSON lines to stdout.
//! `WEBHOOK_URL` alone reproduces the original Worker: every request, every
//! status, the Worker's JSON (`seed` format) POSTed to that URL;
//! `WEBHOOK_SECRET` adds the B2-style `x-bz-event-notification-signature`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use serde::Deserialize;

use crate::credentials::Secret;
use crate::notify::format::{CloudEventsMode, Encoder as FormatEncoder, Format, FormatOptions};
use crate::notify::{
    Dispatcher, DispatcherTask, EmitError, Event, EventEmitter, FsyncPolicy, Rule, Rules,
    StatusFilter,
};
use crate::sink::webhook::{Encoded, WebhookSink};
use crate::sink::JsonLinesSink;
use crate::sink::Sink;

use super::config::ConfigError;

fn invalid(message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(message.into())
}

/// `[notify]`. Its `Debug` redacts the webhook secret.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifySection {
    /// Where event notifications go (the Worker's `WEBHOOK_URL`).
    pub webhook_url: Option<String>,
    /// Signs that webhook as B2 does (`WEBHOOK_SECRET`).
    pub webhook_secret: Option<String>,
    /// Format of that webhook: `seed` (default), `b2`, `s3`, `cloudevents`,
    /// `cloudevents-batch`.
    pub webhook_format: Option<String>,
    /// Directory of the durable event spool (default: `<data dir>/spool`
    /// with the embedded store, else `./s3tap-spool`).
    pub spool_dir: Option<PathBuf>,
    /// `always`, `interval` (default: group commit every 5 ms) or `never`.
    pub fsync: Option<String>,
    /// `head` (default: when the response head arrives) or `body_end`.
    pub emit_on: Option<String>,
    /// Capacity of the in-memory event queue (default 10000); beyond it
    /// events spill to the spool.
    pub queue_capacity: Option<usize>,
    /// B2 identity for the `b2` format.
    #[serde(default)]
    pub b2: crate::notify::format::B2Identity,
}

impl std::fmt::Debug for NotifySection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifySection")
            .field("webhook_url", &self.webhook_url)
            .field(
                "webhook_secret",
                &self.webhook_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("webhook_format", &self.webhook_format)
            .field("spool_dir", &self.spool_dir)
            .field("fsync", &self.fsync)
            .field("emit_on", &self.emit_on)
            .field("queue_capacity", &self.queue_capacity)
            .finish_non_exhaustive()
    }
}

/// One `[[sinks]]` entry. Its `Debug` shows the name only: entries hold
/// secrets.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum SinkSection {
    /// An HTTP webhook.
    Webhook {
        /// Name rules refer to.
        name: String,
        /// Target URL.
        url: String,
        /// Payload format (default `b2`).
        format: Option<String>,
        /// B2-style signature secret.
        b2_secret: Option<String>,
        /// Standard Webhooks secret (`whsec_...`).
        standard_webhooks_secret: Option<String>,
        /// Extra headers.
        #[serde(default)]
        headers: HashMap<String, String>,
        /// Request timeout, seconds (default 10).
        timeout_secs: Option<u64>,
    },
    /// JSON lines to a file or stdout.
    Jsonl {
        /// Name rules refer to.
        name: String,
        /// File to append to; stdout when absent.
        path: Option<PathBuf>,
    },
    /// Kafka (needs the `sink-kafka` feature).
    Kafka {
        /// Name rules refer to.
        name: String,
        /// `bootstrap.servers`.
        brokers: String,
        /// Default topic.
        topic: String,
        /// Topic per rule name.
        #[serde(default)]
        topics: HashMap<String, String>,
        /// Payload format (default `cloudevents`).
        format: Option<String>,
        /// Other librdkafka settings (SASL, TLS, ...).
        #[serde(default)]
        config: HashMap<String, String>,
    },
    /// NATS JetStream (needs the `sink-nats` feature).
    Nats {
        /// Name rules refer to.
        name: String,
        /// Server URL, e.g. `nats://127.0.0.1:4222`.
        url: String,
        /// Subject (the stream must exist).
        subject: String,
        /// Publish to `<subject>.<rule name>`.
        #[serde(default)]
        subject_per_rule: bool,
        /// Payload format (default `cloudevents`).
        format: Option<String>,
    },
    /// Redis Streams (needs the `sink-redis` feature).
    Redis {
        /// Name rules refer to.
        name: String,
        /// Server URL, e.g. `redis://127.0.0.1:6379`.
        url: String,
        /// Stream key.
        stream: String,
        /// Approximate `MAXLEN` trimming.
        max_len: Option<usize>,
        /// Payload format (default `cloudevents`).
        format: Option<String>,
    },
    /// RabbitMQ (needs the `sink-rabbitmq` feature).
    Rabbitmq {
        /// Name rules refer to.
        name: String,
        /// AMQP URL, e.g. `amqp://guest:guest@127.0.0.1:5672/%2f`.
        url: String,
        /// Exchange.
        exchange: String,
        /// Routing key.
        routing_key: String,
        /// Payload format (default `cloudevents`).
        format: Option<String>,
    },
    /// MQTT (needs the `sink-mqtt` feature).
    Mqtt {
        /// Name rules refer to.
        name: String,
        /// Broker host.
        host: String,
        /// Broker port (default 1883).
        port: Option<u16>,
        /// Topic.
        topic: String,
        /// Payload format (default `cloudevents`).
        format: Option<String>,
    },
    /// Amazon SNS (needs the `sink-sns` feature).
    Sns {
        /// Name rules refer to.
        name: String,
        /// Topic ARN (`.fifo` topics get group and de-duplication ids).
        topic_arn: String,
        /// Region.
        region: String,
        /// Access key id.
        access_key_id: String,
        /// Secret access key.
        secret_access_key: String,
        /// Endpoint override (e.g. a local emulator).
        endpoint: Option<String>,
        /// Payload format (default `s3`).
        format: Option<String>,
    },
    /// Amazon SQS (needs the `sink-sns` feature).
    Sqs {
        /// Name rules refer to.
        name: String,
        /// Queue URL.
        queue_url: String,
        /// Region.
        region: String,
        /// Access key id.
        access_key_id: String,
        /// Secret access key.
        secret_access_key: String,
        /// Endpoint override.
        endpoint: Option<String>,
        /// Payload format (default `s3`).
        format: Option<String>,
    },
}

impl std::fmt::Debug for SinkSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SinkSection({})", self.name())
    }
}

impl SinkSection {
    fn name(&self) -> &str {
        match self {
            SinkSection::Webhook { name, .. }
            | SinkSection::Jsonl { name, .. }
            | SinkSection::Kafka { name, .. }
            | SinkSection::Nats { name, .. }
            | SinkSection::Redis { name, .. }
            | SinkSection::Rabbitmq { name, .. }
            | SinkSection::Mqtt { name, .. }
            | SinkSection::Sns { name, .. }
            | SinkSection::Sqs { name, .. } => name,
        }
    }
}

/// What the notification settings resolved to, checked.
pub struct NotifySettings {
    sinks: Vec<SinkSection>,
    rules: Vec<Rule>,
    spool_dir: Option<PathBuf>,
    fsync: FsyncPolicy,
    emit_on_body_end: bool,
    queue_capacity: usize,
    b2: crate::notify::format::B2Identity,
}

impl std::fmt::Debug for NotifySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Sink sections may hold secrets: list names only.
        let names: Vec<&str> = self.sinks.iter().map(SinkSection::name).collect();
        f.debug_struct("NotifySettings")
            .field("sinks", &names)
            .field(
                "rules",
                &self
                    .rules
                    .iter()
                    .map(|r| r.name.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("spool_dir", &self.spool_dir)
            .field("fsync", &self.fsync)
            .finish_non_exhaustive()
    }
}

fn parse_format(text: &str, context: &str) -> Result<Format, ConfigError> {
    Ok(match text {
        "seed" => Format::Seed,
        "b2" => Format::B2,
        "s3" => Format::S3,
        "cloudevents" => Format::CloudEvents {
            mode: CloudEventsMode::Structured,
        },
        "cloudevents-batch" => Format::CloudEvents {
            mode: CloudEventsMode::Batch,
        },
        other => {
            return Err(invalid(format!(
                "{context}: unknown format {other:?}; expected seed, b2, s3, cloudevents or cloudevents-batch"
            )))
        }
    })
}

impl NotifySettings {
    /// Resolves `[notify]`, `[[sinks]]`, `[[rules]]` and the Worker's
    /// `WEBHOOK_URL`/`WEBHOOK_SECRET` (already merged into `section`).
    pub fn resolve(
        section: NotifySection,
        mut sinks: Vec<SinkSection>,
        rules: Vec<Rule>,
    ) -> Result<Self, ConfigError> {
        let fsync = match section.fsync.as_deref() {
            None | Some("interval") => FsyncPolicy::Interval(Duration::from_millis(5)),
            Some("always") => FsyncPolicy::Always,
            Some("never") => FsyncPolicy::Never,
            Some(other) => {
                return Err(invalid(format!(
                    "[notify] fsync: unknown policy {other:?}; expected always, interval or never"
                )))
            }
        };
        let emit_on_body_end = match section.emit_on.as_deref() {
            None | Some("head") => false,
            Some("body_end") => true,
            Some(other) => {
                return Err(invalid(format!(
                    "[notify] emit_on: {other:?}; expected head or body_end"
                )))
            }
        };
        let mut rules = rules;
        if let Some(url) = section.webhook_url {
            let format = section
                .webhook_format
                .clone()
                .unwrap_or_else(|| "seed".into());
            parse_format(&format, "[notify] webhook_format")?;
            sinks.push(SinkSection::Webhook {
                name: "webhook".into(),
                url,
                format: Some(format),
                b2_secret: section.webhook_secret.clone(),
                standard_webhooks_secret: None,
                headers: HashMap::new(),
                timeout_secs: None,
            });
        } else if section.webhook_secret.is_some() {
            return Err(invalid(
                "WEBHOOK_SECRET is set but there is no WEBHOOK_URL to sign for",
            ));
        }
        if sinks.is_empty() {
            sinks.push(SinkSection::Jsonl {
                name: "stdout".into(),
                path: None,
            });
        }
        let mut names = std::collections::HashSet::new();
        for sink in &sinks {
            if !names.insert(sink.name().to_owned()) {
                return Err(invalid(format!(
                    "[[sinks]]: the name {:?} is used twice",
                    sink.name()
                )));
            }
            if let SinkSection::Webhook {
                url, format, name, ..
            } = sink
            {
                let parsed: http::Uri = url
                    .parse()
                    .map_err(|_| invalid(format!("[[sinks]] {name}: url {url:?} is not a URL")))?;
                if !matches!(parsed.scheme_str(), Some("http" | "https")) {
                    return Err(invalid(format!(
                        "[[sinks]] {name}: url must be http:// or https://"
                    )));
                }
                parse_format(
                    format.as_deref().unwrap_or("b2"),
                    &format!("[[sinks]] {name}"),
                )?;
            }
        }
        if rules.is_empty() {
            // The original Worker: every request, every status, everywhere.
            rules = sinks
                .iter()
                .map(|sink| Rule {
                    name: "all-requests".into(),
                    event_types: vec!["*".into()],
                    prefix: None,
                    suffix: None,
                    statuses: StatusFilter::All,
                    sinks: vec![sink.name().to_owned()],
                })
                .collect();
        }
        for rule in &rules {
            for sink in &rule.sinks {
                if !names.contains(sink) {
                    return Err(invalid(format!(
                        "[[rules]] {}: unknown sink {sink:?}",
                        rule.name
                    )));
                }
            }
        }
        Ok(NotifySettings {
            sinks,
            rules,
            spool_dir: section.spool_dir,
            fsync,
            emit_on_body_end,
            queue_capacity: section.queue_capacity.unwrap_or(10_000),
            b2: section.b2,
        })
    }

    /// Each configured sink's name and, for webhooks, its URL.
    pub fn sinks(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.sinks.iter().map(|sink| match sink {
            SinkSection::Webhook { name, url, .. } => (name.as_str(), Some(url.as_str())),
            SinkSection::Jsonl { name, .. }
            | SinkSection::Kafka { name, .. }
            | SinkSection::Nats { name, .. }
            | SinkSection::Redis { name, .. }
            | SinkSection::Rabbitmq { name, .. }
            | SinkSection::Mqtt { name, .. }
            | SinkSection::Sns { name, .. }
            | SinkSection::Sqs { name, .. } => (name.as_str(), None),
        })
    }

    /// The rules, in order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Whether events are emitted at body end.
    pub fn emit_on_body_end(&self) -> bool {
        self.emit_on_body_end
    }

    /// Starts the dispatcher with its sinks; `default_spool_dir` is used when
    /// `[notify] spool_dir` is not set.
    pub async fn start(
        &self,
        default_spool_dir: PathBuf,
        region: &str,
    ) -> Result<(Arc<RoutingEmitter>, Dispatcher, DispatcherTask), String> {
        let options = FormatOptions {
            b2: self.b2.clone(),
            aws_region: region.to_owned(),
            ..FormatOptions::default()
        };
        let spool_dir = self.spool_dir.clone().unwrap_or(default_spool_dir);
        std::fs::create_dir_all(&spool_dir).map_err(|e| {
            format!(
                "cannot create the event spool directory {}: {e}",
                spool_dir.display()
            )
        })?;
        let mut builder = Dispatcher::builder()
            .queue_capacity(self.queue_capacity)
            .spool(spool_dir.join("events.redb"), self.fsync);
        for section in &self.sinks {
            let sink: Arc<dyn Sink> = match section {
                SinkSection::Webhook {
                    name,
                    url,
                    format,
                    b2_secret,
                    standard_webhooks_secret,
                    headers,
                    timeout_secs,
                } => {
                    let format = parse_format(format.as_deref().unwrap_or("b2"), name)
                        .map_err(|e| e.to_string())?;
                    let encoder = FormatEncoder::new(format, options.clone());
                    let mut sink = WebhookSink::new(url)
                        .map_err(|e| format!("[[sinks]] {name}: {e}"))?
                        .max_batch(format.max_batch())
                        .timeout(Duration::from_secs(timeout_secs.unwrap_or(10)))
                        .encoder(Arc::new(move |events: &[Event]| encode(&encoder, events)));
                    for (header, value) in headers {
                        let header = HeaderName::from_bytes(header.as_bytes()).map_err(|_| {
                            format!("[[sinks]] {name}: invalid header name {header:?}")
                        })?;
                        let value = HeaderValue::from_str(value).map_err(|_| {
                            format!("[[sinks]] {name}: invalid value for header {header}")
                        })?;
                        sink = sink.header(header, value);
                    }
                    if let Some(secret) = b2_secret {
                        sink = sink.sign_b2(Secret::new(secret.clone()).expose());
                    }
                    if let Some(secret) = standard_webhooks_secret {
                        sink = sink
                            .sign_standard_webhooks(secret)
                            .map_err(|e| format!("[[sinks]] {name}: {e}"))?;
                    }
                    Arc::new(sink)
                }
                SinkSection::Jsonl { path, .. } => match path {
                    Some(path) => Arc::new(
                        JsonLinesSink::file(path)
                            .map_err(|e| format!("cannot open {}: {e}", path.display()))?,
                    ),
                    None => Arc::new(JsonLinesSink::stdout()),
                },
                _ => broker_sink(section, &options).await?,
            };
            builder = builder.sink(section.name(), sink);
        }
        let (dispatcher, task) = builder
            .build()
            .await
            .map_err(|e| format!("event spool: {e}"))?;
        let emitter = Arc::new(RoutingEmitter {
            rules: Rules::new(self.rules.clone()),
            dispatcher: dispatcher.clone(),
        });
        Ok((emitter, dispatcher, task))
    }
}

/// Builds a Kafka, SNS or SQS sink, or explains which feature this build
/// lacks.
#[allow(unused_variables)]
async fn broker_sink(
    section: &SinkSection,
    options: &FormatOptions,
) -> Result<Arc<dyn Sink>, String> {
    let encoder =
        |format: &Option<String>, default: &str, name: &str| -> Result<FormatEncoder, String> {
            let format = parse_format(
                format.as_deref().unwrap_or(default),
                &format!("[[sinks]] {name}"),
            )
            .map_err(|e| e.to_string())?;
            Ok(FormatEncoder::new(format, options.clone()))
        };
    match section {
        #[cfg(feature = "sink-kafka")]
        SinkSection::Kafka {
            name,
            brokers,
            topic,
            topics,
            format,
            config,
        } => {
            let mut builder = crate::sink::KafkaSink::builder(brokers)
                .name(name.clone())
                .topic(topic.clone())
                .format(encoder(format, "cloudevents", name)?);
            for (rule, topic) in topics {
                builder = builder.topic_for_rule(rule.clone(), topic.clone());
            }
            for (key, value) in config {
                builder = builder.config(key.clone(), value.clone());
            }
            Ok(Arc::new(builder.build().map_err(|e| format!("[[sinks]] {name}: {e}"))?))
        }
        #[cfg(feature = "sink-sns")]
        SinkSection::Sns {
            name,
            topic_arn,
            region,
            access_key_id,
            secret_access_key,
            endpoint,
            format,
        } => {
            let credentials =
                crate::credentials::UpstreamCredentials::new(access_key_id.clone(), secret_access_key.as_str());
            let mut sink = crate::sink::SnsSink::new(topic_arn.clone(), region.clone(), credentials)
                .map_err(|e| format!("[[sinks]] {name}: {e}"))?
                .name(name.clone())
                .format(encoder(format, "s3", name)?);
            if let Some(endpoint) = endpoint {
                sink = sink.endpoint(endpoint.parse().map_err(|_| format!("[[sinks]] {name}: invalid endpoint"))?);
            }
            Ok(Arc::new(sink))
        }
        #[cfg(feature = "sink-sns")]
        SinkSection::Sqs {
            name,
            queue_url,
            region,
            access_key_id,
            secret_access_key,
            endpoint,
            format,
        } => {
            let credentials =
                crate::credentials::UpstreamCredentials::new(access_key_id.clone(), secret_access_key.as_str());
            let mut sink = crate::sink::SqsSink::new(queue_url.clone(), region.clone(), credentials)
                .map_err(|e| format!("[[sinks]] {name}: {e}"))?
                .name(name.clone())
                .format(encoder(format, "s3", name)?);
            if let Some(endpoint) = endpoint {
                sink = sink.endpoint(endpoint.parse().map_err(|_| format!("[[sinks]] {name}: invalid endpoint"))?);
            }
            Ok(Arc::new(sink))
        }
        #[cfg(feature = "sink-nats")]
        SinkSection::Nats {
            name,
            url,
            subject,
            subject_per_rule,
            format,
        } => {
            let mut builder = crate::sink::NatsSink::connect(url.clone())
                .subject(subject.clone())
                .name(name.clone())
                .format(encoder(format, "cloudevents", name)?);
            if *subject_per_rule {
                builder = builder.subject_per_rule();
            }
            Ok(Arc::new(builder.await.map_err(|e| format!("[[sinks]] {name}: {e}"))?))
        }
        #[cfg(feature = "sink-redis")]
        SinkSection::Redis {
            name,
            url,
            stream,
            max_len,
            format,
        } => {
            let mut builder = crate::sink::RedisSink::connect(url.clone())
                .stream(stream.clone())
                .name(name.clone())
                .format(encoder(format, "cloudevents", name)?);
            if let Some(max_len) = max_len {
                builder = builder.max_len(*max_len);
            }
            Ok(Arc::new(builder.await.map_err(|e| format!("[[sinks]] {name}: {e}"))?))
        }
        #[cfg(feature = "sink-rabbitmq")]
        SinkSection::Rabbitmq {
            name,
            url,
            exchange,
            routing_key,
            format,
        } => {
            let builder = crate::sink::RabbitMqSink::connect(url.clone())
                .exchange(exchange.clone())
                .routing_key(routing_key.clone())
                .name(name.clone())
                .format(encoder(format, "cloudevents", name)?);
            Ok(Arc::new(builder.await.map_err(|e| format!("[[sinks]] {name}: {e}"))?))
        }
        #[cfg(feature = "sink-mqtt")]
        SinkSection::Mqtt {
            name,
            host,
            port,
            topic,
            format,
        } => {
            let builder = crate::sink::MqttSink::connect(host.clone(), port.unwrap_or(1883))
                .topic(topic.clone())
                .name(name.clone())
                .format(encoder(format, "cloudevents", name)?);
            Ok(Arc::new(builder.await.map_err(|e| format!("[[sinks]] {name}: {e}"))?))
        }
        other => Err(format!(
            "[[sinks]] {}: this s3tap was built without that kind of sink; rebuild with its cargo feature (sink-kafka, sink-sns, sink-nats, sink-redis, sink-rabbitmq or sink-mqtt)",
            other.name()
        )),
    }
}

fn encode(encoder: &FormatEncoder, events: &[Event]) -> Encoded {
    // The sink's batch limit is the format's, so one message always fits;
    // should it not, the first event alone is still delivered correctly.
    let body = encoder
        .encode_batch(events)
        .unwrap_or_else(|_| encoder.encode_one(&events[0]));
    let mut headers = http::HeaderMap::new();
    for (name, value) in body.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            headers.append(name, value);
        }
    }
    Encoded {
        content_type: HeaderValue::from_static(body.content_type),
        body: body.body,
        headers,
    }
}

/// Routes each event through the rules and queues a copy per matching sink.
/// Never blocks: the dispatcher queues, spills to its spool, or refuses.
pub struct RoutingEmitter {
    rules: Rules,
    dispatcher: Dispatcher,
}

impl EventEmitter for RoutingEmitter {
    fn emit(&self, event: Event) {
        for (sink, routed) in self.rules.route_events(event) {
            // The id is copied only for the message: `emit` takes the event.
            let id = routed.id.clone();
            if let Err(error) = self.dispatcher.emit(sink, routed) {
                match error {
                    EmitError::SinkDisabled(_) => {
                        tracing::debug!("event for disabled sink {sink} not queued")
                    }
                    other => tracing::error!("event {id} for sink {sink} not queued: {other}"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(toml_text: &str) -> Result<NotifySettings, ConfigError> {
        #[derive(Deserialize)]
        struct File {
            #[serde(default)]
            notify: NotifySection,
            #[serde(default)]
            sinks: Vec<SinkSection>,
            #[serde(default)]
            rules: Vec<Rule>,
        }
        let file: File = toml::from_str(toml_text).expect("valid TOML");
        NotifySettings::resolve(file.notify, file.sinks, file.rules)
    }

    #[test]
    fn several_sinks_and_rules_fan_out() {
        let settings = resolve(
            r#"
            [[sinks]]
            name = "hook"
            type = "webhook"
            url = "https://example.com/events"
            format = "b2"
            b2_secret = "s3cr3t"

            [[sinks]]
            name = "bus"
            type = "kafka"
            brokers = "127.0.0.1:9092"
            topic = "s3-events"

            [[sinks]]
            name = "log"
            type = "jsonl"

            [[rules]]
            name = "uploads"
            events = ["s3:ObjectCreated:*"]
            sinks = ["hook", "bus"]

            [[rules]]
            name = "everything"
            events = ["*"]
            status = "all"
            sinks = ["log"]
            "#,
        )
        .unwrap();
        let names: Vec<&str> = settings.sinks().map(|(name, _)| name).collect();
        assert_eq!(names, ["hook", "bus", "log"]);
        assert_eq!(settings.rules().len(), 2);
        assert!(
            !format!("{settings:?}").contains("s3cr3t"),
            "secrets never in Debug"
        );
    }

    #[test]
    fn mistakes_are_named() {
        let unknown_sink = resolve(
            r#"
            [[sinks]]
            name = "hook"
            type = "webhook"
            url = "https://example.com/events"
            [[rules]]
            name = "r"
            events = ["*"]
            sinks = ["nope"]
            "#,
        );
        assert!(unknown_sink
            .unwrap_err()
            .to_string()
            .contains("unknown sink \"nope\""));
        let duplicate = resolve(
            r#"
            [[sinks]]
            name = "a"
            type = "jsonl"
            [[sinks]]
            name = "a"
            type = "jsonl"
            "#,
        );
        assert!(duplicate.unwrap_err().to_string().contains("used twice"));
        let bad_format = resolve(
            r#"
            [[sinks]]
            name = "hook"
            type = "webhook"
            url = "https://example.com/events"
            format = "xml"
            "#,
        );
        assert!(bad_format
            .unwrap_err()
            .to_string()
            .contains("unknown format \"xml\""));
        let secret_without_url = resolve("[notify]\nwebhook_secret = \"x\"\n");
        assert!(secret_without_url
            .unwrap_err()
            .to_string()
            .contains("WEBHOOK_SECRET"));
    }

    #[test]
    fn the_original_worker_and_the_embedded_default() {
        let worker = resolve("[notify]\nwebhook_url = \"https://example.com/hook\"\n").unwrap();
        assert_eq!(
            worker.sinks().collect::<Vec<_>>(),
            [("webhook", Some("https://example.com/hook"))]
        );
        assert_eq!(worker.rules()[0].statuses, StatusFilter::All);
        let nothing = resolve("").unwrap();
        assert_eq!(nothing.sinks().collect::<Vec<_>>(), [("stdout", None)]);
    }
}
