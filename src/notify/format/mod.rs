//! How events look on the wire: the original Worker's JSON, B2 Event
//! Notifications, S3 event records, CloudEvents 1.0, and s3tap's own schema
//! ([`native`], `s3tap.event/1`).
//!
//! A [`Format`] says which; an [`Encoder`] pairs it with the deployment facts
//! the payloads carry ([`FormatOptions`]: B2 account and bucket ids, AWS
//! region, ...) and turns events into [`EncodedBody`]s that sinks send as
//! they are (HTTP body and headers, Kafka value and headers, ...).
//!
//! ```
//! use s3tap::notify::format::{Encoder, Format, FormatOptions};
//! use s3tap::notify::{Event, S3Operation};
//!
//! let mut event = Event::new(S3Operation::PutObject, "PUT", 200, "https://s3.example/b/k");
//! event.bucket = Some("b".into());
//! event.key = Some("k".into());
//! let encoder = Encoder::new(Format::B2, FormatOptions::default());
//! let bodies = encoder.encode_batches(&[event]);
//! assert_eq!(bodies.len(), 1);
//! assert_eq!(bodies[0].content_type, "application/json");
//! ```

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::Deserialize;

use super::Event;

pub mod b2;
pub mod cloudevents;
pub mod native;
pub mod s3;
pub mod seed;

pub use cloudevents::{binary_headers, BindingProtocol, CloudEventsMode};

/// A wire format for events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// The original Cloudflare Worker's JSON, one event per message.
    Seed,
    /// B2 Event Notifications: `{"events":[...]}`, up to 50 per message.
    B2,
    /// AWS S3 event notifications: `{"Records":[...]}`, one per message.
    S3,
    /// CloudEvents 1.0 (JSON format), in the given content mode.
    #[serde(rename = "cloudevents")]
    CloudEvents {
        /// Structured, batched or binary.
        mode: CloudEventsMode,
    },
    /// s3tap's own schema ([`native`], `s3tap.event/1`): one JSON object
    /// per event, or a JSON array of up to [`native::MAX_BATCH`] in one
    /// message (`format = "s3tap"` in the proxy's configuration).
    #[serde(rename = "s3tap")]
    Native,
}

impl Format {
    /// The most events one message of this format carries.
    ///
    /// - seed: 1 (the Worker posted one request's JSON per call);
    /// - B2: 50 ([`b2::MAX_EVENTS`]);
    /// - S3: 1: S3 sends one record per message, and consumers written for
    ///   it commonly read `Records[0]` only;
    /// - CloudEvents: 1 in structured and binary mode,
    ///   [`cloudevents::MAX_BATCH`] in batched mode (the spec sets no limit);
    /// - s3tap: [`native::MAX_BATCH`] (a JSON array).
    ///
    /// B2's limit is the most a message may carry; B2 itself sends 1 unless a
    /// rule's `maxEventsPerBatch` says more, and so does the proxy
    /// (`max_events_per_batch`).
    pub fn max_batch(&self) -> usize {
        match self {
            Format::Seed => 1,
            Format::B2 => b2::MAX_EVENTS,
            Format::S3 => 1,
            Format::CloudEvents {
                mode: CloudEventsMode::Batch,
            } => cloudevents::MAX_BATCH,
            Format::CloudEvents { .. } => 1,
            Format::Native => native::MAX_BATCH,
        }
    }

    /// The media type of the messages.
    pub fn content_type(&self) -> &'static str {
        match self {
            Format::Seed | Format::B2 | Format::S3 | Format::Native => "application/json",
            Format::CloudEvents { mode } => mode.content_type(),
        }
    }
}

/// B2's identifiers for the payloads: B2 puts them in every event, but an
/// S3-compatible request carries neither, so they come from configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct B2Identity {
    /// The account id (`accountId`).
    #[serde(default)]
    pub account_id: String,
    /// Bucket name to bucket id (`bucketId`). A bucket missing here gets its
    /// *name* as `bucketId`: never an empty id, and one a receiver can still
    /// tell buckets apart by.
    #[serde(default)]
    pub bucket_ids: HashMap<String, String>,
}

impl B2Identity {
    /// The id of `bucket`, or its name when none is configured.
    pub fn bucket_id<'a>(&'a self, bucket: &'a str) -> &'a str {
        self.bucket_ids
            .get(bucket)
            .map(String::as_str)
            .unwrap_or(bucket)
    }
}

/// Deployment facts the formats put into payloads.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FormatOptions {
    /// For B2 payloads.
    pub b2: B2Identity,
    /// `awsRegion` of S3 records (B2 regions look like `us-west-004`).
    /// Default `us-east-1`.
    pub aws_region: String,
    /// `s3.bucket.ownerIdentity.principalId` of S3 records. Default: the B2
    /// account id when set, else empty.
    pub bucket_owner_id: Option<String>,
}

impl Default for FormatOptions {
    fn default() -> Self {
        FormatOptions {
            b2: B2Identity::default(),
            aws_region: "us-east-1".into(),
            bucket_owner_id: None,
        }
    }
}

/// One encoded message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedBody {
    /// The media type of `body`: HTTP `Content-Type`, Kafka `content-type`
    /// header.
    pub content_type: &'static str,
    /// The message body or value.
    pub body: Bytes,
    /// Extra headers the format requires (CloudEvents binary mode's `ce-*`
    /// or `ce_*` attributes); empty for the others.
    pub headers: Vec<(String, String)>,
}

/// Why a batch could not be encoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// No events: no format sends empty messages.
    #[error("empty batch")]
    Empty,
    /// More events than one message of the format may hold.
    #[error("{len} events, but one message holds at most {max}")]
    TooLarge {
        /// Events given.
        len: usize,
        /// [`Format::max_batch`].
        max: usize,
    },
}

/// A [`Format`] with its [`FormatOptions`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoder {
    /// The format.
    pub format: Format,
    /// The deployment facts.
    pub options: FormatOptions,
}

impl Encoder {
    /// An encoder.
    pub fn new(format: Format, options: FormatOptions) -> Self {
        Encoder { format, options }
    }

    /// Encodes one message of 1 to [`Format::max_batch`] events.
    pub fn encode_batch(&self, events: &[Event]) -> Result<EncodedBody, FormatError> {
        let max = self.format.max_batch();
        if events.is_empty() {
            return Err(FormatError::Empty);
        }
        if events.len() > max {
            return Err(FormatError::TooLarge {
                len: events.len(),
                max,
            });
        }
        let body = match self.format {
            Format::Seed => return Ok(self.encode_one(&events[0])),
            Format::B2 => b2::encode(events, &self.options),
            Format::S3 => s3::encode(events, &self.options),
            Format::Native => native::encode_array(events),
            Format::CloudEvents { mode } => match mode {
                CloudEventsMode::Batch => cloudevents::encode_batch(events, &self.options),
                _ => return Ok(self.encode_one(&events[0])),
            },
        };
        Ok(EncodedBody {
            content_type: self.format.content_type(),
            body,
            headers: Vec::new(),
        })
    }

    /// Encodes one event as one message (a batch of one for the formats
    /// that batch).
    pub fn encode_one(&self, event: &Event) -> EncodedBody {
        let events = std::slice::from_ref(event);
        match self.format {
            Format::Seed => EncodedBody {
                content_type: self.format.content_type(),
                body: seed::encode(event),
                headers: Vec::new(),
            },
            Format::B2 => EncodedBody {
                content_type: self.format.content_type(),
                body: b2::encode(events, &self.options),
                headers: Vec::new(),
            },
            Format::S3 => EncodedBody {
                content_type: self.format.content_type(),
                body: s3::encode(events, &self.options),
                headers: Vec::new(),
            },
            Format::CloudEvents { mode } => cloudevents::encode_one(event, mode, &self.options),
            Format::Native => EncodedBody {
                content_type: self.format.content_type(),
                body: native::encode(event),
                headers: Vec::new(),
            },
        }
    }

    /// Encodes any number of events as as many messages as the format's
    /// batch limit needs, in order.
    pub fn encode_batches(&self, events: &[Event]) -> Vec<EncodedBody> {
        events
            .chunks(self.format.max_batch())
            .map(|chunk| {
                self.encode_batch(chunk)
                    .expect("chunks are non-empty and within the limit")
            })
            .collect()
    }
}

/// `2024-05-06T07:08:09.123Z`: RFC 3339 and ISO 8601, UTC, milliseconds, the
/// form S3's `eventTime` uses.
pub(crate) fn rfc3339_millis(time: SystemTime) -> String {
    let nanos = match time.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    };
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

fn to_bytes<T: serde::Serialize>(value: &T) -> Bytes {
    // Serializing plain structs of strings and numbers cannot fail.
    Bytes::from(serde_json::to_vec(value).expect("event payloads always serialize"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_forms() {
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(rfc3339_millis(t), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339_millis(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::new(951_782_400, 999_999_999);
        assert_eq!(rfc3339_millis(t), "2000-02-29T00:00:00.999Z");
    }

    #[test]
    fn batch_limits() {
        let event = Event::new(super::super::S3Operation::PutObject, "PUT", 200, "u");
        let encoder = Encoder::new(Format::B2, FormatOptions::default());
        assert_eq!(encoder.encode_batch(&[]), Err(FormatError::Empty));
        let many = vec![event.clone(); 51];
        assert_eq!(
            encoder.encode_batch(&many),
            Err(FormatError::TooLarge { len: 51, max: 50 })
        );
        assert!(encoder.encode_batch(&many[..50]).is_ok());
        let seed = Encoder::new(Format::Seed, FormatOptions::default());
        assert_eq!(
            seed.encode_batch(&many[..2]),
            Err(FormatError::TooLarge { len: 2, max: 1 })
        );
    }

    #[test]
    fn format_from_config() {
        let f: Format = serde_json::from_str(r#""b2""#).unwrap();
        assert_eq!(f, Format::B2);
        let f: Format = serde_json::from_str(r#""s3tap""#).unwrap();
        assert_eq!(f, Format::Native);
        let f: Format = serde_json::from_str(r#"{"cloudevents":{"mode":"batch"}}"#).unwrap();
        assert_eq!(
            f,
            Format::CloudEvents {
                mode: CloudEventsMode::Batch
            }
        );
        let f: Format =
            serde_json::from_str(r#"{"cloudevents":{"mode":{"binary":"kafka"}}}"#).unwrap();
        assert_eq!(
            f,
            Format::CloudEvents {
                mode: CloudEventsMode::Binary(BindingProtocol::Kafka)
            }
        );
    }
}
