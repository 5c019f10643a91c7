//! AWS S3 event notification records (`eventVersion` 2.1).
//!
//! The layout follows S3's documented event message structure:
//! `{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion",
//! "eventTime","eventName","userIdentity":{"principalId"},
//! "requestParameters":{"sourceIPAddress"},"responseElements":{
//! "x-amz-request-id","x-amz-id-2"},"s3":{"s3SchemaVersion":"1.0",
//! "configurationId","bucket":{"name","ownerIdentity":{"principalId"},"arn"},
//! "object":{"key","size","eTag","versionId","sequencer"}}}]}`.
//!
//! Where s3tap's facts differ from AWS's:
//!
//! - `eventName` is the S3 name without `s3:` (`ObjectCreated:Put`, and
//!   MinIO's `ObjectAccessed:Get` or `BucketCreated:*` for what AWS does not
//!   notify), or an `s3tap:` name for operations neither names (see
//!   [`event_types`](crate::notify::event_types)).
//! - `object.key` is URL-encoded the way S3 does it: form encoding (space
//!   becomes `+`, `+` becomes `%2B`, UTF-8 bytes become `%XX`) but with `/`
//!   left as it is, as AWS's own events show it. Only `A-Z a-z 0-9 - _ . *`
//!   and `/` stay literal.
//! - `object.size` and `object.eTag` are present when known (S3 omits them
//!   for deletes); `object.versionId` is always present, `null` on an
//!   unversioned bucket, as S3 documents.
//! - `object.sequencer` is 20 upper-case hex digits: the event time in
//!   nanoseconds since the epoch (16 digits) then 4 digits derived from the
//!   event id. It only grows with event time, so later events on a key
//!   compare greater (the comparison S3 prescribes: as strings, after
//!   left-padding the shorter with zeros), and it is derived from the event
//!   alone, so a redelivered event carries the same sequencer.
//! - `userIdentity.principalId` is the client's access key id (`anonymous`
//!   when unsigned); `requestParameters.sourceIPAddress` the client address
//!   (empty when unknown); `x-amz-request-id` the upstream's request id
//!   (empty when unknown) and `x-amz-id-2` the s3tap event id: unique per
//!   event (a `DeleteObjects` request yields one event per key) and stable
//!   across redeliveries, which is what CloudEvents' `id`, derived from
//!   these two, needs. s3tap's own request id is in the s3tap schema's
//!   `request_id`.
//! - Extensions, in `s3.object`, only when s3tap verified the upload's
//!   payload itself: `contentSha256` (hex SHA-256 of the payload) and
//!   `checksum` (`{"algorithm": "CRC32", "value": "<base64>"}`, the
//!   `x-amz-checksum-*` it checked).
//! - `configurationId` is the routing rule's name.

use bytes::Bytes;
use serde::Serialize;

use super::FormatOptions;
use crate::notify::Event;

/// `eventVersion` of the records.
pub const EVENT_VERSION: &str = "2.1";

#[derive(Serialize)]
pub(crate) struct Record<'a> {
    #[serde(rename = "eventVersion")]
    pub(crate) event_version: &'static str,
    #[serde(rename = "eventSource")]
    pub(crate) event_source: &'static str,
    #[serde(rename = "awsRegion")]
    pub(crate) aws_region: &'a str,
    #[serde(rename = "eventTime")]
    pub(crate) event_time: String,
    #[serde(rename = "eventName")]
    pub(crate) event_name: &'static str,
    #[serde(rename = "userIdentity")]
    pub(crate) user_identity: Principal<'a>,
    #[serde(rename = "requestParameters")]
    pub(crate) request_parameters: RequestParameters,
    #[serde(rename = "responseElements")]
    pub(crate) response_elements: ResponseElements<'a>,
    pub(crate) s3: S3Entity<'a>,
}

#[derive(Serialize)]
pub(crate) struct Principal<'a> {
    #[serde(rename = "principalId")]
    principal_id: &'a str,
}

#[derive(Serialize)]
pub(crate) struct RequestParameters {
    #[serde(rename = "sourceIPAddress")]
    source_ip_address: String,
}

#[derive(Serialize)]
pub(crate) struct ResponseElements<'a> {
    #[serde(rename = "x-amz-request-id")]
    pub(crate) request_id: &'a str,
    #[serde(rename = "x-amz-id-2")]
    pub(crate) id_2: &'a str,
}

#[derive(Serialize)]
pub(crate) struct S3Entity<'a> {
    #[serde(rename = "s3SchemaVersion")]
    pub(crate) schema_version: &'static str,
    #[serde(rename = "configurationId")]
    pub(crate) configuration_id: &'a str,
    pub(crate) bucket: Bucket<'a>,
    pub(crate) object: Object<'a>,
}

#[derive(Serialize)]
pub(crate) struct Bucket<'a> {
    pub(crate) name: &'a str,
    #[serde(rename = "ownerIdentity")]
    pub(crate) owner_identity: Principal<'a>,
    pub(crate) arn: String,
}

#[derive(Serialize)]
pub(crate) struct Object<'a> {
    pub(crate) key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) size: Option<u64>,
    #[serde(rename = "eTag", skip_serializing_if = "Option::is_none")]
    pub(crate) etag: Option<&'a str>,
    #[serde(rename = "versionId")]
    pub(crate) version_id: Option<&'a str>,
    pub(crate) sequencer: String,
    #[serde(rename = "contentSha256", skip_serializing_if = "Option::is_none")]
    pub(crate) content_sha256: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) checksum: Option<&'a crate::notify::ContentChecksum>,
}

#[derive(Serialize)]
struct Records<'a> {
    #[serde(rename = "Records")]
    records: Vec<Record<'a>>,
}

/// The record of one event.
pub(crate) fn record<'a>(event: &'a Event, options: &'a FormatOptions) -> Record<'a> {
    let bucket = event.bucket.as_deref().unwrap_or("");
    let owner = options
        .bucket_owner_id
        .as_deref()
        .unwrap_or(&options.b2.account_id);
    Record {
        event_version: EVENT_VERSION,
        event_source: "aws:s3",
        aws_region: &options.aws_region,
        event_time: super::rfc3339_millis(event.time),
        event_name: event.s3_or_s3tap_name(),
        user_identity: Principal {
            principal_id: event.access_key_id.as_deref().unwrap_or("anonymous"),
        },
        request_parameters: RequestParameters {
            source_ip_address: event.source_ip.map(|ip| ip.to_string()).unwrap_or_default(),
        },
        response_elements: ResponseElements {
            request_id: event.upstream_request_id.as_deref().unwrap_or(""),
            id_2: event.id.as_str(),
        },
        s3: S3Entity {
            schema_version: "1.0",
            configuration_id: event.matched_rule.as_deref().unwrap_or(""),
            bucket: Bucket {
                name: bucket,
                owner_identity: Principal {
                    principal_id: owner,
                },
                arn: format!("arn:aws:s3:::{bucket}"),
            },
            object: Object {
                key: encode_key(event.key.as_deref().unwrap_or("")),
                size: event.size,
                etag: event.etag.as_deref(),
                version_id: event.version_id.as_deref(),
                sequencer: sequencer(event),
                content_sha256: event.content_sha256.as_deref(),
                checksum: event.checksum.as_ref(),
            },
        },
    }
}

/// The events as one `{"Records":[...]}` message.
pub fn encode(events: &[Event], options: &FormatOptions) -> Bytes {
    super::to_bytes(&Records {
        records: events.iter().map(|e| record(e, options)).collect(),
    })
}

/// A key as S3 event records carry it: form URL encoding, `/` kept.
pub fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for &byte in key.as_bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' | b'/' => {
                out.push(byte as char)
            }
            b' ' => out.push('+'),
            _ => {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.push('%');
                out.push(HEX[usize::from(byte >> 4)] as char);
                out.push(HEX[usize::from(byte & 0xf)] as char);
            }
        }
    }
    out
}

/// The record's `sequencer`: event time in nanoseconds, then a tie-breaker
/// from the event id (FNV-1a folded to 16 bits).
pub fn sequencer(event: &Event) -> String {
    let nanos = event
        .time
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut hash: u32 = 0x811c_9dc5;
    for &byte in event.id.as_str().as_bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    let tie = (hash >> 16) ^ (hash & 0xffff);
    format!("{nanos:016X}{tie:04X}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_encoding() {
        assert_eq!(encode_key("red flower.jpg"), "red+flower.jpg");
        assert_eq!(encode_key("a b+c/ü"), "a+b%2Bc/%C3%BC");
        assert_eq!(encode_key("x=1&y=2"), "x%3D1%26y%3D2");
        assert_eq!(encode_key("~'()!"), "%7E%27%28%29%21");
        assert_eq!(encode_key("100%"), "100%25");
        assert_eq!(encode_key("a-b_c.d*e"), "a-b_c.d*e");
    }
}
