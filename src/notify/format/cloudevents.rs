//! CloudEvents 1.0 in the JSON event format: structured, batched, and the
//! binary content mode of the HTTP and Kafka bindings.
//!
//! Attributes of every event:
//!
//! - `specversion`: `"1.0"`;
//! - `id`: the event id (stable across redeliveries, so receivers can
//!   de-duplicate on `source` + `id` as the spec intends);
//! - `source`: `s3tap://<host>/<bucket>`, where `<host>` is
//!   [`FormatOptions::source_host`](super::FormatOptions::source_host) or, by
//!   default, the host of the upstream URL; `s3tap://<host>/` when the
//!   request named no bucket;
//! - `type`: `s3tap.` followed by the event's S3-vocabulary name with `:`
//!   turned into `.`, e.g. `s3tap.ObjectCreated.Put`,
//!   `s3tap.ObjectRemoved.DeleteMarkerCreated`, `s3tap.ObjectAccessed.Get`.
//!   The reverse-DNS-style prefix names s3tap as the producer (the spec asks
//!   the type to be prefixed by its producer, and AWS did not produce these);
//! - `subject`: the object key, decoded (absent when there is none);
//! - `time`: RFC 3339, UTC, milliseconds;
//! - `datacontenttype`: `application/json`;
//! - `data`: the event's S3 record (one element of S3's `Records`, see
//!   [`s3`](super::s3)).
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

#[derive(Serialize)]
struct Structured<'a> {
    specversion: &'static str,
    id: &'a str,
    source: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<&'a str>,
    time: String,
    datacontenttype: &'static str,
    data: super::s3::Record<'a>,
}

/// The `type` attribute of an event.
pub fn event_type(event: &Event) -> String {
    let name = event.s3_or_s3tap_name();
    let name = name.strip_prefix("s3tap:").unwrap_or(name);
    format!("s3tap.{}", name.replace(':', "."))
}

/// The `source` attribute of an event.
pub fn source(event: &Event, options: &FormatOptions) -> String {
    let host = options
        .source_host
        .as_deref()
        .or_else(|| url_host(&event.url))
        .unwrap_or("localhost");
    format!("s3tap://{host}/{}", event.bucket.as_deref().unwrap_or(""))
}

/// The host of an absolute URL, without user info or port. Read by hand:
/// the URL is only for display here, and a key with characters a URI parser
/// refuses must not cost the event its source.
fn url_host(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let host = if authority.starts_with('[') {
        authority.split_inclusive(']').next()?
    } else {
        authority.split(':').next()?
    };
    (!host.is_empty()).then_some(host)
}

fn structured<'a>(event: &'a Event, options: &'a FormatOptions) -> Structured<'a> {
    Structured {
        specversion: SPEC_VERSION,
        id: event.id.as_str(),
        source: source(event, options),
        kind: event_type(event),
        subject: event.key.as_deref(),
        time: super::rfc3339_millis(event.time),
        datacontenttype: DATA_CONTENT_TYPE,
        data: super::s3::record(event, options),
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
/// `specversion`, `type`, `time` and (when the event has a key) `subject`,
/// named and encoded for `protocol`. `datacontenttype` is not among them:
/// both bindings carry it as the message's content type.
pub fn binary_headers(
    event: &Event,
    protocol: BindingProtocol,
    options: &FormatOptions,
) -> Vec<(String, String)> {
    let mut attributes: Vec<(&str, String)> = vec![
        ("id", event.id.as_str().to_owned()),
        ("source", source(event, options)),
        ("specversion", SPEC_VERSION.to_owned()),
        ("type", event_type(event)),
        ("time", super::rfc3339_millis(event.time)),
    ];
    if let Some(key) = event.key.as_deref() {
        attributes.push(("subject", key.to_owned()));
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
    fn hosts_of_urls() {
        assert_eq!(
            url_host("https://s3.example.com/b/k"),
            Some("s3.example.com")
        );
        assert_eq!(url_host("http://u:p@h:9000/b?x"), Some("h"));
        assert_eq!(url_host("http://[::1]:9000/b"), Some("[::1]"));
        assert_eq!(url_host("https://h/a b/ü"), Some("h"));
        assert_eq!(url_host("/b/k"), None);
        assert_eq!(url_host("http:///b"), None);
    }

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
