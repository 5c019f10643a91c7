//! `[outbox]` (fleet mode), checked, and what uses it: the connection the
//! proxy commits events through, and the commands that run without an S3
//! listener: `s3tap deliver`, `s3tap replay`, and `s3tap dead-letters
//! --config` on the dead letters. Both engines (NATS JetStream, Kafka) go
//! through [`Engine`] and its companions, so the proxy and the commands
//! never ask which one runs.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::notify::{DeadLetterFilter, RetryPolicy};
use crate::outbox::{
    DeadLetterStream, Deliverer, JetStreamOutbox, OutboxDeadLetter, OutboxError, ReplayReport,
    ReplaySelection, SinkProgress,
};
#[cfg(feature = "outbox-kafka")]
use crate::outbox::{KafkaDeadLetters, KafkaDeliverer, KafkaOutbox};
use crate::sink::Sink;

use super::error::{invalid, ConfigError};
use super::schema::OutboxSection;

/// Which engine `[outbox] url` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EngineKind {
    JetStream,
    Kafka,
}

/// `[outbox]`, checked.
#[derive(Clone)]
pub struct OutboxSettings {
    kind: EngineKind,
    url: String,
    stream: Option<String>,
    subject_prefix: Option<String>,
    dead_letter_stream: Option<String>,
    dead_letter_subject_prefix: Option<String>,
    replicas: Option<usize>,
    partitions: Option<i32>,
    // Read only where a Kafka outbox can be built.
    #[cfg_attr(not(feature = "outbox-kafka"), allow(dead_code))]
    client_config: BTreeMap<String, String>,
    max_age: Option<Duration>,
    max_bytes: Option<i64>,
    duplicate_window: Option<Duration>,
    /// Commit a changing request's events before its answer.
    pub commit: bool,
    /// The longest an answer waits for the commit.
    pub commit_timeout: Duration,
    /// How long a deliverer has to settle a message (JetStream's ack wait;
    /// Kafka's consumer session timeout).
    pub ack_wait: Duration,
    /// Also run the delivery role in the proxy.
    pub deliver: bool,
    /// `/readyz` fails while the outbox is unreachable and the local buffer
    /// is fuller than this.
    pub readyz_max_buffer_fill: f64,
}

impl fmt::Debug for OutboxSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may carry a user and password, the client settings
        // secrets: not printed.
        f.debug_struct("OutboxSettings")
            .field("engine", &self.kind)
            .field("stream", &self.stream)
            .field("replicas", &self.replicas)
            .field("partitions", &self.partitions)
            .field("commit", &self.commit)
            .field("commit_timeout", &self.commit_timeout)
            .field("deliver", &self.deliver)
            .finish_non_exhaustive()
    }
}

impl OutboxSettings {
    /// Checks `[outbox]` against the sinks it will carry events for.
    pub(super) fn resolve<'a>(
        section: OutboxSection,
        sinks: impl IntoIterator<Item = &'a str>,
    ) -> Result<OutboxSettings, ConfigError> {
        let url = section.url.trim().to_owned();
        let parts: Vec<&str> = url.split(',').map(str::trim).collect();
        // Kafka's bootstrap list reads `kafka://h1:9092,h2:9092` (the
        // scheme once) or with the scheme on each.
        let kind = if parts[0].starts_with("kafka://")
            && parts[1..]
                .iter()
                .all(|u| u.starts_with("kafka://") || !u.contains("://"))
        {
            EngineKind::Kafka
        } else if parts
            .iter()
            .all(|u| u.starts_with("nats://") || u.starts_with("tls://"))
        {
            EngineKind::JetStream
        } else {
            return Err(invalid(format!(
                "[outbox] url: expected nats://host:port (NATS JetStream) or kafka://host:port (Kafka), several separated by commas, got {:?}",
                redact(&url)
            )));
        };
        if url.is_empty() || parts.iter().any(|u| u.ends_with("://")) {
            return Err(invalid("[outbox] url: a host:port is missing"));
        }
        for sink in sinks {
            if sink.is_empty()
                || !sink
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(invalid(format!(
                    "[[sinks]] {sink:?}: with [outbox], a sink's name is part of a subject or a consumer group: use letters, digits, '-' and '_'"
                )));
            }
        }
        match kind {
            EngineKind::JetStream => {
                if let Some(replicas) = section.replicas {
                    if !(1..=5).contains(&replicas) {
                        return Err(invalid(format!(
                            "[outbox] replicas = {replicas}: JetStream allows 1 to 5"
                        )));
                    }
                }
                for (key, set) in [
                    ("partitions", section.partitions.is_some()),
                    ("config", section.config.is_some()),
                ] {
                    if set {
                        return Err(invalid(format!(
                            "[outbox] {key} applies to a Kafka outbox (kafka://), not to NATS JetStream"
                        )));
                    }
                }
            }
            EngineKind::Kafka => {
                if !cfg!(feature = "outbox-kafka") {
                    return Err(invalid(
                        "[outbox] url: this s3tap was built without the `outbox-kafka` feature that a Kafka outbox needs; \
                         install one with `cargo install s3tap --features full`",
                    ));
                }
                for (key, set) in [
                    ("subject_prefix", section.subject_prefix.is_some()),
                    (
                        "dead_letter_subject_prefix",
                        section.dead_letter_subject_prefix.is_some(),
                    ),
                    (
                        "duplicate_window_secs",
                        section.duplicate_window_secs.is_some(),
                    ),
                ] {
                    if set {
                        return Err(invalid(format!(
                            "[outbox] {key} applies to NATS JetStream, not to a Kafka outbox (kafka://)"
                        )));
                    }
                }
                if section.replicas == Some(0) || section.partitions.is_some_and(|p| p < 1) {
                    return Err(invalid(
                        "[outbox] replicas and partitions must be at least 1",
                    ));
                }
            }
        }
        let fill = section.readyz_max_buffer_fill.unwrap_or(0.5);
        if !(fill > 0.0 && fill <= 1.0) {
            return Err(invalid(format!(
                "[outbox] readyz_max_buffer_fill = {fill} is out of range; expected a fraction above 0 and at most 1"
            )));
        }
        let commit_timeout = Duration::from_millis(section.commit_timeout_ms.unwrap_or(500));
        if commit_timeout.is_zero() {
            return Err(invalid("[outbox] commit_timeout_ms must be above 0"));
        }
        Ok(OutboxSettings {
            kind,
            url,
            stream: section.stream,
            subject_prefix: section.subject_prefix,
            dead_letter_stream: section.dead_letter_stream,
            dead_letter_subject_prefix: section.dead_letter_subject_prefix,
            replicas: section.replicas,
            partitions: section.partitions,
            client_config: section.config.unwrap_or_default(),
            max_age: section.max_age_secs.map(Duration::from_secs),
            max_bytes: section.max_bytes,
            duplicate_window: section.duplicate_window_secs.map(Duration::from_secs),
            commit: section.commit.unwrap_or(true),
            commit_timeout,
            ack_wait: Duration::from_secs(section.ack_wait_secs.unwrap_or(30).max(1)),
            deliver: section.deliver.unwrap_or(false),
            readyz_max_buffer_fill: fill,
        })
    }

    /// Connects to the engine `url` names (a cluster away now is not an
    /// error: see
    /// [`JetStreamOutboxBuilder::connect`](crate::outbox::JetStreamOutboxBuilder::connect)).
    pub(crate) async fn connect(&self) -> Result<Engine, String> {
        match self.kind {
            EngineKind::JetStream => self.connect_jetstream().await.map(Engine::JetStream),
            #[cfg(feature = "outbox-kafka")]
            EngineKind::Kafka => self.connect_kafka().await.map(Engine::Kafka),
            #[cfg(not(feature = "outbox-kafka"))]
            EngineKind::Kafka => Err("a Kafka outbox needs the `outbox-kafka` feature".into()),
        }
    }

    async fn connect_jetstream(&self) -> Result<JetStreamOutbox, String> {
        let mut builder = JetStreamOutbox::builder(self.url.as_str());
        if let Some(stream) = &self.stream {
            builder = builder.stream(stream.as_str());
        }
        if let Some(prefix) = &self.subject_prefix {
            builder = builder.subject_prefix(prefix.as_str());
        }
        if self.dead_letter_stream.is_some() || self.dead_letter_subject_prefix.is_some() {
            builder = builder.dead_letters(
                self.dead_letter_stream
                    .clone()
                    .unwrap_or_else(|| "S3TAP_DEAD_LETTERS".into()),
                self.dead_letter_subject_prefix
                    .clone()
                    .unwrap_or_else(|| "s3tap.dead".into()),
            );
        }
        if let Some(replicas) = self.replicas {
            builder = builder.replicas(replicas);
        }
        if let Some(age) = self.max_age {
            builder = builder.max_age(age);
        }
        if let Some(bytes) = self.max_bytes {
            builder = builder.max_bytes(bytes);
        }
        if let Some(window) = self.duplicate_window {
            builder = builder.duplicate_window(window);
        }
        builder.connect().await.map_err(|e| e.to_string())
    }

    #[cfg(feature = "outbox-kafka")]
    async fn connect_kafka(&self) -> Result<KafkaOutbox, String> {
        let servers: Vec<&str> = self
            .url
            .split(',')
            .map(|u| {
                u.trim()
                    .trim_start_matches("kafka://")
                    .trim_end_matches('/')
            })
            .collect();
        let mut builder = KafkaOutbox::builder(servers.join(","));
        if let Some(topic) = &self.stream {
            builder = builder.topic(topic.as_str());
        }
        if let Some(topic) = &self.dead_letter_stream {
            builder = builder.dead_letter_topic(topic.as_str());
        }
        if let Some(replicas) = self.replicas {
            builder = builder.replicas(i32::try_from(replicas).unwrap_or(i32::MAX));
        }
        if let Some(partitions) = self.partitions {
            builder = builder.partitions(partitions);
        }
        if let Some(age) = self.max_age {
            builder = builder.max_age(age);
        }
        if let Some(bytes) = self.max_bytes {
            builder = builder.max_bytes(bytes);
        }
        for (key, value) in &self.client_config {
            builder = builder.config(key.as_str(), value.as_str());
        }
        builder.connect().await.map_err(|e| e.to_string())
    }
}

/// A connected outbox, whichever engine runs it.
#[derive(Clone, Debug)]
pub(crate) enum Engine {
    JetStream(JetStreamOutbox),
    #[cfg(feature = "outbox-kafka")]
    Kafka(KafkaOutbox),
}

impl Engine {
    /// The dispatcher's route to the outbox for the sink named `sink`.
    pub(crate) fn route(&self, sink: &str) -> Result<Arc<dyn Sink>, OutboxError> {
        Ok(match self {
            Engine::JetStream(outbox) => Arc::new(outbox.sink(sink)?),
            #[cfg(feature = "outbox-kafka")]
            Engine::Kafka(outbox) => Arc::new(outbox.sink(sink)?),
        })
    }

    /// What the emitter commits through.
    pub(crate) fn committer(&self) -> Arc<dyn crate::notify::Outbox> {
        match self {
            Engine::JetStream(outbox) => Arc::new(outbox.clone()),
            #[cfg(feature = "outbox-kafka")]
            Engine::Kafka(outbox) => Arc::new(outbox.clone()),
        }
    }

    /// Whether the engine is reachable now (for `/readyz`).
    pub(crate) fn is_connected(&self) -> bool {
        match self {
            Engine::JetStream(outbox) => outbox.is_connected(),
            #[cfg(feature = "outbox-kafka")]
            Engine::Kafka(outbox) => outbox.is_connected(),
        }
    }

    /// The delivery role for `sinks`.
    pub(crate) fn deliverer(
        &self,
        settings: &OutboxSettings,
        sinks: Vec<(String, Arc<dyn Sink>)>,
    ) -> Result<EngineDeliverer, String> {
        let error = |e: OutboxError| e.to_string();
        match self {
            Engine::JetStream(outbox) => {
                let mut builder = Deliverer::builder(outbox.clone()).ack_wait(settings.ack_wait);
                for (name, sink) in sinks {
                    builder = builder.sink(name, sink);
                }
                builder
                    .build()
                    .map(EngineDeliverer::JetStream)
                    .map_err(error)
            }
            #[cfg(feature = "outbox-kafka")]
            Engine::Kafka(outbox) => {
                let mut builder =
                    KafkaDeliverer::builder(outbox.clone()).session_timeout(settings.ack_wait);
                for (name, sink) in sinks {
                    builder = builder.sink(name, sink);
                }
                builder.build().map(EngineDeliverer::Kafka).map_err(error)
            }
        }
    }

    /// The dead letters' operator view.
    pub(crate) fn dead_letters(&self) -> DeadLetters {
        match self {
            Engine::JetStream(outbox) => {
                DeadLetters::JetStream(DeadLetterStream::new(outbox.clone()))
            }
            #[cfg(feature = "outbox-kafka")]
            Engine::Kafka(outbox) => DeadLetters::Kafka(KafkaDeadLetters::new(outbox.clone())),
        }
    }

    /// Delivers again what the log retains and `selection` takes.
    async fn replay(
        &self,
        sinks: &[(Arc<str>, Arc<dyn Sink>)],
        selection: &ReplaySelection,
        retry: &RetryPolicy,
    ) -> Result<ReplayReport, OutboxError> {
        match self {
            Engine::JetStream(outbox) => {
                crate::outbox::replay(outbox, sinks, selection, retry).await
            }
            #[cfg(feature = "outbox-kafka")]
            Engine::Kafka(outbox) => {
                crate::outbox::kafka::replay(outbox, sinks, selection, retry).await
            }
        }
    }
}

/// The delivery role, whichever engine runs it.
pub(crate) enum EngineDeliverer {
    JetStream(Deliverer),
    #[cfg(feature = "outbox-kafka")]
    Kafka(KafkaDeliverer),
}

impl fmt::Debug for EngineDeliverer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineDeliverer::JetStream(d) => d.fmt(f),
            #[cfg(feature = "outbox-kafka")]
            EngineDeliverer::Kafka(d) => d.fmt(f),
        }
    }
}

impl EngineDeliverer {
    /// Per sink, what it did so far.
    pub(crate) fn progress(&self) -> Arc<BTreeMap<Arc<str>, SinkProgress>> {
        match self {
            EngineDeliverer::JetStream(d) => d.progress(),
            #[cfg(feature = "outbox-kafka")]
            EngineDeliverer::Kafka(d) => d.progress(),
        }
    }

    /// Delivers until `shutdown` completes.
    pub(crate) async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        match self {
            EngineDeliverer::JetStream(d) => d.run(shutdown).await,
            #[cfg(feature = "outbox-kafka")]
            EngineDeliverer::Kafka(d) => d.run(shutdown).await,
        }
    }
}

/// The dead letters, whichever engine keeps them.
pub(crate) enum DeadLetters {
    JetStream(DeadLetterStream),
    #[cfg(feature = "outbox-kafka")]
    Kafka(KafkaDeadLetters),
}

impl DeadLetters {
    pub(crate) async fn list(
        &self,
        filter: &DeadLetterFilter,
        limit: usize,
    ) -> Result<Vec<OutboxDeadLetter>, OutboxError> {
        match self {
            DeadLetters::JetStream(d) => d.list(filter, limit).await,
            #[cfg(feature = "outbox-kafka")]
            DeadLetters::Kafka(d) => d.list(filter, limit).await,
        }
    }

    pub(crate) async fn redrive(
        &self,
        filter: &DeadLetterFilter,
    ) -> Result<BTreeMap<String, u64>, OutboxError> {
        match self {
            DeadLetters::JetStream(d) => d.redrive(filter).await,
            #[cfg(feature = "outbox-kafka")]
            DeadLetters::Kafka(d) => d.redrive(filter).await,
        }
    }

    pub(crate) async fn purge(
        &self,
        filter: &DeadLetterFilter,
    ) -> Result<BTreeMap<String, u64>, OutboxError> {
        match self {
            DeadLetters::JetStream(d) => d.purge(filter).await,
            #[cfg(feature = "outbox-kafka")]
            DeadLetters::Kafka(d) => d.purge(filter).await,
        }
    }
}

/// A URL without its user and password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://<redacted>@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// `s3tap deliver`: consumes the outbox for every `[[sinks]]` entry until
/// SIGTERM/SIGINT.
pub(super) async fn run_deliver(config: super::Config) -> Result<(), String> {
    let settings = config
        .outbox
        .as_ref()
        .ok_or("s3tap deliver needs an [outbox] section in --config")?;
    let region = config.region();
    let sinks = config.notify.build_sinks(&region).await?;
    if sinks.is_empty() {
        return Err("s3tap deliver: no [[sinks]] to deliver to".into());
    }
    let outbox = settings.connect().await?;
    let deliverer = outbox.deliverer(settings, sinks)?;
    let progress = deliverer.progress();
    tracing::info!(sinks = progress.len(), "s3tap deliver is running");
    deliverer.run(super::shutdown_signal()).await;
    for (sink, p) in progress.iter() {
        use std::sync::atomic::Ordering::Relaxed;
        tracing::info!(
            %sink,
            delivered = p.delivered.load(Relaxed),
            retried = p.retried.load(Relaxed),
            dead_lettered = p.dead_lettered.load(Relaxed),
            "s3tap deliver stopped"
        );
    }
    Ok(())
}

/// `s3tap replay`: delivers again what the log retains since `since`.
pub(super) async fn run_replay(
    config: super::Config,
    since: SystemTime,
    rule: Option<String>,
    sink: Option<String>,
) -> Result<ReplayReport, String> {
    let settings = config
        .outbox
        .as_ref()
        .ok_or("s3tap replay needs an [outbox] section in --config")?;
    let region = config.region();
    let mut sinks = config.notify.build_sinks(&region).await?;
    if let Some(only) = &sink {
        sinks.retain(|(name, _)| name == only);
        if sinks.is_empty() {
            return Err(format!("--sink {only}: no such sink in [[sinks]]"));
        }
    }
    let sinks: Vec<(Arc<str>, Arc<dyn Sink>)> = sinks
        .into_iter()
        .map(|(name, sink)| (Arc::from(name.as_str()), sink))
        .collect();
    let outbox = settings.connect().await?;
    let selection = ReplaySelection { since, rule, sink };
    outbox
        .replay(&sinks, &selection, &RetryPolicy::default())
        .await
        .map_err(|e| e.to_string())
}

/// Answers the admin API's dead-letter requests (method, path, query) from
/// the outbox's dead letters, through the admin API's own handling, so that
/// `s3tap dead-letters ...` acts on a fleet's dead letters as it does on a
/// proxy's, without a listener.
pub(super) async fn dead_letters_call(
    settings: &OutboxSettings,
    method: http::Method,
    path: &str,
    query: &[(&str, String)],
) -> Result<serde_json::Value, String> {
    let letters = super::admin::Letters::Outbox(settings.connect().await?.dead_letters());
    let selectors = query
        .iter()
        .map(|(name, value)| ((*name).to_owned(), value.clone()))
        .collect();
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(3).collect();
    match super::admin::dead_letters(&letters, &method, &segments, selectors).await {
        Some(answer) => answer.map_err(|error| error.message().to_owned()),
        None => Err(format!(
            "{path}: not available with [outbox]; a deliverer parks a sink that answered 410 until it is restarted"
        )),
    }
}

/// A dead letter as the admin API's JSON shows one.
pub(super) fn dead_letter_json(letter: &OutboxDeadLetter) -> serde_json::Value {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let mut json = serde_json::json!({
        "id": letter.event.id.as_str(),
        "sink": letter.sink,
        "seq": letter.seq,
        "attempts": letter.attempts,
        "reason": letter.reason,
        "dead_for_secs": now.saturating_sub(letter.dead_since_ms) / 1000,
        "bucket": letter.event.bucket,
        "key": letter.event.key,
        "event": letter.event,
    });
    if let Some(partition) = letter.partition {
        json["partition"] = partition.into();
    }
    json
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(url: &str) -> OutboxSection {
        toml::from_str(&format!("url = {url:?}")).unwrap()
    }

    #[test]
    fn urls_and_sink_names_are_checked() {
        assert!(OutboxSettings::resolve(section("nats://a:4222,nats://b:4222"), ["hook"]).is_ok());
        let kafka = OutboxSettings::resolve(section("kafka://k1:9092,kafka://k2:9092"), ["hook"]);
        if cfg!(feature = "outbox-kafka") {
            assert_eq!(kafka.unwrap().kind, EngineKind::Kafka);
            let once = OutboxSettings::resolve(section("kafka://k1:9092,k2:9092"), ["hook"]);
            assert_eq!(once.unwrap().kind, EngineKind::Kafka);
        } else {
            let refused = kafka.unwrap_err().to_string();
            assert!(refused.contains("outbox-kafka"), "{refused}");
        }
        let mixed = OutboxSettings::resolve(section("kafka://k:9092,nats://n:4222"), ["hook"]);
        assert!(mixed.is_err());
        let bad = OutboxSettings::resolve(section("http://u:secret@x"), ["hook"]).unwrap_err();
        assert!(!bad.to_string().contains("secret"), "{bad}");
        let dotted = OutboxSettings::resolve(section("nats://a:4222"), ["a.b"]).unwrap_err();
        assert!(dotted.to_string().contains("subject"), "{dotted}");
    }

    #[test]
    fn each_engine_refuses_the_others_keys() {
        let with = |url: &str, extra: &str| -> OutboxSection {
            toml::from_str(&format!("url = {url:?}\n{extra}")).unwrap()
        };
        let refused = OutboxSettings::resolve(with("nats://a:4222", "partitions = 6"), ["h"])
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains("partitions") && refused.contains("Kafka"),
            "{refused}"
        );
        if cfg!(feature = "outbox-kafka") {
            let refused =
                OutboxSettings::resolve(with("kafka://k:9092", "subject_prefix = \"a.b\""), ["h"])
                    .unwrap_err()
                    .to_string();
            assert!(refused.contains("subject_prefix"), "{refused}");
            let kafka = OutboxSettings::resolve(
                with(
                    "kafka://k:9092",
                    "stream = \"ev\"\npartitions = 6\nreplicas = 3\nconfig = { \"security.protocol\" = \"plaintext\" }",
                ),
                ["h"],
            )
            .unwrap();
            assert_eq!(kafka.partitions, Some(6));
            assert!(!format!("{kafka:?}").contains("plaintext"));
        }
    }

    #[test]
    fn defaults_commit_before_the_answer_and_do_not_deliver() {
        let settings = OutboxSettings::resolve(section("nats://a:4222"), ["hook"]).unwrap();
        assert!(settings.commit && !settings.deliver);
        assert_eq!(settings.commit_timeout, Duration::from_millis(500));
        assert_eq!(settings.readyz_max_buffer_fill, 0.5);
    }
}
