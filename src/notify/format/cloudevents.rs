//! CloudEvents 1.0 in the JSON event format: structured, batched, and the
//! binary content mode of the HTTP and Kafka bindings.
//!
//! The attributes follow the CloudEvents project's adapter for AWS S3
//! events (`cloudevents/spec`, `cloudevents/adapters/aws-s3.md`), applied to
//! the event's S3 record (see [`s3`](super::s3)), so consumers that key on
//! what that adapter produces (Knative triggers and the like) match:
//!
//! | attribute | value |
//! | --- | --- |
//! | `id` | the record's `responseElements.x-amz-request-id`, `.`, and its `x-amz-id-2` (the s3tap event id, so unique per event and stable across redeliveries) |
//! | `source` | the record's `eventSource`, `.`, `awsRegion`, `.`, bucket name: `aws:s3.us-west-004.photos` |
//! | `specversion` | `1.0` |
//! | `type` | `com.amazonaws.s3.` and the record's `eventName`: `com.amazonaws.s3.ObjectCreated:Put`, `com.amazonaws.s3.s3tap:BucketListed:ListObjects` |
//! | `datacontenttype` | `application/json` |
//! | `dataschema` | absent |
//! | `subject` | the record's `s3.object.key` (URL-encoded as S3 encodes it); absent when the request named no object |
//! | `time` | the record's `eventTime` (RFC 3339, UTC, milliseconds) |
//! | `data` | the S3 record |
//!
//! Extension attributes, present only when s3tap verified the upload's
//! payload itself: `contentsha256` (hex SHA-256 of the payload),
//! `checksumalgorithm` and `checksum` (the `x-amz-checksum-*` algorithm and
//! its base64 value).
//!
//! In binary mode the message body is `data` alone, its content type is
//! `datacontenttype`, and the other attributes travel as headers
//! ([`binary_headers`]): `ce-<name>` for HTTP, percent-encoded as the HTTP
//! binding requires (space, `"`, `%` and everything outside printable ASCII);
//! `ce_<name>` for Kafka, as plain UTF-8.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{EncodedBody, FormatOptions};
use crate::notify::Event;

/// The CloudEvents spec version written.
pub const SPEC_VERSION: &str = "1.0";
/// The most events in one batched message (the spec sets no limit; this keeps
/// messages well under common 1 MiB request and message limits).
pub const MAX_BATCH: usize = 100;
/// `application/cloudevents+json`.
pub const STRUCTURED_CONTENT_TYPE: &str = "application/cloudevents+json";
/// `application/cloudevents-batch+json`.
pub const BATCH_CONTENT_TYPE: &str = "application/cloudevents-batch+json";
/// The `datacontenttype` of the events.
pub const DATA_CONTENT_TYPE: &str = "application/json";

/// The transport whose binary-mode header mapping to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BindingProtocol {
    /// `ce-` headers, percent-encoded values.
    Http,
    /// `ce_` headers, UTF-8 values.
    Kafka,
}

/// A CloudEvents content mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CloudEventsMode {
    /// One event per message, attributes and data in the JSON body.
    Structured,
    /// A JSON array of structured events per message.
    Batch,
    /// One event per message: data as the body, attributes as headers.
    Binary(BindingProtocol),
}

impl CloudEventsMode {
    /// The media type of the message body.
    pub fn content_type(&self) -> &'static str {
        match self {
            CloudEventsMode::Structured => STRUCTURED_CONTENT_TYPE,
            CloudEventsMode::Batch => BATCH_CONTENT_TYPE,
            CloudEventsMode::Binary(_) => DATA_CONTENT_TYPE,
        }
    }
}

/// The prefix of every `type`.
pub const TYPE_PREFIX: &str = "com.amazonaws.s3.";

#[derive(Serialize)]
struct Structured<'a> {
    specversion: &'static str,
    id: String,
    source: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<String>,
    time: String,
    datacontenttype: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    contentsha256: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    checksumalgorithm: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    checksum: Option<&'a str>,
    data: super::s3::Record<'a>,
}

/// The context attributes of an event, derived from its S3 record as the
/// adapter says (the one place the mapping lives: structured and binary
/// mode both read it).
struct Attributes<'a> {
    id: String,
    source: String,
    kind: String,
    subject: Option<String>,
    time: String,
    contentsha256: Option<&'a str>,
    checksumalgorithm: Option<&'a str>,
    checksum: Option<&'a str>,
}

fn attributes<'a>(event: &'a Event, record: &super::s3::Record<'a>) -> Attributes<'a> {
    Attributes {
        id: format!(
            "{}.{}",
            record.response_elements.request_id, record.response_elements.id_2
        ),
        source: format!(
            "{}.{}.{}",
            record.event_source, record.aws_region, record.s3.bucket.name
        ),
        kind: format!("{TYPE_PREFIX}{}", record.event_name),
        subject: event.key.is_some().then(|| record.s3.object.key.clone()),
        time: record.event_time.clone(),
        contentsha256: event.content_sha256.as_deref(),
        checksumalgorithm: event.checksum.as_ref().map(|c| c.algorithm.as_str()),
        checksum: event.checksum.as_ref().map(|c| c.value.as_str()),
    }
}

/// The `type` attribute of an event.
pub fn event_type(event: &Event) -> String {
    format!("{TYPE_PREFIX}{}", event.s3_or_s3tap_name())
}

/// The `source` attribute of an event.
pub fn source(event: &Event, options: &FormatOptions) -> String {
    let record = super::s3::record(event, options);
    attributes(event, &record).source
}

fn structured<'a>(event: &'a Event, options: &'a FormatOptions) -> Structured<'a> {
    let data = super::s3::record(event, options);
    let a = attributes(event, &data);
    Structured {
        specversion: SPEC_VERSION,
        id: a.id,
        source: a.source,
        kind: a.kind,
        subject: a.subject,
        time: a.time,
        datacontenttype: DATA_CONTENT_TYPE,
        contentsha256: a.contentsha256,
        checksumalgorithm: a.checksumalgorithm,
        checksum: a.checksum,
        data,
    }
}

/// The events as one `application/cloudevents-batch+json` array.
pub fn encode_batch(events: &[Event], options: &FormatOptions) -> Bytes {
    let batch: Vec<Structured<'_>> = events.iter().map(|e| structured(e, options)).collect();
    super::to_bytes(&batch)
}

/// One event in the given mode (a batch of one in batch mode).
pub fn encode_one(event: &Event, mode: CloudEventsMode, options: &FormatOptions) -> EncodedBody {
    let (body, headers) = match mode {
        CloudEventsMode::Structured => (super::to_bytes(&structured(event, options)), Vec::new()),
        CloudEventsMode::Batch => (
            encode_batch(std::slice::from_ref(event), options),
            Vec::new(),
        ),
        CloudEventsMode::Binary(protocol) => (
            super::to_bytes(&super::s3::record(event, options)),
            binary_headers(event, protocol, options),
        ),
    };
    EncodedBody {
        content_type: mode.content_type(),
        body,
        headers,
    }
}

/// The binary-mode attribute headers of an event: `id`, `source`,
/// `specversion`, `type`, `time`, and the ones it has of `subject`,
/// `contentsha256`, `checksumalgorithm` and `checksum`, named and encoded
/// for `protocol`. `datacontenttype` is not among them: both bindings carry
/// it as the message's content type.
pub fn binary_headers(
    event: &Event,
    protocol: BindingProtocol,
    options: &FormatOptions,
) -> Vec<(String, String)> {
    let record = super::s3::record(event, options);
    let a = attributes(event, &record);
    let mut attributes: Vec<(&str, String)> = vec![
        ("id", a.id),
        ("source", a.source),
        ("specversion", SPEC_VERSION.to_owned()),
        ("type", a.kind),
        ("time", a.time),
    ];
    let optional = [
        ("subject", a.subject.as_deref()),
        ("contentsha256", a.contentsha256),
        ("checksumalgorithm", a.checksumalgorithm),
        ("checksum", a.checksum),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            attributes.push((name, value.to_owned()));
        }
    }
    attributes
        .into_iter()
        .map(|(name, value)| match protocol {
            BindingProtocol::Http => (format!("ce-{name}"), http_header_value(&value)),
            BindingProtocol::Kafka => (format!("ce_{name}"), value),
        })
        .collect()
}

/// Percent-encodes what the HTTP binding requires: space, `"`, `%`, and every
/// byte outside printable ASCII (so each UTF-8 byte of a non-ASCII
/// character), upper-case hex.
pub fn http_header_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for &byte in value.as_bytes() {
        if (0x21..=0x7e).contains(&byte) && byte != b'"' && byte != b'%' {
            out.push(byte as char);
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.push('%');
            out.push(HEX[usize::from(byte >> 4)] as char);
            out.push(HEX[usize::from(byte & 0xf)] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_value_encoding_follows_the_binding() {
        // The HTTP binding's own example: "Euro € 😀".
        assert_eq!(
            http_header_value("Euro \u{20AC} \u{1F600}"),
            "Euro%20%E2%82%AC%20%F0%9F%98%80"
        );
        assert_eq!(http_header_value("a\"b%c+d/e"), "a%22b%25c+d/e");
        assert_eq!(http_header_value("tab\there"), "tab%09here");
    }
}
