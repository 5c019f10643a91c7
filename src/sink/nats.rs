//! [`NatsSink`]: events into a NATS JetStream stream, each publish awaited
//! until the stream acknowledges it, de-duplicated by event id.
//!
//! ```no_run
//! use s3tap::sink::NatsSink;
//!
//! # async fn run() -> Result<(), s3tap::sink::SinkBuildError> {
//! let sink = NatsSink::builder("nats://127.0.0.1:4222")
//!     .subject("s3.events")
//!     .connect()
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! Each event is one message on the subject (or `<subject>.<rule>` with
//! [`subject_per_rule`](NatsSinkBuilder::subject_per_rule)), published
//! through JetStream: the sink waits for the stream's `PubAck`, so `Ok` means
//! the stream stored the message. The header `Nats-Msg-Id` carries the event
//! id, so the server drops a redelivered event within the stream's
//! duplicate window (`duplicate_window`, 2 minutes by default): a retry after
//! a timed-out ack stores nothing twice. Past the window, consumers
//! de-duplicate by the id (in the header, and in the CloudEvents body).
//!
//! The stream is not created by the sink: operators own its retention,
//! replicas and limits. It must capture the subject (`s3.events`, or
//! `s3.events.>` with per-rule subjects).
//!
//! Errors:
//! - no connection, a publish or ack timeout, a broken connection:
//!   [`SinkError::Transient`]. The client reconnects by itself in the
//!   background; the next `deliver` after the server is back goes through
//!   on the same sink.
//! - `no responders` (no stream captures the subject): **transient**, with a
//!   5-second `retry_after`. Right after a server restart JetStream answers
//!   this way until it has recovered its streams, and a stream created late
//!   by an operator should receive the events waiting in the spool rather
//!   than have them dead-lettered. A stream that never appears shows as a
//!   sink that keeps retrying (logged by the dispatcher).
//! - a message larger than the server's `max_payload`:
//!   [`SinkError::Permanent`] (it will never fit).

use std::fmt;

use async_nats::jetstream::context::{PublishAckFuture, PublishError, PublishErrorKind};
use async_nats::{ConnectOptions, HeaderMap};

use super::broker::{self, broker_sink, Settings};
use super::{SinkBuildError, SinkError};
use crate::notify::Event;

/// A sink that publishes events to a NATS JetStream stream. Built by
/// [`NatsSink::builder`] and [`connect`](NatsSinkBuilder::connect).
pub struct NatsSink {
    settings: Settings,
    client: async_nats::Client,
    jetstream: async_nats::jetstream::Context,
    subject: String,
    per_rule: bool,
}

impl fmt::Debug for NatsSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsSink")
            .field("settings", &self.settings)
            .field("subject", &self.subject)
            .field("per_rule", &self.per_rule)
            .field("connection", &self.client.connection_state())
            .finish()
    }
}

/// Configures a [`NatsSink`]; [`connect`](Self::connect) it.
#[must_use = "a builder does nothing until connected"]
pub struct NatsSinkBuilder {
    settings: Settings,
    url: String,
    options: Option<ConnectOptions>,
    subject: String,
    per_rule: bool,
}

impl fmt::Debug for NatsSinkBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may carry a user and password: not printed.
        f.debug_struct("NatsSinkBuilder")
            .field("settings", &self.settings)
            .field("subject", &self.subject)
            .field("per_rule", &self.per_rule)
            .finish_non_exhaustive()
    }
}

impl NatsSink {
    /// Starts building a sink for the NATS server(s) at `url`
    /// (`nats://host:port`, several separated by commas).
    ///
    /// Defaults: subject `s3.events`, CloudEvents structured JSON, 5 s
    /// timeout per `deliver`, batches of up to 100 events.
    pub fn builder(url: impl Into<String>) -> NatsSinkBuilder {
        NatsSinkBuilder {
            url: url.into(),
            options: None,
            settings: Settings::new("nats"),
            subject: "s3.events".into(),
            per_rule: false,
        }
    }

    /// The subject an event is published to.
    pub fn subject_for(&self, event: &Event) -> String {
        match (&event.matched_rule, self.per_rule) {
            (Some(rule), true) => format!("{}.{}", self.subject, subject_token(rule)),
            _ => self.subject.clone(),
        }
    }

    async fn deliver_all(&self, batch: &[Event]) -> Vec<Result<(), SinkError>> {
        // Publish everything first, then collect the acks: the publishes
        // are pipelined on the connection instead of one round trip each.
        let mut pending: Vec<Result<PublishAckFuture, SinkError>> = Vec::with_capacity(batch.len());
        for event in batch {
            let body = self.settings.encoder.encode_one(event);
            let mut headers = HeaderMap::new();
            headers.insert(async_nats::header::NATS_MESSAGE_ID, event.id.as_str());
            headers.insert("Content-Type", body.content_type);
            for (name, value) in &body.headers {
                headers.insert(name.as_str(), value.as_str());
            }
            let published = self
                .jetstream
                .publish_with_headers(self.subject_for(event), headers, body.body)
                .await
                .map_err(|e| self.classify(e));
            pending.push(published);
        }
        let mut outcomes = Vec::with_capacity(pending.len());
        for published in pending {
            outcomes.push(match published {
                Ok(ack) => ack.await.map(drop).map_err(|e| self.classify(e)),
                Err(e) => Err(e),
            });
        }
        outcomes
    }

    fn classify(&self, error: PublishError) -> SinkError {
        let message = format!(
            "{}: publish to {}: {error}",
            self.settings.name, self.subject
        );
        match error.kind() {
            PublishErrorKind::StreamNotFound => broker::misconfigured(format!(
                "{message} (no stream captures the subject, or JetStream is not ready yet)"
            )),
            PublishErrorKind::MaxPayloadExceeded => SinkError::permanent(message),
            _ => SinkError::transient(message),
        }
    }
}

/// A rule name as one subject token: NATS separates tokens with `.` and
/// reserves `*` and `>` as wildcards; whitespace is not allowed.
fn subject_token(rule: &str) -> String {
    let token: String = rule
        .chars()
        .map(|c| match c {
            '.' | '*' | '>' => '_',
            c if c.is_whitespace() || c.is_control() => '_',
            c => c,
        })
        .collect();
    if token.is_empty() {
        "_".into()
    } else {
        token
    }
}

impl NatsSinkBuilder {
    /// The subject to publish to (default `s3.events`).
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = subject.into();
        self
    }

    /// Publishes an event that matched a rule to `<subject>.<rule>` (the
    /// rule name with `.`, `*`, `>` and whitespace replaced by `_`), so
    /// consumers can filter by rule; events without a rule keep the plain
    /// subject. The stream must then capture `<subject>.>` too.
    pub fn subject_per_rule(mut self) -> Self {
        self.per_rule = true;
        self
    }

    /// Connection options (credentials, TLS, client name, ...). Reconnection
    /// is always left on.
    pub fn options(mut self, options: ConnectOptions) -> Self {
        self.options = Some(options);
        self
    }

    async fn open(self) -> Result<NatsSink, SinkBuildError> {
        let options = self
            .options
            .unwrap_or_default()
            .connection_timeout(self.settings.timeout)
            .request_timeout(Some(self.settings.timeout))
            // Never give up reconnecting: the sink outlives broker restarts.
            .max_reconnects(None);
        let client = options
            .connect(crate::nats::nats_servers(&self.url).as_slice())
            .await
            .map_err(|e| {
                use async_nats::ConnectErrorKind as K;
                let message = format!("{}: connect: {e}", self.settings.name);
                match e.kind() {
                    K::ServerParse | K::Authentication | K::AuthorizationViolation | K::Tls => {
                        SinkError::permanent(message)
                    }
                    _ => SinkError::transient(message),
                }
            })?;
        let mut jetstream = async_nats::jetstream::new(client.clone());
        jetstream.set_timeout(self.settings.timeout);
        Ok(NatsSink {
            settings: self.settings,
            client,
            jetstream,
            subject: self.subject,
            per_rule: self.per_rule,
        })
    }
}

broker_sink!(
    NatsSink,
    NatsSinkBuilder,
    timeout: "The longest a `deliver` may take, acks included (default 5 s); also the JetStream ack timeout and the connect timeout.",
    max_batch: "The largest batch the dispatcher hands over (default 100).",
    usize::MAX,
    connect: "Connects. A server that cannot be reached now is [`SinkBuildError::Connect`] with a transient [`SinkError`]; a malformed URL or refused credentials, with a permanent one.",
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_names_become_one_token() {
        assert_eq!(subject_token("images"), "images");
        assert_eq!(subject_token("a.b*c>d e"), "a_b_c_d_e");
        assert_eq!(subject_token(""), "_");
    }
}
