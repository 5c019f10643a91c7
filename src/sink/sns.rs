//! [`SnsSink`] and [`SqsSink`]: events to an SNS topic or an SQS queue over
//! the AWS query protocol, signed with the crate's own SigV4 signer (feature
//! `sink-sns`).
//!
//! (Over 800 lines: the two sinks share one signer, one batch encoding and
//! one reading of the query protocol's answers, and differ only in the
//! action they call; with their unit tests they stay one file.)
//!
//! One event is one message. Its body is the event encoded by the sink's
//! [`Encoder`] (by default S3's event records, `{"Records":[...]}`, what S3
//! itself publishes to SNS and SQS), and it carries String message
//! attributes for filter policies and consumers: `eventId` (the id to
//! de-duplicate on, whatever the body format), `eventName` (S3's name, e.g.
//! `ObjectCreated:Put`), `bucket` and `key` (when the event has them), plus
//! the `ce_*` attributes in CloudEvents binary mode (ten in all, SQS's
//! limit).
//!
//! Messages go out in batches (`PublishBatch`, `SendMessageBatch`) of at most
//! 10 entries and 256 KiB in all, split at whichever limit comes first; a
//! batch of one is a plain `Publish` or `SendMessage`. An event whose
//! message alone exceeds 256 KiB is refused permanently. The entry ids of a
//! batch derive from the event ids.
//!
//! FIFO topics and queues (names ending in `.fifo`) get `MessageGroupId` =
//! `bucket/key`, so the events of one object stay in order, and
//! `MessageDeduplicationId` = the event id, so a redelivery within SNS's or
//! SQS's five-minute window is dropped by AWS. Ids that are too long or
//! hold characters AWS does not allow there are replaced by their SHA-256.
//! Batches for a FIFO target are sent one after the other, and a transient
//! failure stops the rest of the dispatcher's batch, so no message
//! overtakes one that will be retried.
//!
//! Answers are sorted into [`SinkError`]s: refused credentials or signature
//! (`SignatureDoesNotMatch`, `InvalidClientTokenId`, ...) are permanent, with
//! a message naming the code, and logged; throttling, 429 and 5xx are
//! transient (honouring `Retry-After`); other 4xx are permanent. Entries a
//! batch answer lists as failed come back as [`SinkError::Partial`]:
//! permanent when AWS blames the sender (`SenderFault`), transient
//! otherwise.
//!
//! ```no_run
//! use s3tap::credentials::UpstreamCredentials;
//! use s3tap::sink::SnsSink;
//!
//! # fn main() -> Result<(), s3tap::sink::SinkBuildError> {
//! let sink = SnsSink::builder(
//!     "arn:aws:sns:eu-west-1:123456789012:s3-events",
//!     "eu-west-1",
//!     UpstreamCredentials::new("AKIA...", "secret"),
//! )
//! .build()?;
//! # let _ = sink;
//! # Ok(())
//! # }
//! ```

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::Duration;

use futures_util::future::join_all;
use http::Uri;
use sha2::{Digest, Sha256};

use super::aws_query::{push_param, Element, QueryClient};
use super::{outcome, BoxFuture, Sink, SinkBuildError, SinkError};
use crate::credentials::UpstreamCredentials;
use crate::notify::format::{Encoder, Format, FormatOptions};
use crate::notify::Event;
use crate::upstream::UpstreamClient;

/// The most entries of one `PublishBatch` or `SendMessageBatch`.
pub const MAX_BATCH_ENTRIES: usize = 10;
/// The most bytes of one message, and of all messages of one batch request,
/// attributes included: 256 KiB.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// The default [`Sink::max_batch`]: ten requests' worth.
pub const DEFAULT_MAX_BATCH: usize = 100;

#[derive(Clone, Debug)]
enum Target {
    Sns { topic_arn: String },
    Sqs { queue_url: String },
}

impl Target {
    fn service(&self) -> &'static str {
        match self {
            Target::Sns { .. } => "SNS",
            Target::Sqs { .. } => "SQS",
        }
    }
}

/// What SNS and SQS sinks share: everything but the parameter names.
#[derive(Clone)]
struct Messaging {
    name: String,
    target: Target,
    fifo: bool,
    client: QueryClient,
    encoder: Encoder,
    max_batch: usize,
    /// The longest one `deliver` may take, all its requests together;
    /// `None`: only the HTTP client's own timeouts bound it.
    timeout: Option<Duration>,
}

/// One message, ready to be put into a request.
#[derive(Debug)]
struct Entry {
    index: usize,
    message: String,
    attributes: Vec<(String, String)>,
    group_id: Option<String>,
    dedup_id: Option<String>,
    size: usize,
}

fn check_region(region: &str) -> Result<(), SinkBuildError> {
    let valid = !region.is_empty()
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(invalid_region(region))
    }
}

fn invalid_region(region: &str) -> SinkBuildError {
    SinkBuildError::InvalidSetting {
        key: "region".to_owned(),
        reason: format!("{region:?} is not an AWS region name (us-east-1)"),
    }
}

/// An id AWS accepts as `MessageGroupId` or `MessageDeduplicationId`: 1 to
/// 128 characters of printable ASCII without space; anything else becomes
/// `h-` and its SHA-256 in hex.
fn fifo_id(text: &str) -> String {
    let fits = (1..=128).contains(&text.len()) && text.bytes().all(|b| (0x21..=0x7e).contains(&b));
    if fits {
        text.to_owned()
    } else {
        format!("h-{}", hex::encode(Sha256::digest(text.as_bytes())))
    }
}

/// A batch entry id: unique in the request (the position), then the event
/// id reduced to the characters AWS allows, 80 characters at most.
fn entry_id(position: usize, event: &Event) -> String {
    let mut id = format!("{position}_");
    id.extend(
        event
            .id
            .as_str()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .take(72),
    );
    id
}

/// Replaces characters XML cannot carry (SNS and SQS refuse them in
/// attribute values) with U+FFFD.
fn xml_safe(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' => c,
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => '\u{FFFD}',
            c => c,
        })
        .collect()
}

impl Messaging {
    fn new(
        target: Target,
        fifo: bool,
        region: String,
        endpoint: Uri,
        credentials: UpstreamCredentials,
    ) -> Self {
        let (service, version, name) = match target {
            Target::Sns { .. } => ("sns", "2010-03-31", "sns"),
            Target::Sqs { .. } => ("sqs", "2012-11-05", "sqs"),
        };
        Messaging {
            name: name.to_owned(),
            target,
            fifo,
            client: QueryClient::new(service, version, region, endpoint, credentials),
            encoder: Encoder::new(Format::S3, FormatOptions::default()),
            max_batch: DEFAULT_MAX_BATCH,
            timeout: None,
        }
    }

    fn entry(&self, index: usize, event: &Event) -> Entry {
        let body = self.encoder.encode_one(event);
        let message = String::from_utf8_lossy(&body.body).into_owned();
        let mut attributes = vec![
            ("eventId".to_owned(), xml_safe(event.id.as_str())),
            ("eventName".to_owned(), event.s3_or_s3tap_name().to_owned()),
        ];
        for (name, value) in [("bucket", &event.bucket), ("key", &event.key)] {
            if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
                attributes.push((name.to_owned(), xml_safe(value)));
            }
        }
        for (name, value) in body.headers {
            if !value.is_empty() {
                attributes.push((name, xml_safe(&value)));
            }
        }
        let size = message.len()
            + attributes
                .iter()
                .map(|(name, value)| name.len() + "String".len() + value.len())
                .sum::<usize>();
        let (group_id, dedup_id) = if self.fifo {
            let group = match (&event.bucket, &event.key) {
                (Some(bucket), Some(key)) => format!("{bucket}/{key}"),
                (Some(bucket), None) => bucket.clone(),
                (None, _) => "s3tap".to_owned(),
            };
            (Some(fifo_id(&group)), Some(fifo_id(event.id.as_str())))
        } else {
            (None, None)
        };
        Entry {
            index,
            message,
            attributes,
            group_id,
            dedup_id,
            size,
        }
    }

    /// Splits entries into requests of at most 10 entries and 256 KiB.
    fn split(entries: Vec<Entry>) -> Vec<Vec<Entry>> {
        let mut requests: Vec<Vec<Entry>> = Vec::new();
        let mut current: Vec<Entry> = Vec::new();
        let mut bytes = 0;
        for entry in entries {
            if !current.is_empty()
                && (current.len() == MAX_BATCH_ENTRIES || bytes + entry.size > MAX_MESSAGE_BYTES)
            {
                requests.push(std::mem::take(&mut current));
                bytes = 0;
            }
            bytes += entry.size;
            current.push(entry);
        }
        if !current.is_empty() {
            requests.push(current);
        }
        requests
    }

    /// The parameters of one request, after `Action` and `Version`.
    fn params(&self, entries: &[Entry], ids: &[String]) -> (&'static str, String) {
        let mut params = String::new();
        let single = entries.len() == 1;
        let (action, message_field, attribute_prefix) = match (&self.target, single) {
            (Target::Sns { topic_arn }, true) => {
                push_param(&mut params, "TopicArn", topic_arn);
                ("Publish", "Message", "MessageAttributes.entry")
            }
            (Target::Sns { topic_arn }, false) => {
                push_param(&mut params, "TopicArn", topic_arn);
                ("PublishBatch", "Message", "MessageAttributes.entry")
            }
            (Target::Sqs { queue_url }, true) => {
                push_param(&mut params, "QueueUrl", queue_url);
                ("SendMessage", "MessageBody", "MessageAttribute")
            }
            (Target::Sqs { queue_url }, false) => {
                push_param(&mut params, "QueueUrl", queue_url);
                ("SendMessageBatch", "MessageBody", "MessageAttribute")
            }
        };
        for (n, (entry, id)) in entries.iter().zip(ids).enumerate() {
            let prefix = match (&self.target, single) {
                (_, true) => String::new(),
                (Target::Sns { .. }, false) => {
                    format!("PublishBatchRequestEntries.member.{}.", n + 1)
                }
                (Target::Sqs { .. }, false) => format!("SendMessageBatchRequestEntry.{}.", n + 1),
            };
            if !single {
                push_param(&mut params, &format!("{prefix}Id"), id);
            }
            push_param(
                &mut params,
                &format!("{prefix}{message_field}"),
                &entry.message,
            );
            for (m, (name, value)) in entry.attributes.iter().enumerate() {
                let a = format!("{prefix}{attribute_prefix}.{}", m + 1);
                push_param(&mut params, &format!("{a}.Name"), name);
                push_param(&mut params, &format!("{a}.Value.DataType"), "String");
                push_param(&mut params, &format!("{a}.Value.StringValue"), value);
            }
            if let Some(group) = &entry.group_id {
                push_param(&mut params, &format!("{prefix}MessageGroupId"), group);
            }
            if let Some(dedup) = &entry.dedup_id {
                push_param(
                    &mut params,
                    &format!("{prefix}MessageDeduplicationId"),
                    dedup,
                );
            }
        }
        (action, params)
    }

    /// Sends one request; returns the failures among its entries.
    async fn send(&self, entries: &[Entry], batch: &[Event]) -> Vec<(usize, SinkError)> {
        let ids: Vec<String> = entries
            .iter()
            .enumerate()
            .map(|(n, e)| entry_id(n, &batch[e.index]))
            .collect();
        let (action, params) = self.params(entries, &ids);
        let answer = match self.client.call(action, &params).await {
            Ok(answer) => answer,
            Err(error) => return entries.iter().map(|e| (e.index, error.clone())).collect(),
        };
        if entries.len() == 1 {
            return Vec::new();
        }
        let service = self.target.service();
        let (succeeded, failed) = batch_results(&answer);
        entries
            .iter()
            .zip(&ids)
            .filter_map(|(entry, id)| {
                if let Some(failure) = failed.get(id.as_str()) {
                    let message = format!(
                        "{service} {action} refused the message: {}: {}",
                        failure.code, failure.message
                    );
                    Some((
                        entry.index,
                        if failure.sender_fault {
                            SinkError::permanent(message)
                        } else {
                            SinkError::transient(message)
                        },
                    ))
                } else if succeeded.contains(id.as_str()) {
                    None
                } else {
                    Some((
                        entry.index,
                        SinkError::transient(format!(
                            "{service} {action}: entry {id} missing from the answer"
                        )),
                    ))
                }
            })
            .collect()
    }

    async fn deliver(&self, batch: &[Event]) -> Result<(), SinkError> {
        let mut failed: Vec<(usize, SinkError)> = Vec::new();
        let mut entries = Vec::with_capacity(batch.len());
        for (index, event) in batch.iter().enumerate() {
            let entry = self.entry(index, event);
            if entry.size > MAX_MESSAGE_BYTES {
                failed.push((
                    index,
                    SinkError::permanent(format!(
                        "the {} message of event {} is {} bytes with its attributes; {} allows {MAX_MESSAGE_BYTES}",
                        self.target.service(),
                        event.id,
                        entry.size,
                        self.target.service()
                    )),
                ));
            } else {
                entries.push(entry);
            }
        }
        let requests = Self::split(entries);
        if self.fifo {
            let mut stopped = false;
            for request in &requests {
                if stopped {
                    failed.extend(request.iter().map(|e| {
                        (
                            e.index,
                            SinkError::transient(
                                "not sent: an earlier message of the batch failed and FIFO order must hold",
                            ),
                        )
                    }));
                    continue;
                }
                let failures = self.send(request, batch).await;
                stopped = failures
                    .iter()
                    .any(|(_, e)| matches!(e, SinkError::Transient { .. }));
                failed.extend(failures);
            }
        } else {
            let results = join_all(requests.iter().map(|request| self.send(request, batch))).await;
            failed.extend(results.into_iter().flatten());
        }
        if !failed.is_empty() {
            tracing::debug!(sink = %self.name, failed = failed.len(), of = batch.len(), "{} delivery failures", self.target.service());
        }
        outcome::fold(batch.len(), failed)
    }
}

struct Failure {
    code: String,
    message: String,
    sender_fault: bool,
}

/// The ids a batch answer lists as succeeded and as failed: SNS's
/// `Successful`/`Failed` members, SQS's `SendMessageBatchResultEntry` and
/// `BatchResultErrorEntry`.
fn batch_results(answer: &Element) -> (HashSet<String>, HashMap<String, Failure>) {
    let mut ok: Vec<&Element> = Vec::new();
    let mut bad: Vec<&Element> = Vec::new();
    answer.find_all("SendMessageBatchResultEntry", &mut ok);
    answer.find_all("BatchResultErrorEntry", &mut bad);
    if let Some(list) = answer.find("Successful") {
        ok.extend(list.children.iter().filter(|c| c.name == "member"));
    }
    if let Some(list) = answer.find("Failed") {
        bad.extend(list.children.iter().filter(|c| c.name == "member"));
    }
    let succeeded = ok
        .iter()
        .filter_map(|e| e.child_text("Id"))
        .map(str::to_owned)
        .collect();
    let failed = bad
        .iter()
        .filter_map(|e| {
            Some((
                e.child_text("Id")?.to_owned(),
                Failure {
                    code: e.child_text("Code").unwrap_or_default().to_owned(),
                    message: e.child_text("Message").unwrap_or_default().to_owned(),
                    sender_fault: e
                        .child_text("SenderFault")
                        .is_some_and(|v| v.eq_ignore_ascii_case("true")),
                },
            ))
        })
        .collect();
    (succeeded, failed)
}

impl fmt::Debug for Messaging {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Messaging")
            .field("name", &self.name)
            .field("target", &self.target)
            .field("fifo", &self.fifo)
            .field("client", &self.client)
            .field("format", &self.encoder.format)
            .field("max_batch", &self.max_batch)
            .field("timeout", &self.timeout)
            .finish()
    }
}

macro_rules! builder_methods {
    ($sink:ident) => {
        /// Sends to this endpoint instead of AWS's (moto, LocalStack, a
        /// VPC endpoint). The path, if any, is the request path.
        pub fn endpoint(mut self, endpoint: Uri) -> Self {
            if let Ok(inner) = &mut self.inner {
                inner.client.endpoint = endpoint;
            }
            self
        }

        /// Uses this HTTP client (its timeouts, root certificates).
        pub fn client(mut self, client: UpstreamClient) -> Self {
            if let Ok(inner) = &mut self.inner {
                inner.client.http = client;
            }
            self
        }

        /// How message bodies are encoded (default S3 event records). Each
        /// event is one message whatever the format's batch size.
        pub fn format(mut self, encoder: Encoder) -> Self {
            if let Ok(inner) = &mut self.inner {
                inner.encoder = encoder;
            }
            self
        }

        /// The sink's name in logs and metrics.
        pub fn name(mut self, name: impl Into<String>) -> Self {
            if let Ok(inner) = &mut self.inner {
                inner.name = name.into();
            }
            self
        }

        /// The largest batch the dispatcher hands over (default 100), sent
        /// as requests of at most 10 messages.
        pub fn max_batch(mut self, max: usize) -> Self {
            if let Ok(inner) = &mut self.inner {
                inner.max_batch = max.max(1);
            }
            self
        }

        /// The longest one delivery may take, all its requests together
        /// (default: no limit beyond the HTTP client's connect and
        /// response timeouts). Exceeding it is a transient failure.
        pub fn timeout(mut self, timeout: Duration) -> Self {
            if let Ok(inner) = &mut self.inner {
                inner.timeout = Some(timeout);
            }
            self
        }

        /// Builds the sink (nothing connects: requests open connections as
        /// they go). Fails on a region that is no region name, or a queue
        /// URL that is not an absolute `http(s)://` URL.
        pub fn build(self) -> Result<$sink, SinkBuildError> {
            Ok($sink { inner: self.inner? })
        }
    };
}

macro_rules! sink_impl {
    ($type:ty) => {
        impl Sink for $type {
            fn name(&self) -> &str {
                &self.inner.name
            }

            fn max_batch(&self) -> usize {
                self.inner.max_batch
            }

            fn deliver<'a>(&'a self, batch: &'a [Event]) -> BoxFuture<'a, Result<(), SinkError>> {
                Box::pin(async move {
                    let Some(timeout) = self.inner.timeout else {
                        return self.inner.deliver(batch).await;
                    };
                    // Past the limit the whole batch comes again: messages
                    // that did go out are duplicates consumers drop by
                    // `eventId` (FIFO targets, by the de-duplication id).
                    tokio::time::timeout(timeout, self.inner.deliver(batch))
                        .await
                        .unwrap_or_else(|_| {
                            Err(SinkError::transient(format!(
                                "{}: no answer within {timeout:?}",
                                self.inner.name
                            )))
                        })
                })
            }
        }
    };
}

/// Publishes events to an SNS topic. See the [module docs](self).
#[derive(Clone, Debug)]
pub struct SnsSink {
    inner: Messaging,
}

/// Configures an [`SnsSink`]; [`build`](Self::build) checks the settings.
#[derive(Debug)]
#[must_use = "a builder does nothing until built"]
pub struct SnsSinkBuilder {
    // A setting refused at `builder()` is reported by `build()`, so the
    // chain of setters stays one expression.
    inner: Result<Messaging, SinkBuildError>,
}

impl SnsSinkBuilder {
    builder_methods!(SnsSink);
}

impl SnsSink {
    /// Starts building a sink publishing to `topic_arn` in `region` with
    /// `credentials`, at `https://sns.<region>.amazonaws.com/` unless
    /// [`endpoint`](SnsSinkBuilder::endpoint) says otherwise.
    pub fn builder(
        topic_arn: impl Into<String>,
        region: impl Into<String>,
        credentials: UpstreamCredentials,
    ) -> SnsSinkBuilder {
        SnsSinkBuilder {
            inner: SnsSink::messaging(topic_arn.into(), region.into(), credentials),
        }
    }

    /// Whether the target is FIFO (its name ends in `.fifo`).
    pub fn is_fifo(&self) -> bool {
        self.inner.fifo
    }

    fn messaging(
        topic_arn: String,
        region: String,
        credentials: UpstreamCredentials,
    ) -> Result<Messaging, SinkBuildError> {
        check_region(&region)?;
        let endpoint = format!("https://sns.{region}.amazonaws.com/")
            .parse()
            .map_err(|_| invalid_region(&region))?;
        let fifo = topic_arn.ends_with(".fifo");
        Ok(Messaging::new(
            Target::Sns { topic_arn },
            fifo,
            region,
            endpoint,
            credentials,
        ))
    }
}

sink_impl!(SnsSink);

/// Sends events to an SQS queue. See the [module docs](self).
#[derive(Clone, Debug)]
pub struct SqsSink {
    inner: Messaging,
}

/// Configures an [`SqsSink`]; [`build`](Self::build) checks the settings.
#[derive(Debug)]
#[must_use = "a builder does nothing until built"]
pub struct SqsSinkBuilder {
    inner: Result<Messaging, SinkBuildError>,
}

impl SqsSinkBuilder {
    builder_methods!(SqsSink);
}

impl SqsSink {
    /// Starts building a sink sending to the queue at `queue_url`
    /// (`https://sqs.<region>.amazonaws.com/<account>/<name>`) in `region`
    /// with `credentials`. Requests go to the queue URL's scheme and host
    /// unless [`endpoint`](SqsSinkBuilder::endpoint) says otherwise.
    pub fn builder(
        queue_url: impl Into<String>,
        region: impl Into<String>,
        credentials: UpstreamCredentials,
    ) -> SqsSinkBuilder {
        SqsSinkBuilder {
            inner: SqsSink::messaging(queue_url.into(), region.into(), credentials),
        }
    }

    /// Whether the target is FIFO (its name ends in `.fifo`).
    pub fn is_fifo(&self) -> bool {
        self.inner.fifo
    }

    fn messaging(
        queue_url: String,
        region: String,
        credentials: UpstreamCredentials,
    ) -> Result<Messaging, SinkBuildError> {
        check_region(&region)?;
        let invalid = || SinkBuildError::InvalidUrl(format!("SQS queue URL {queue_url:?}"));
        let uri: Uri = queue_url.parse().map_err(|_| invalid())?;
        let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
            return Err(invalid());
        };
        if scheme != "http" && scheme != "https" {
            return Err(invalid());
        }
        let endpoint = format!("{scheme}://{authority}/")
            .parse()
            .map_err(|_| invalid())?;
        let fifo = uri.path().trim_end_matches('/').ends_with(".fifo");
        Ok(Messaging::new(
            Target::Sqs { queue_url },
            fifo,
            region,
            endpoint,
            credentials,
        ))
    }
}

sink_impl!(SqsSink);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::S3Operation;

    fn event(key: &str) -> Event {
        let mut event = Event::new(S3Operation::PutObject, "PUT", 200, "http://h/b/k");
        event.bucket = Some("b".into());
        event.key = Some(key.into());
        event
    }

    fn credentials() -> UpstreamCredentials {
        UpstreamCredentials::new("AKID", "secret")
    }

    #[tokio::test]
    async fn timeout_bounds_a_delivery_to_a_silent_endpoint() {
        // Accepts connections (the kernel's backlog) and never answers.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}/", silent.local_addr().unwrap());
        let sink = SnsSink::builder("arn:aws:sns:us-east-1:1:t", "us-east-1", credentials())
            .endpoint(endpoint.parse().unwrap())
            .timeout(Duration::from_millis(200))
            .build()
            .unwrap();
        let error = sink.deliver(&[event("k")]).await.unwrap_err();
        assert!(
            matches!(error, SinkError::Transient { ref message, .. } if message.contains("no answer within")),
            "{error:?}"
        );
    }

    #[test]
    fn fifo_and_entry_ids() {
        assert_eq!(fifo_id("b/photos/cat.jpg"), "b/photos/cat.jpg");
        let hashed = fifo_id("b/a key with spaces");
        assert!(hashed.starts_with("h-") && hashed.len() == 66, "{hashed}");
        assert!(fifo_id(&"x".repeat(129)).starts_with("h-"));
        let mut e = event("k");
        e.id = crate::notify::EventId("odd id/with:chars".repeat(10));
        let id = entry_id(9, &e);
        assert!(id.len() <= 80, "{id}");
        assert!(id.starts_with("9_odd_id_with_chars"));
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(xml_safe("a\u{1}b\tc"), "a\u{FFFD}b\tc");
    }

    #[test]
    fn splits_at_ten_entries_and_at_256_kib() {
        let sink = SnsSink::builder("arn:aws:sns:us-east-1:1:t", "us-east-1", credentials())
            .build()
            .unwrap();
        let small: Vec<Entry> = (0..25).map(|i| sink.inner.entry(i, &event("k"))).collect();
        let sizes: Vec<usize> = Messaging::split(small).iter().map(Vec::len).collect();
        assert_eq!(sizes, [10, 10, 5]);
        // Three messages of ~100 KiB: two fit in 256 KiB, the third does not.
        let big: Vec<Entry> = (0..3)
            .map(|i| {
                let mut entry = sink.inner.entry(i, &event("k"));
                entry.size = 100 * 1024;
                entry
            })
            .collect();
        let sizes: Vec<usize> = Messaging::split(big).iter().map(Vec::len).collect();
        assert_eq!(sizes, [2, 1]);
    }

    #[test]
    fn fifo_targets_are_recognized() {
        let sns = SnsSink::builder("arn:aws:sns:us-east-1:1:t.fifo", "us-east-1", credentials())
            .build()
            .unwrap();
        assert!(sns.is_fifo());
        let entry = sns.inner.entry(0, &event("photos/cat.jpg"));
        assert_eq!(entry.group_id.as_deref(), Some("b/photos/cat.jpg"));
        let sqs = SqsSink::builder(
            "https://sqs.us-east-1.amazonaws.com/1/q",
            "us-east-1",
            credentials(),
        )
        .build()
        .unwrap();
        assert!(!sqs.is_fifo());
        assert_eq!(
            sqs.inner.client.endpoint,
            "https://sqs.us-east-1.amazonaws.com/"
        );
        assert!(SqsSink::builder("not a url", "us-east-1", credentials())
            .build()
            .is_err());
        assert!(SnsSink::builder("arn", "US East", credentials())
            .build()
            .is_err());
    }

    #[test]
    fn reads_batch_answers() {
        let sns = br#"<PublishBatchResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/">
  <PublishBatchResult>
    <Successful><member><Id>0_a</Id><MessageId>m1</MessageId></member></Successful>
    <Failed><member><Id>1_b</Id><Code>InvalidParameter</Code><Message>bad</Message><SenderFault>true</SenderFault></member>
      <member><Id>2_c</Id><Code>InternalError</Code><Message>oops</Message><SenderFault>false</SenderFault></member></Failed>
  </PublishBatchResult></PublishBatchResponse>"#;
        let (ok, bad) = batch_results(&Element::parse(sns).unwrap());
        assert!(ok.contains("0_a"));
        assert!(bad["1_b"].sender_fault);
        assert!(!bad["2_c"].sender_fault);
        let sqs = br#"<SendMessageBatchResponse><SendMessageBatchResult>
  <SendMessageBatchResultEntry><Id>0_a</Id><MessageId>m</MessageId></SendMessageBatchResultEntry>
  <BatchResultErrorEntry><Id>1_b</Id><SenderFault>true</SenderFault><Code>InvalidParameterValue</Code><Message>x</Message></BatchResultErrorEntry>
</SendMessageBatchResult></SendMessageBatchResponse>"#;
        let (ok, bad) = batch_results(&Element::parse(sqs).unwrap());
        assert!(ok.contains("0_a"));
        assert_eq!(bad["1_b"].code, "InvalidParameterValue");
    }
}
