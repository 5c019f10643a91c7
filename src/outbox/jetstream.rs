//! [`JetStreamOutbox`]: the connection to the stream every proxy of a fleet
//! publishes to, the streams it creates when missing, the publish the
//! commit waits for, and [`OutboxSink`], the dispatcher's write-behind
//! route to the same stream.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::context::{PublishAckFuture, PublishError, PublishErrorKind};
use async_nats::jetstream::{self, stream};
use async_nats::ConnectOptions;

use super::message::{is_subject_token, OutboxMessage};
use super::OutboxError;
use crate::notify::{Event, Outbox};
use crate::sink::{BoxFuture, Sink, SinkError};

/// The outbox on NATS JetStream. Cheap to clone: clones share the
/// connection. See the [module docs](super).
///
/// ```no_run
/// use std::time::Duration;
/// use s3tap::outbox::JetStreamOutbox;
///
/// # async fn run() -> Result<(), s3tap::outbox::OutboxError> {
/// let outbox = JetStreamOutbox::builder("nats://n1:4222,nats://n2:4222,nats://n3:4222")
///     .replicas(3)
///     .max_age(Duration::from_secs(7 * 24 * 3600))
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct JetStreamOutbox {
    pub(super) shared: Arc<Shared>,
}

pub(super) struct Shared {
    pub(super) client: async_nats::Client,
    pub(super) jetstream: jetstream::Context,
    pub(super) settings: Settings,
    /// Both streams exist (checked or created since the connection).
    streams_ready: AtomicBool,
    ensure_lock: tokio::sync::Mutex<()>,
    /// The last publish failed and none succeeded since.
    degraded: AtomicBool,
}

/// What the builder sets; read by the deliverer and replay too.
#[derive(Clone, Debug)]
pub(super) struct Settings {
    pub(super) stream: String,
    pub(super) subject_prefix: String,
    pub(super) dead_stream: String,
    pub(super) dead_subject_prefix: String,
    pub(super) replicas: usize,
    pub(super) max_age: Duration,
    pub(super) max_bytes: Option<i64>,
    pub(super) duplicate_window: Duration,
    pub(super) timeout: Duration,
}

impl fmt::Debug for JetStreamOutbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JetStreamOutbox")
            .field("settings", &self.shared.settings)
            .field("connection", &self.shared.client.connection_state())
            .field("degraded", &self.is_degraded())
            .finish()
    }
}

/// Configures a [`JetStreamOutbox`]; [`connect`](Self::connect) it.
#[must_use = "a builder does nothing until connected"]
pub struct JetStreamOutboxBuilder {
    url: String,
    options: Option<ConnectOptions>,
    settings: Settings,
}

impl fmt::Debug for JetStreamOutboxBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may carry a user and password: not printed.
        f.debug_struct("JetStreamOutboxBuilder")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl JetStreamOutbox {
    /// Starts building an outbox on the NATS server(s) at `url`
    /// (`nats://host:port`, several separated by commas: give every node of
    /// the cluster, the client fails over between them).
    ///
    /// Defaults: stream `S3TAP_EVENTS` on subjects `s3tap.events.>`, dead
    /// letters in `S3TAP_DEAD_LETTERS` on `s3tap.dead.>`, 1 replica, kept 7
    /// days, no size limit, duplicate window 2 minutes, 5 s timeout for
    /// JetStream requests.
    pub fn builder(url: impl Into<String>) -> JetStreamOutboxBuilder {
        JetStreamOutboxBuilder {
            url: url.into(),
            options: None,
            settings: Settings {
                stream: "S3TAP_EVENTS".into(),
                subject_prefix: "s3tap.events".into(),
                dead_stream: "S3TAP_DEAD_LETTERS".into(),
                dead_subject_prefix: "s3tap.dead".into(),
                replicas: 1,
                max_age: Duration::from_secs(7 * 24 * 3600),
                max_bytes: None,
                duplicate_window: Duration::from_secs(120),
                timeout: Duration::from_secs(5),
            },
        }
    }

    /// Whether the client is connected to a server now.
    pub fn is_connected(&self) -> bool {
        self.shared.client.connection_state() == async_nats::connection::State::Connected
    }

    /// A route to the outbox for the dispatcher's sink named `sink`: the
    /// write-behind buffer of events a commit could not wait for, and the
    /// path of events no answer waits for (reads).
    pub fn sink(&self, sink: &str) -> Result<OutboxSink, OutboxError> {
        if !is_subject_token(sink) {
            return Err(OutboxError::Config(format!(
                "sink name {sink:?} cannot be a subject token: use letters, digits, '-' and '_'"
            )));
        }
        Ok(OutboxSink {
            outbox: self.clone(),
            name: format!("outbox:{sink}"),
            sink: Arc::from(sink),
        })
    }

    /// Creates the event and dead-letter streams if they are missing (an
    /// existing stream is used as it is: operators may have tuned it).
    pub async fn ensure_streams(&self) -> Result<(), OutboxError> {
        let shared = &*self.shared;
        if shared.streams_ready.load(Ordering::Acquire) {
            return Ok(());
        }
        let _guard = shared.ensure_lock.lock().await;
        if shared.streams_ready.load(Ordering::Acquire) {
            return Ok(());
        }
        let s = &shared.settings;
        for (name, prefix) in [
            (&s.stream, &s.subject_prefix),
            (&s.dead_stream, &s.dead_subject_prefix),
        ] {
            let config = stream::Config {
                name: name.clone(),
                subjects: vec![format!("{prefix}.>")],
                retention: stream::RetentionPolicy::Limits,
                storage: stream::StorageType::File,
                num_replicas: s.replicas,
                max_age: s.max_age,
                max_bytes: s.max_bytes.unwrap_or(-1),
                duplicate_window: s.duplicate_window.min(s.max_age),
                ..Default::default()
            };
            shared
                .jetstream
                .get_or_create_stream(config)
                .await
                .map_err(|e| OutboxError::engine(&format!("stream {name}"), e))?;
        }
        shared.streams_ready.store(true, Ordering::Release);
        Ok(())
    }

    /// Publishes `messages` and waits for every acknowledgement. The
    /// publishes go out back to back on the connection before the first
    /// ack is awaited, and publishes of concurrent callers share its
    /// writes: one round trip for a batch, a group commit for a crowd.
    pub(super) async fn publish_all(&self, messages: Vec<Prepared>) -> Result<(), SinkError> {
        let result = self.publish_inner(messages).await;
        self.shared
            .degraded
            .store(result.is_err(), Ordering::Relaxed);
        result
    }

    async fn publish_inner(&self, messages: Vec<Prepared>) -> Result<(), SinkError> {
        if let Err(error) = self.ensure_streams().await {
            return Err(SinkError::transient(error.to_string()));
        }
        let js = &self.shared.jetstream;
        let mut acks: Vec<PublishAckFuture> = Vec::with_capacity(messages.len());
        for message in messages {
            let ack = js
                .send_publish(
                    message.subject,
                    jetstream::message::PublishMessage::build()
                        .headers(message.headers)
                        .payload(message.payload),
                )
                .await
                .map_err(classify)?;
            acks.push(ack);
        }
        let mut first_error = None;
        for ack in acks {
            if let Err(error) = ack.await {
                first_error.get_or_insert(classify(error));
            }
        }
        match first_error {
            None => Ok(()),
            Some(error) => Err(error),
        }
    }

    pub(super) fn prepare(&self, message: &OutboxMessage) -> Prepared {
        Prepared {
            subject: message.subject(&self.shared.settings.subject_prefix),
            headers: message.headers(),
            payload: message.payload(),
        }
    }
}

/// A message ready to publish (built on the caller's thread, so that the
/// caller keeps its events and the publish owns only bytes).
#[derive(Debug)]
pub(super) struct Prepared {
    subject: String,
    headers: async_nats::HeaderMap,
    payload: bytes::Bytes,
}

fn classify(error: PublishError) -> SinkError {
    let message = format!("outbox publish: {error}");
    match error.kind() {
        PublishErrorKind::MaxPayloadExceeded => SinkError::permanent(message),
        // No stream yet (JetStream recovering after a restart), a timeout,
        // a lost connection: the spool keeps the events until it is back.
        PublishErrorKind::StreamNotFound => SinkError::Transient {
            message,
            retry_after: Some(Duration::from_secs(1)),
        },
        _ => SinkError::transient(message),
    }
}

impl JetStreamOutboxBuilder {
    /// The stream's name (default `S3TAP_EVENTS`).
    pub fn stream(mut self, name: impl Into<String>) -> Self {
        self.settings.stream = name.into();
        self
    }

    /// The subjects' prefix (default `s3tap.events`): messages go to
    /// `<prefix>.<sink>.<shard>`.
    pub fn subject_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.settings.subject_prefix = prefix.into();
        self
    }

    /// The dead-letter stream and its subjects' prefix (default
    /// `S3TAP_DEAD_LETTERS` on `s3tap.dead`).
    pub fn dead_letters(mut self, stream: impl Into<String>, prefix: impl Into<String>) -> Self {
        self.settings.dead_stream = stream.into();
        self.settings.dead_subject_prefix = prefix.into();
        self
    }

    /// Replicas of the streams it creates (1 to 5; 3 for a fleet that
    /// survives a node).
    pub fn replicas(mut self, replicas: usize) -> Self {
        self.settings.replicas = replicas;
        self
    }

    /// How long the streams it creates keep messages (default 7 days): how
    /// far back a replay reaches.
    pub fn max_age(mut self, age: Duration) -> Self {
        self.settings.max_age = age;
        self
    }

    /// The most bytes the streams it creates keep (oldest dropped first).
    pub fn max_bytes(mut self, bytes: i64) -> Self {
        self.settings.max_bytes = Some(bytes);
        self
    }

    /// The streams' de-duplication window (default 2 minutes).
    pub fn duplicate_window(mut self, window: Duration) -> Self {
        self.settings.duplicate_window = window;
        self
    }

    /// Timeout of JetStream requests and acknowledgements (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.settings.timeout = timeout;
        self
    }

    /// Connection options (credentials, TLS, ...). Reconnection is always
    /// left on.
    pub fn options(mut self, options: ConnectOptions) -> Self {
        self.options = Some(options);
        self
    }

    /// Connects. A cluster that cannot be reached now is not an error: the
    /// client keeps trying in the background and the streams are created
    /// at the first publish that gets through (until then the local spool
    /// holds the events). A malformed URL or bad settings are.
    pub async fn connect(self) -> Result<JetStreamOutbox, OutboxError> {
        let s = &self.settings;
        for (what, prefix) in [
            ("subject prefix", &s.subject_prefix),
            ("dead-letter subject prefix", &s.dead_subject_prefix),
        ] {
            if prefix.is_empty() || !prefix.split('.').all(is_subject_token) {
                return Err(OutboxError::Config(format!(
                    "{what} {prefix:?}: expected dot-separated tokens of letters, digits, '-' and '_'"
                )));
            }
        }
        if s.subject_prefix == s.dead_subject_prefix {
            return Err(OutboxError::Config(
                "the events and the dead letters need different subject prefixes".into(),
            ));
        }
        if !(1..=5).contains(&s.replicas) {
            return Err(OutboxError::Config(format!(
                "replicas = {}: JetStream allows 1 to 5",
                s.replicas
            )));
        }
        let client = self
            .options
            .unwrap_or_default()
            .connection_timeout(s.timeout)
            .request_timeout(Some(s.timeout))
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connect(crate::nats::nats_servers(&self.url).as_slice())
            .await
            .map_err(|e| OutboxError::Config(format!("connect: {e}")))?;
        let mut jetstream = jetstream::new(client.clone());
        jetstream.set_timeout(s.timeout);
        let outbox = JetStreamOutbox {
            shared: Arc::new(Shared {
                client,
                jetstream,
                settings: self.settings,
                streams_ready: AtomicBool::new(false),
                ensure_lock: tokio::sync::Mutex::new(()),
                degraded: AtomicBool::new(false),
            }),
        };
        let timeout = outbox.shared.settings.timeout;
        match tokio::time::timeout(timeout, outbox.ensure_streams()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::warn!(%error, "outbox streams not ready yet: events wait in the local spool")
            }
            Err(_) => tracing::warn!(
                "outbox not reachable yet: events wait in the local spool until it is"
            ),
        }
        Ok(outbox)
    }
}

impl Outbox for JetStreamOutbox {
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
        Box::pin(async move { outbox.publish_all(prepared).await })
    }

    fn is_degraded(&self) -> bool {
        self.shared.degraded.load(Ordering::Relaxed) || !self.is_connected()
    }
}

/// The dispatcher's sink for one of the fleet's sinks: it publishes to the
/// outbox instead of delivering, so the local spool holds events only while
/// the outbox is away. Made by [`JetStreamOutbox::sink`].
pub struct OutboxSink {
    outbox: JetStreamOutbox,
    name: String,
    sink: Arc<str>,
}

impl fmt::Debug for OutboxSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboxSink")
            .field("sink", &self.sink)
            .finish_non_exhaustive()
    }
}

impl Sink for OutboxSink {
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
