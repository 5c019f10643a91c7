//! [`RabbitMqSink`]: events published to a RabbitMQ exchange (AMQP 0-9-1)
//! as persistent messages, each one confirmed by the broker.
//!
//! ```no_run
//! use s3tap::sink::RabbitMqSink;
//!
//! # async fn run() -> Result<(), s3tap::sink::SinkBuildError> {
//! let sink = RabbitMqSink::builder("amqp://guest:guest@127.0.0.1:5672/%2f")
//!     .exchange("s3")
//!     .routing_key("s3.events")
//!     .connect()
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! The channel is in confirm mode (publisher confirms): `Ok` means the
//! broker took responsibility for every message of the batch (for a durable
//! queue, wrote it to disk). Each message is one event with
//!
//! - `delivery_mode` 2 (persistent: survives a broker restart in a durable
//!   queue);
//! - `message_id` = the event id, for consumers to de-duplicate by (RabbitMQ
//!   itself does not de-duplicate: a batch retried after a lost confirm is
//!   queued twice);
//! - `content_type` = the format's media type, `timestamp` = the event time
//!   (seconds), `type` = the S3 event name (`ObjectCreated:Put`, ...),
//!   `app_id` = `s3tap`, and the format's headers (CloudEvents binary mode)
//!   in `headers`.
//!
//! Messages are published `mandatory`: a message no queue is bound to
//! receive comes back, and the sink reports it as transient (5-second
//! `retry_after`) rather than letting the broker drop it. The exchange is
//! not declared by the sink (operators own its type and bindings).
//!
//! Errors:
//! - a nack, a lost or refused connection, a closed channel, a timeout:
//!   [`SinkError::Transient`]. The connection is dropped and the next
//!   `deliver` opens a new one (connection, channel, confirm mode), so the
//!   same sink keeps working after a broker restart.
//! - exchange missing (`404 NOT_FOUND`), unroutable message: transient with
//!   a 5-second `retry_after` (an operator has to act; events wait in the
//!   spool).
//! - `403 ACCESS_REFUSED` (credentials, permissions) and `311
//!   CONTENT_TOO_LARGE`: [`SinkError::Permanent`].

use std::fmt;
use std::time::UNIX_EPOCH;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use tokio::sync::Mutex;

use super::broker::{self, broker_sink, Settings};
use super::{SinkBuildError, SinkError};
use crate::notify::Event;

/// A sink that publishes events to a RabbitMQ exchange with publisher
/// confirms. Built by [`RabbitMqSink::builder`] and [`connect`](RabbitMqSinkBuilder::connect).
pub struct RabbitMqSink {
    settings: Settings,
    url: String,
    exchange: String,
    routing_key: String,
    /// The open connection and confirm-mode channel, `None` after a failure
    /// (reopened by the next delivery). The lock also serializes deliveries,
    /// which keeps each batch's confirms together on the one channel.
    link: Mutex<Option<Link>>,
}

struct Link {
    // Kept so the connection lives as long as the channel.
    connection: Connection,
    channel: Channel,
}

impl Link {
    fn usable(&self) -> bool {
        self.connection.status().connected() && self.channel.status().connected()
    }
}

impl fmt::Debug for RabbitMqSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL carries the password: not printed.
        f.debug_struct("RabbitMqSink")
            .field("settings", &self.settings)
            .field("exchange", &self.exchange)
            .field("routing_key", &self.routing_key)
            .finish_non_exhaustive()
    }
}

/// Configures a [`RabbitMqSink`]; [`connect`](Self::connect) it.
#[must_use = "a builder does nothing until connected"]
pub struct RabbitMqSinkBuilder {
    settings: Settings,
    url: String,
    exchange: String,
    routing_key: String,
}

impl fmt::Debug for RabbitMqSinkBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabbitMqSinkBuilder")
            .field("settings", &self.settings)
            .field("exchange", &self.exchange)
            .field("routing_key", &self.routing_key)
            .finish_non_exhaustive()
    }
}

impl RabbitMqSink {
    /// Starts building a sink for the broker at `url`
    /// (`amqp://user:password@host:port/vhost`, the default vhost being
    /// `%2f`; `amqps://` uses rustls).
    ///
    /// Defaults: exchange `s3`, routing key `s3.events`, CloudEvents
    /// structured JSON, 5 s timeout per `deliver` (connecting included),
    /// batches of up to 100 events.
    pub fn builder(url: impl Into<String>) -> RabbitMqSinkBuilder {
        RabbitMqSinkBuilder {
            url: url.into(),
            settings: Settings::new("rabbitmq"),
            exchange: "s3".into(),
            routing_key: "s3.events".into(),
        }
    }

    async fn open(&self) -> Result<Link, SinkError> {
        let connection = Connection::connect(&self.url, ConnectionProperties::default())
            .await
            .map_err(|e| self.classify("connect", e))?;
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| self.classify("open channel", e))?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| self.classify("confirm.select", e))?;
        Ok(Link {
            connection,
            channel,
        })
    }

    fn properties(
        &self,
        event: &Event,
        content_type: &str,
        headers: &[(String, String)],
    ) -> BasicProperties {
        let mut properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_message_id(ShortString::from(event.id.as_str()))
            .with_content_type(ShortString::from(content_type))
            .with_type(ShortString::from(event.s3_or_s3tap_name()))
            .with_app_id(ShortString::from("s3tap"))
            .with_timestamp(
                event
                    .time
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0),
            );
        if !headers.is_empty() {
            let mut table = FieldTable::default();
            for (name, value) in headers {
                table.insert(
                    ShortString::from(name.as_str()),
                    AMQPValue::LongString(LongString::from(value.as_str())),
                );
            }
            properties = properties.with_headers(table);
        }
        properties
    }

    async fn deliver_all(&self, batch: &[Event]) -> Vec<Result<(), SinkError>> {
        let mut slot = self.link.lock().await;
        // Taken out for the delivery and put back only when the channel is
        // still sound: a timeout (this future dropped) or a broken
        // connection leaves `None`, and the next delivery reconnects.
        let link = match slot.take().filter(Link::usable) {
            Some(link) => link,
            None => match self.open().await {
                Ok(link) => link,
                Err(e) => return vec![Err(e)],
            },
        };
        let options = BasicPublishOptions {
            mandatory: true,
            immediate: false,
        };
        let mut confirms = Vec::with_capacity(batch.len());
        for event in batch {
            let body = self.settings.encoder.encode_one(event);
            let properties = self.properties(event, body.content_type, &body.headers);
            let published = link
                .channel
                .basic_publish(
                    ShortString::from(self.exchange.as_str()),
                    ShortString::from(self.routing_key.as_str()),
                    options,
                    &body.body,
                    properties,
                )
                .await;
            confirms.push(published);
        }
        let mut outcomes = Vec::with_capacity(confirms.len());
        for published in confirms {
            let outcome = match published {
                Ok(confirm) => match confirm.await {
                    Ok(Confirmation::Ack(None)) | Ok(Confirmation::NotRequested) => Ok(()),
                    Ok(Confirmation::Ack(Some(returned))) => Err(broker::misconfigured(format!(
                        "{}: unroutable: exchange {:?} has no queue bound for routing key {:?} ({} {})",
                        self.settings.name,
                        self.exchange,
                        self.routing_key,
                        returned.reply_code,
                        returned.reply_text
                    ))),
                    Ok(Confirmation::Nack(_)) => Err(SinkError::transient(format!(
                        "{}: the broker nacked the message",
                        self.settings.name
                    ))),
                    Err(e) => Err(self.classify("publisher confirm", e)),
                },
                Err(e) => Err(self.classify("basic.publish", e)),
            };
            outcomes.push(outcome);
        }
        if link.usable() {
            *slot = Some(link);
        }
        outcomes
    }

    fn classify(&self, what: &str, error: lapin::Error) -> SinkError {
        let message = format!("{}: {what}: {error}", self.settings.name);
        match error.kind() {
            lapin::ErrorKind::ProtocolError(amqp) => match amqp.get_id() {
                404 => broker::misconfigured(message),
                403 | 311 => SinkError::permanent(message),
                _ => SinkError::transient(message),
            },
            _ => SinkError::transient(message),
        }
    }
}

impl RabbitMqSinkBuilder {
    /// The exchange to publish to (default `s3`; `""` is the default
    /// exchange, which routes by queue name).
    pub fn exchange(mut self, exchange: impl Into<String>) -> Self {
        self.exchange = exchange.into();
        self
    }

    /// The routing key of every message (default `s3.events`).
    pub fn routing_key(mut self, key: impl Into<String>) -> Self {
        self.routing_key = key.into();
        self
    }

    async fn open(self) -> Result<RabbitMqSink, SinkBuildError> {
        let sink = RabbitMqSink {
            settings: self.settings,
            url: self.url,
            exchange: self.exchange,
            routing_key: self.routing_key,
            link: Mutex::new(None),
        };
        let link = tokio::time::timeout(sink.settings.timeout, sink.open())
            .await
            .map_err(|_| {
                SinkError::transient(format!("{}: connect: timed out", sink.settings.name))
            })??;
        *sink.link.lock().await = Some(link);
        Ok(sink)
    }
}

broker_sink!(
    RabbitMqSink,
    RabbitMqSinkBuilder,
    timeout: "The longest a `deliver` may take, reconnecting and confirms included (default 5 s); also the connect timeout.",
    max_batch: "The largest batch the dispatcher hands over (default 100).",
    usize::MAX,
    connect: "Connects and opens a confirm-mode channel. A broker that cannot be reached now is [`SinkBuildError::Connect`] with a transient [`SinkError`]; refused credentials, with a permanent one.",
);
