//! The proxy's event notifications: `[notify]`, `[[sinks]]` and `[[rules]]`
//! from the configuration, turned into a running [`Dispatcher`] and the
//! [`EventEmitter`] that routes each event through the rules to its sinks.
//!
//! With nothing configured, events are written as JSON lines to stdout, in
//! s3tap's schema (`s3tap.event/1`, see
//! [`format::native`](crate::notify::format::native)).
//! `WEBHOOK_URL` alone reproduces the original Worker: every request, every
//! status, the Worker's JSON (`seed` format, `contentLength` a number) POSTed
//! to that URL;
//! `WEBHOOK_SECRET` adds the B2-style `x-bz-event-notification-signature`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};

use crate::notify::format::{CloudEventsMode, Encoder as FormatEncoder, Format, FormatOptions};
use crate::notify::{
    Dispatcher, DispatcherTask, FsyncPolicy, RoutingEmitter, Rule, Rules, SharedRules, StatusFilter,
};
use crate::sink::webhook::{self, WebhookSink};
use crate::sink::JsonLinesSink;
use crate::sink::Sink;

use super::error::{invalid, ConfigError};
use super::schema::{NotifySection, SinkSection};

/// What the notification settings resolved to, checked.
pub struct NotifySettings {
    sinks: Vec<SinkSection>,
    rules: Vec<Rule>,
    spool_dir: Option<PathBuf>,
    fsync: FsyncPolicy,
    emit_on_body_end: bool,
    head_for_size: bool,
    queue_capacity: usize,
    b2: crate::notify::format::B2Identity,
    spool_max_events: u64,
    spool_max_bytes: u64,
    readyz_max_spool_fill: Option<f64>,
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
        "s3tap" => Format::Native,
        other => {
            return Err(invalid(format!(
                "{context}: unknown format {other:?}; expected seed, b2, s3, cloudevents, cloudevents-batch or s3tap"
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
        if let Some(fill) = section.readyz_max_spool_fill {
            if !(fill > 0.0 && fill <= 1.0) {
                return Err(invalid(format!(
                    "[notify] readyz_max_spool_fill = {fill} is out of range; expected a fraction of the spool limits above 0 and at most 1"
                )));
            }
        }
        if section.spool_max_events == Some(0) || section.spool_max_bytes == Some(0) {
            return Err(invalid(
                "[notify] spool_max_events and spool_max_bytes must be greater than 0",
            ));
        }
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
                max_events_per_batch: None,
                concurrency: None,
                test_event: false,
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
                url,
                format,
                name,
                max_events_per_batch,
                concurrency,
                test_event,
                ..
            } = sink
            {
                if *concurrency == Some(0) {
                    return Err(invalid(format!(
                        "[[sinks]] {name}: concurrency = 0 would never send; use 1 or more"
                    )));
                }
                let parsed: http::Uri = url
                    .parse()
                    .map_err(|_| invalid(format!("[[sinks]] {name}: url {url:?} is not a URL")))?;
                if !matches!(parsed.scheme_str(), Some("http" | "https")) {
                    return Err(invalid(format!(
                        "[[sinks]] {name}: url must be http:// or https://"
                    )));
                }
                let format = parse_format(
                    format.as_deref().unwrap_or("b2"),
                    &format!("[[sinks]] {name}"),
                )?;
                events_per_batch(format, *max_events_per_batch, name)?;
                if *test_event && format != Format::B2 {
                    return Err(invalid(format!(
                        "[[sinks]] {name}: test_event is B2's \"Test Rule\" message and needs format = \"b2\""
                    )));
                }
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
                    buckets: Vec::new(),
                    clients: Vec::new(),
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
            head_for_size: section.head_for_size,
            queue_capacity: section.queue_capacity.unwrap_or(10_000),
            b2: section.b2,
            spool_max_events: section.spool_max_events.unwrap_or(10_000_000),
            spool_max_bytes: section.spool_max_bytes.unwrap_or(1 << 30),
            readyz_max_spool_fill: section.readyz_max_spool_fill,
        })
    }

    /// Posts B2's "Test Rule" message to a B2 webhook sink, once, in the
    /// background: for the first rule that routes to the sink, and the first
    /// bucket of `[notify.b2] bucket_ids` (by name; empty when none is
    /// configured). A one-off check of the endpoint, not spooled or retried:
    /// the outcome is logged.
    fn send_test_event(&self, name: &str, sink: Arc<WebhookSink>, options: &FormatOptions) {
        let rule = self
            .rules
            .iter()
            .find(|rule| rule.sinks.iter().any(|s| s == name))
            .map(|rule| rule.name.clone())
            .unwrap_or_default();
        let bucket = options
            .b2
            .bucket_ids
            .keys()
            .min()
            .cloned()
            .unwrap_or_default();
        let body = crate::notify::format::b2::encode_test_event(
            options,
            &bucket,
            &rule,
            std::time::SystemTime::now(),
        );
        let encoded = crate::notify::format::EncodedBody {
            content_type: "application/json",
            body,
            headers: Vec::new(),
        };
        let name = name.to_owned();
        let id = format!("test_{}", uuid::Uuid::now_v7());
        tokio::spawn(async move {
            match sink.post(encoded, &id).await {
                Ok(()) => tracing::info!(sink = %name, "b2:TestEvent delivered"),
                Err(error) => tracing::warn!(sink = %name, "b2:TestEvent not delivered: {error}"),
            }
        });
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

    /// The emitter that routes each event through the `[[rules]]`, then
    /// `api_rules` (those made through the S3 notification API), into
    /// `dispatcher`.
    pub fn emitter(&self, dispatcher: Dispatcher, api_rules: SharedRules) -> RoutingEmitter {
        RoutingEmitter::new(Rules::new(self.rules.clone()), dispatcher).shared_rules(api_rules)
    }

    /// The rules, in order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The spool directory: `[notify] spool_dir`, else `default`.
    pub fn spool_dir_or(&self, default: PathBuf) -> PathBuf {
        self.spool_dir.clone().unwrap_or(default)
    }

    /// The spool fill above which `/readyz` fails, if any.
    pub fn readyz_max_spool_fill(&self) -> Option<f64> {
        self.readyz_max_spool_fill
    }

    /// Whether events are emitted at body end.
    pub fn emit_on_body_end(&self) -> bool {
        self.emit_on_body_end
    }

    /// `[notify] head_for_size`: whether a copy's or completion's event
    /// without a known size waits for a `HEAD` of the object.
    pub fn head_for_size(&self) -> bool {
        self.head_for_size
    }

    /// Starts the dispatcher with `sinks` (the configured ones from
    /// [`build_sinks`](Self::build_sinks), or in fleet mode their routes to
    /// the outbox); `default_spool_dir` is used when `[notify] spool_dir` is
    /// not set.
    pub async fn start(
        &self,
        default_spool_dir: PathBuf,
        sinks: Vec<(String, Arc<dyn Sink>)>,
    ) -> Result<(Dispatcher, DispatcherTask), String> {
        let spool_dir = self.spool_dir_or(default_spool_dir);
        std::fs::create_dir_all(&spool_dir).map_err(|e| {
            format!(
                "cannot create the event spool directory {}: {e}",
                spool_dir.display()
            )
        })?;
        let mut builder = Dispatcher::builder()
            .queue_capacity(self.queue_capacity)
            .spool_limits(self.spool_max_events, self.spool_max_bytes)
            .spool(spool_dir.join("events.redb"), self.fsync);
        for (name, sink) in sinks {
            builder = builder.sink(name, sink);
        }
        let (dispatcher, task) = builder
            .build()
            .await
            .map_err(|e| format!("event spool: {e}"))?;
        Ok((dispatcher, task))
    }

    /// The names of the `[[sinks]]`, in order.
    pub fn sink_names(&self) -> impl Iterator<Item = &str> {
        self.sinks.iter().map(|section| section.name())
    }

    /// Builds the configured sinks (connecting to brokers, sending a
    /// webhook's test event when asked), named as in `[[sinks]]`.
    pub async fn build_sinks(&self, region: &str) -> Result<Vec<(String, Arc<dyn Sink>)>, String> {
        let options = FormatOptions {
            b2: self.b2.clone(),
            aws_region: region.to_owned(),
            ..FormatOptions::default()
        };
        let mut built = Vec::with_capacity(self.sinks.len());
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
                    max_events_per_batch,
                    concurrency,
                    test_event,
                } => {
                    let format = parse_format(format.as_deref().unwrap_or("b2"), name)
                        .map_err(|e| e.to_string())?;
                    let per_batch = events_per_batch(format, *max_events_per_batch, name)
                        .map_err(|e| e.to_string())?;
                    let encoder = FormatEncoder::new(format, options.clone());
                    let mut sink = WebhookSink::builder(url.as_str())
                        .max_batch(per_batch)
                        .concurrency(concurrency.unwrap_or(webhook::DEFAULT_CONCURRENCY))
                        .timeout(Duration::from_secs(timeout_secs.unwrap_or(10)))
                        .format(encoder);
                    if format == Format::B2 {
                        // Receivers written for B2 may check who is calling;
                        // configured headers below can still override it.
                        sink = sink.header(
                            http::header::USER_AGENT,
                            HeaderValue::from_static(crate::notify::format::b2::USER_AGENT),
                        );
                    }
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
                        sink = sink.sign_b2(secret.as_str());
                    }
                    if let Some(secret) = standard_webhooks_secret {
                        sink = sink.sign_standard_webhooks(secret.as_str());
                    }
                    let sink =
                        Arc::new(sink.build().map_err(|e| format!("[[sinks]] {name}: {e}"))?);
                    if *test_event {
                        self.send_test_event(name, sink.clone(), &options);
                    }
                    sink
                }
                SinkSection::Jsonl { path, .. } => {
                    let builder = JsonLinesSink::builder();
                    let builder = match path {
                        Some(path) => builder.file(path),
                        None => builder,
                    };
                    // "cannot open <path>: <error>", as the operator sees it.
                    Arc::new(builder.build().map_err(|e| e.to_string())?)
                }
                _ => broker_sink(section, &options).await?,
            };
            built.push((section.name().to_owned(), sink));
        }
        Ok(built)
    }
}

/// The events per POST of a webhook sink in `format`: `configured`, checked
/// against the format's limit, or the default (1 for B2, as B2 sends, else
/// the format's limit).
fn events_per_batch(
    format: Format,
    configured: Option<usize>,
    name: &str,
) -> Result<usize, ConfigError> {
    let max = format.max_batch();
    let default = if format == Format::B2 {
        crate::notify::format::b2::DEFAULT_EVENTS_PER_BATCH
    } else {
        max
    };
    match configured {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) if format == Format::B2 => Err(invalid(format!(
            "[[sinks]] {name}: max_events_per_batch = {n} is out of range; B2 allows 1 to {max}"
        ))),
        Some(n) => Err(invalid(format!(
            "[[sinks]] {name}: max_events_per_batch = {n} is out of range; this format carries 1 to {max} events per message"
        ))),
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
            let mut builder = crate::sink::SnsSink::builder(topic_arn.clone(), region.clone(), credentials)
                .name(name.clone())
                .format(encoder(format, "s3", name)?);
            if let Some(endpoint) = endpoint {
                builder = builder.endpoint(endpoint.parse().map_err(|_| format!("[[sinks]] {name}: invalid endpoint"))?);
            }
            Ok(Arc::new(builder.build().map_err(|e| format!("[[sinks]] {name}: {e}"))?))
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
            let mut builder = crate::sink::SqsSink::builder(queue_url.clone(), region.clone(), credentials)
                .name(name.clone())
                .format(encoder(format, "s3", name)?);
            if let Some(endpoint) = endpoint {
                builder = builder.endpoint(endpoint.parse().map_err(|_| format!("[[sinks]] {name}: invalid endpoint"))?);
            }
            Ok(Arc::new(builder.build().map_err(|e| format!("[[sinks]] {name}: {e}"))?))
        }
        #[cfg(feature = "sink-nats")]
        SinkSection::Nats {
            name,
            url,
            subject,
            subject_per_rule,
            format,
        } => {
            let mut builder = crate::sink::NatsSink::builder(url.clone())
                .subject(subject.clone())
                .name(name.clone())
                .format(encoder(format, "cloudevents", name)?);
            if *subject_per_rule {
                builder = builder.subject_per_rule();
            }
            Ok(Arc::new(builder.connect().await.map_err(|e| format!("[[sinks]] {name}: {e}"))?))
        }
        #[cfg(feature = "sink-redis")]
        SinkSection::Redis {
            name,
            url,
            stream,
            max_len,
            format,
        } => {
            let mut builder = crate::sink::RedisSink::builder(url.clone())
                .stream(stream.clone())
                .name(name.clone())
                .format(encoder(format, "cloudevents", name)?);
            if let Some(max_len) = max_len {
                builder = builder.max_len(*max_len);
            }
            Ok(Arc::new(builder.connect().await.map_err(|e| format!("[[sinks]] {name}: {e}"))?))
        }
        #[cfg(feature = "sink-rabbitmq")]
        SinkSection::Rabbitmq {
            name,
            url,
            exchange,
            routing_key,
            format,
        } => {
            let builder = crate::sink::RabbitMqSink::builder(url.clone())
                .exchange(exchange.clone())
                .routing_key(routing_key.clone())
                .name(name.clone())
                .format(encoder(format, "cloudevents", name)?);
            Ok(Arc::new(builder.connect().await.map_err(|e| format!("[[sinks]] {name}: {e}"))?))
        }
        #[cfg(feature = "sink-mqtt")]
        SinkSection::Mqtt {
            name,
            host,
            port,
            topic,
            format,
        } => {
            let builder = crate::sink::MqttSink::builder(host.clone(), port.unwrap_or(1883))
                .topic(topic.clone())
                .name(name.clone())
                .format(encoder(format, "cloudevents", name)?);
            Ok(Arc::new(builder.connect().await.map_err(|e| format!("[[sinks]] {name}: {e}"))?))
        }
        other => Err(format!(
            "[[sinks]] {}: this s3tap was built without the `{}` feature that this kind of sink needs; \
             install one that knows every sink with `cargo install s3tap --features full` \
             (or add `--features {}`)",
            other.name(),
            other.feature(),
            other.feature(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

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
    fn b2_batch_size_and_test_event_keys() {
        let sink = |extra: &str| {
            format!(
                "[[sinks]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \"https://example.com/e\"\n{extra}\n"
            )
        };
        assert!(resolve(&sink(
            "format = \"b2\"\nmax_events_per_batch = 50\ntest_event = true"
        ))
        .is_ok());
        for (extra, expected) in [
            (
                "format = \"b2\"\nmax_events_per_batch = 51",
                "B2 allows 1 to 50",
            ),
            (
                "format = \"b2\"\nmax_events_per_batch = 0",
                "B2 allows 1 to 50",
            ),
            (
                "format = \"seed\"\nmax_events_per_batch = 2",
                "1 to 1 events",
            ),
            (
                "format = \"s3\"\ntest_event = true",
                "needs format = \"b2\"",
            ),
            ("concurrency = 0", "would never send"),
        ] {
            let error = resolve(&sink(extra)).unwrap_err().to_string();
            assert!(error.contains(expected), "{extra}: {error}");
            assert!(error.contains("[[sinks]] hook"), "{error}");
        }
        assert!(resolve(&sink("format = \"s3tap\"\nmax_events_per_batch = 100")).is_ok());
        // The defaults: one event per POST for B2, as B2's rules.
        assert_eq!(events_per_batch(Format::B2, None, "x").unwrap(), 1);
        assert_eq!(events_per_batch(Format::Native, None, "x").unwrap(), 100);
    }

    #[test]
    fn misspelt_sink_keys_are_rejected() {
        #[derive(Debug, Deserialize)]
        struct File {
            #[allow(dead_code)]
            sinks: Vec<SinkSection>,
        }
        for typo in [
            "max_event_per_batch = 1",
            "test_events = true",
            "concurrent = 4",
        ] {
            let text = format!(
                "[[sinks]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \"https://e/x\"\nformat = \"b2\"\n{typo}\n"
            );
            let error = toml::from_str::<File>(&text).unwrap_err().to_string();
            assert!(error.contains("unknown field"), "{typo}: {error}");
        }
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
