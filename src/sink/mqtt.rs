//! [`MqttSink`]: events published to an MQTT 3.1.1 broker at QoS 1, each
//! delivery waiting for the broker's `PUBACK`s.
//!
//! ```no_run
//! use s3tap::sink::MqttSink;
//!
//! # async fn run() -> Result<(), s3tap::sink::SinkBuildError> {
//! let sink = MqttSink::builder("127.0.0.1", 1883)
//!     .topic("s3/events")
//!     .connect()
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! Each event is one message at QoS 1 (at least once), not retained. MQTT
//! 3.1.1 has no message headers and no message id a consumer can see, so the
//! body must carry the id: the default format, CloudEvents structured JSON,
//! does (`id`), and consumers de-duplicate by it. CloudEvents *binary* mode
//! needs headers and is refused when the sink is built.
//!
//! # How acknowledgements are awaited
//!
//! The MQTT client ([`rumqttc`]) does its I/O in an event loop that must be
//! polled continuously; the sink runs it in a background task (stopped when
//! the sink is dropped). That task pairs each publish the loop sends (its
//! packet id) with the delivery waiting for it and completes the wait when
//! the `PUBACK` for that packet id arrives. `deliver` publishes the whole
//! batch, then waits for all the acks, at most for the sink's timeout.
//!
//! # Reconnection
//!
//! When the connection fails (broker stopped, network error, keep-alive
//! timeout), every delivery still waiting fails as
//! [`SinkError::Transient`], and the task connects again with backoff
//! (100 ms doubling up to 2 s), each time with a fresh client and a clean
//! session: publishes the broker never acknowledged are retried by the
//! dispatcher, not replayed by the client, so a packet id is never paired
//! with the wrong event. While there is no connection, `deliver` waits for
//! one up to its timeout, then fails as transient. The same sink keeps
//! working after a broker restart.
//!
//! # Throughput
//!
//! Mosquitto leaves Nagle's algorithm on for its clients unless configured
//! with `set_tcp_nodelay true`: then, after the first `PUBACK` of a batch,
//! the others wait for the client's delayed ACK, about 40 ms per batch
//! whatever its size (BENCHMARKS.md, "Sinks / Brokers"). The sink disables
//! Nagle on its own socket too; set the broker's option for batches to pay.
//!
//! A message larger than the packet size limit
//! ([`max_packet_size`](MqttSinkBuilder::max_packet_size), 1 MiB by default)
//! fails as [`SinkError::Permanent`] without being sent (sending it would
//! break the connection for every other event).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{
    AsyncClient, Event as MqttEvent, MqttOptions, NetworkOptions, Outgoing, Packet, QoS,
};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::broker::{broker_sink, Settings};
use super::{SinkBuildError, SinkError};
use crate::notify::format::{CloudEventsMode, Format};
use crate::notify::Event;

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Fixed header (up to 5 bytes), topic length prefix and packet id.
const PUBLISH_OVERHEAD: usize = 5 + 2 + 2;

/// The outcome of one publish, sent by the driver task.
type Ack = oneshot::Sender<Result<(), String>>;

/// One connection attempt's client and the deliveries queued on it.
struct Session {
    client: AsyncClient,
    /// One entry per publish handed to this session's client, in the order
    /// they were handed over (both under this lock); the driver pairs the
    /// front entry with the next packet id the event loop sends.
    queued: std::sync::Mutex<VecDeque<Ack>>,
}

/// A sink that publishes events to an MQTT broker at QoS 1. Built by
/// [`MqttSink::builder`] and [`connect`](MqttSinkBuilder::connect).
pub struct MqttSink {
    settings: Settings,
    topic: String,
    max_packet_size: usize,
    session: watch::Receiver<Option<Arc<Session>>>,
    last_error: Arc<std::sync::Mutex<Option<String>>>,
    driver: JoinHandle<()>,
}

impl fmt::Debug for MqttSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MqttSink")
            .field("settings", &self.settings)
            .field("topic", &self.topic)
            .field("connected", &self.session.borrow().is_some())
            .finish_non_exhaustive()
    }
}

impl Drop for MqttSink {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// Configures an [`MqttSink`]; [`connect`](Self::connect) it.
#[must_use = "a builder does nothing until connected"]
pub struct MqttSinkBuilder {
    settings: Settings,
    host: String,
    port: u16,
    client_id: Option<String>,
    credentials: Option<(String, String)>,
    topic: String,
    keep_alive: Duration,
    max_packet_size: usize,
}

impl fmt::Debug for MqttSinkBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MqttSinkBuilder")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("client_id", &self.client_id)
            .field("settings", &self.settings)
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl MqttSink {
    /// Starts building a sink for the broker at `host`:`port` (plain TCP).
    ///
    /// Defaults: topic `s3/events`, a client id `s3tap-<uuid>`, no
    /// credentials, CloudEvents structured JSON, 5 s timeout per `deliver`,
    /// 5 s keep-alive, batches of up to 100 events, 1 MiB packets.
    pub fn builder(host: impl Into<String>, port: u16) -> MqttSinkBuilder {
        MqttSinkBuilder {
            host: host.into(),
            port,
            client_id: None,
            credentials: None,
            settings: Settings::new("mqtt"),
            topic: "s3/events".into(),
            keep_alive: Duration::from_secs(5),
            max_packet_size: 1024 * 1024,
        }
    }

    /// Whether the sink has a connection to the broker right now.
    pub fn is_connected(&self) -> bool {
        self.session.borrow().is_some()
    }

    fn down(&self) -> SinkError {
        let last = self.last_error.lock().expect("not poisoned").clone();
        SinkError::transient(match last {
            Some(e) => format!("{}: not connected to the broker: {e}", self.settings.name),
            None => format!("{}: not connected to the broker yet", self.settings.name),
        })
    }

    async fn deliver_all(&self, batch: &[Event]) -> Vec<Result<(), SinkError>> {
        let mut waiting = self.session.clone();
        let session = match waiting.wait_for(Option::is_some).await {
            Ok(session) => session.clone().expect("waited for Some"),
            Err(_) => return vec![Err(self.down())],
        };
        let mut acks: Vec<Result<oneshot::Receiver<Result<(), String>>, SinkError>> =
            Vec::with_capacity(batch.len());
        for event in batch {
            let body = self.settings.encoder.encode_one(event);
            let size = body.body.len() + self.topic.len() + PUBLISH_OVERHEAD;
            if size > self.max_packet_size {
                acks.push(Err(SinkError::permanent(format!(
                    "{}: event {} is {size} bytes, over the {} byte packet limit",
                    self.settings.name, event.id, self.max_packet_size
                ))));
                continue;
            }
            let (tx, rx) = oneshot::channel();
            // The entry and the request are queued together, without an
            // await between them that a timeout could cut: a request
            // without its entry (or the reverse) would pair every later
            // packet id with the wrong delivery.
            let mut queued = session.queued.lock().expect("not poisoned");
            queued.push_back(tx);
            match session.client.try_publish(
                self.topic.as_str(),
                QoS::AtLeastOnce,
                false,
                body.body.to_vec(),
            ) {
                Ok(()) => acks.push(Ok(rx)),
                Err(e) => {
                    // Not queued, so never sent: withdraw the entry.
                    queued.pop_back();
                    acks.push(Err(SinkError::transient(format!(
                        "{}: publish: {e}",
                        self.settings.name
                    ))));
                }
            }
        }
        // Released before waiting: when the connection fails, the driver
        // drops its session, and entries it did not get to answer then fail
        // here instead of waiting out the timeout.
        drop(session);
        let mut outcomes = Vec::with_capacity(acks.len());
        for ack in acks {
            outcomes.push(match ack {
                Ok(rx) => match rx.await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(SinkError::transient(format!(
                        "{}: connection lost before PUBACK: {e}",
                        self.settings.name
                    ))),
                    Err(_) => Err(SinkError::transient(format!(
                        "{}: connection lost before PUBACK",
                        self.settings.name
                    ))),
                },
                Err(e) => Err(e),
            });
        }
        outcomes
    }
}

/// Runs the MQTT event loop for as long as the sink lives, reconnecting
/// with a fresh client after every failure.
async fn drive(
    options: MqttOptions,
    connect_timeout: Duration,
    capacity: usize,
    state: watch::Sender<Option<Arc<Session>>>,
    last_error: Arc<std::sync::Mutex<Option<String>>>,
) {
    let mut backoff = MIN_BACKOFF;
    loop {
        let (client, mut events) = AsyncClient::new(options.clone(), capacity);
        let mut network = NetworkOptions::new();
        network.set_connection_timeout(connect_timeout.as_secs().max(1));
        // A batch is many small PUBLISH packets written back to back: with
        // Nagle's algorithm each one after the first waits for the broker's
        // (delayed) ACK, 40 ms per batch on Linux.
        network.set_tcp_nodelay(true);
        events.set_network_options(network);
        let session = Arc::new(Session {
            client,
            queued: std::sync::Mutex::new(VecDeque::new()),
        });
        let mut inflight: HashMap<u16, Ack> = HashMap::new();
        let error = loop {
            match events.poll().await {
                Ok(MqttEvent::Incoming(Packet::ConnAck(_))) => {
                    // rumqttc turns a refused CONNACK into an error, so
                    // this one accepted us.
                    backoff = MIN_BACKOFF;
                    state.send_replace(Some(session.clone()));
                }
                Ok(MqttEvent::Outgoing(Outgoing::Publish(pkid))) => {
                    let next = session.queued.lock().expect("not poisoned").pop_front();
                    if let Some(ack) = next {
                        inflight.insert(pkid, ack);
                    }
                }
                Ok(MqttEvent::Incoming(Packet::PubAck(puback))) => {
                    if let Some(ack) = inflight.remove(&puback.pkid) {
                        let _ = ack.send(Ok(()));
                    }
                }
                Ok(_) => {}
                Err(e) => break e.to_string(),
            }
        };
        state.send_replace(None);
        tracing::debug!(error = %error, "mqtt sink: connection failed; reconnecting");
        let queued: Vec<Ack> = session
            .queued
            .lock()
            .expect("not poisoned")
            .drain(..)
            .collect();
        for ack in inflight.into_values().chain(queued) {
            let _ = ack.send(Err(error.clone()));
        }
        *last_error.lock().expect("not poisoned") = Some(error);
        drop(events);
        drop(session);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

impl MqttSinkBuilder {
    /// The topic to publish to (default `s3/events`). Wildcards (`+`, `#`)
    /// are not allowed in a topic one publishes to.
    pub fn topic(mut self, topic: impl Into<String>) -> Self {
        self.topic = topic.into();
        self
    }

    /// The client id (default `s3tap-<uuid>`, unique per sink: a broker
    /// disconnects an older client when a new one takes its id).
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.client_id = Some(id.into());
        self
    }

    /// A user name and password for the broker.
    pub fn credentials(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.credentials = Some((user.into(), password.into()));
        self
    }

    /// The keep-alive interval (default 5 s): how soon a silent broker is
    /// noticed.
    pub fn keep_alive(mut self, interval: Duration) -> Self {
        self.keep_alive = interval;
        self
    }

    /// The largest MQTT packet to send (default 1 MiB).
    pub fn max_packet_size(mut self, bytes: usize) -> Self {
        self.max_packet_size = bytes;
        self
    }

    async fn open(self) -> Result<MqttSink, SinkBuildError> {
        if let Format::CloudEvents {
            mode: CloudEventsMode::Binary(_),
        } = self.settings.encoder.format
        {
            return Err(SinkBuildError::InvalidSetting {
                key: "format".to_owned(),
                reason: format!(
                    "{}: CloudEvents binary mode needs message headers, which MQTT 3.1.1 does not have",
                    self.settings.name
                ),
            });
        }
        if self.topic.is_empty() || self.topic.contains(['+', '#', '\0']) {
            return Err(SinkBuildError::InvalidSetting {
                key: "topic".to_owned(),
                reason: format!(
                    "{}: {:?} is not a topic one can publish to",
                    self.settings.name, self.topic
                ),
            });
        }
        let client_id = self
            .client_id
            .clone()
            .unwrap_or_else(|| format!("s3tap-{}", uuid::Uuid::now_v7().simple()));
        let mut options = MqttOptions::new(client_id, self.host.clone(), self.port);
        options
            .set_keep_alive(self.keep_alive)
            .set_clean_session(true)
            .set_inflight(self.settings.max_batch.min(u16::MAX as usize) as u16)
            .set_max_packet_size(self.max_packet_size, self.max_packet_size);
        if let Some((user, password)) = &self.credentials {
            options.set_credentials(user.clone(), password.clone());
        }
        let (state, session) = watch::channel(None);
        let last_error = Arc::new(std::sync::Mutex::new(None));
        // Room for a full batch, plus one a timed-out delivery left behind.
        let driver = tokio::spawn(drive(
            options,
            self.settings.timeout,
            2 * self.settings.max_batch,
            state,
            last_error.clone(),
        ));
        let sink = MqttSink {
            settings: self.settings,
            topic: self.topic,
            max_packet_size: self.max_packet_size,
            session,
            last_error,
            driver,
        };
        let mut connected = sink.session.clone();
        let up = tokio::time::timeout(sink.settings.timeout, connected.wait_for(Option::is_some))
            .await
            .is_ok_and(|r| r.is_ok());
        if up {
            Ok(sink)
        } else {
            Err(sink.down().into())
        }
    }
}

broker_sink!(
    MqttSink,
    MqttSinkBuilder,
    timeout: "The longest a `deliver` may take, waiting for a connection and the acks included (default 5 s); also the connect timeout.",
    max_batch: "The largest batch the dispatcher hands over (default 100; at most 65535, the number of MQTT packet ids).",
    u16::MAX as usize,
    connect: "Connects (waits for the CONNACK). A broker that cannot be reached within the timeout is [`SinkBuildError::Connect`] with a transient [`SinkError`]; a topic one cannot publish to or a format MQTT cannot carry (CloudEvents binary mode needs headers MQTT 3.1.1 lacks) is [`SinkBuildError::InvalidSetting`].",
);
