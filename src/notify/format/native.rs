//! s3tap's own event schema, `s3tap.event/1`: what the JSON-lines sink (the
//! embedded default) writes, and any sink given `format = "s3tap"`.
//!
//! One JSON object per event, every field always present (`null` when
//! unknown), names in `snake_case`:
//!
//! | field | type | meaning |
//! | --- | --- | --- |
//! | `schema` | string | `"s3tap.event/1"`; a change that renames, removes or retypes a field gets a new version |
//! | `id` | string | event id (UUIDv7), stable across redeliveries: de-duplicate on it |
//! | `time` | string | when the response head arrived, RFC 3339, UTC, milliseconds: `2026-12-01T20:15:03.123Z` |
//! | `event_name` | string | the name in S3's vocabulary with its prefix: `s3:ObjectCreated:Put`, `s3:ObjectAccessed:Get`, `s3tap:BucketListed:ListObjects` |
//! | `b2_event_type` | string | B2's type: `b2:ObjectCreated:Upload`, or the s3tap/S3 name for what B2 does not notify |
//! | `operation` | string | the S3 operation: `PutObject`, `CompleteMultipartUpload`, ... |
//! | `bucket`, `key` | string or null | bucket name; object key, decoded |
//! | `version_id` | string or null | `x-amz-version-id` of the response |
//! | `size` | number or null | object size: the upload's payload length, or the read's object length |
//! | `etag` | string or null | ETag without quotes |
//! | `content_type` | string or null | of the upload (request) or the read (response) |
//! | `status` | number | HTTP status of the response |
//! | `method`, `url` | string | HTTP method; the upstream URL with its query |
//! | `signature_timestamp` | string or null | the client's signing time (`x-amz-date`) |
//! | `access_key_id` | string or null | the client's verified access key id |
//! | `source_ip` | string or null | the client's address |
//! | `upstream_request_id` | string or null | the upstream's `x-amz-request-id` |
//! | `request_id` | string or null | s3tap's request id (also sent to the client as `x-amz-request-id`) |
//! | `content_length` | number or null | the request's `Content-Length` |
//! | `duration_ms` | number | request to response head (or body end), milliseconds |
//! | `bytes_sent` | number or null | response bytes sent, with `emit_on = "body_end"` |
//! | `aborted` | bool | the response body was cut short |
//! | `matched_rule` | string or null | the routing rule that sent the event here |
//! | `delete_marker` | bool | the delete created a delete marker |
//! | `live_read` | bool | a `CreateMultipartUpload` with `x-backblaze-live-read-enabled: true` |
//! | `content_sha256` | string or null | hex SHA-256 of the payload, only when s3tap computed it and it matched the signed `x-amz-content-sha256` |
//! | `checksum` | object or null | `{"algorithm": "CRC32", "value": "<base64>"}`: the `x-amz-checksum-*` header or trailer, only when s3tap computed it and it matched |
//! | `request_content_type` | string or null | for reads (whose `content_type` is the object's): the request's `Content-Type`, if it had one |
//! | `identity` | string or null | who the verified client is (its `[[clients]]` identity, else its access key id) |
//! | `error_code` | string or null | the S3 error code of an operation that answered `200` with an `<Error>` body (CompleteMultipartUpload, copies), or of a request s3tap refused itself |
//!
//! `content_sha256` and `checksum` are never guessed: with
//! `payload_hashing = "defer"` s3tap leaves the check to the upstream and
//! both stay `null`, as they do for requests without a payload.

use bytes::Bytes;
use serde::Serialize;

use crate::notify::{ContentChecksum, Event, S3Operation};

/// The schema version every object carries in `schema`.
pub const SCHEMA: &str = "s3tap.event/1";

/// The most events one message of this format carries (a JSON array) where a
/// sink sends batches in one message, as a webhook does.
pub const MAX_BATCH: usize = 100;

#[derive(Serialize)]
struct NativeEvent<'a> {
    schema: &'static str,
    id: &'a str,
    time: String,
    event_name: &'static str,
    b2_event_type: &'static str,
    operation: S3Operation,
    bucket: Option<&'a str>,
    key: Option<&'a str>,
    version_id: Option<&'a str>,
    size: Option<u64>,
    etag: Option<&'a str>,
    content_type: Option<&'a str>,
    status: u16,
    method: &'a str,
    url: &'a str,
    signature_timestamp: Option<&'a str>,
    access_key_id: Option<&'a str>,
    source_ip: Option<std::net::IpAddr>,
    upstream_request_id: Option<&'a str>,
    request_id: Option<&'a str>,
    content_length: Option<u64>,
    duration_ms: u64,
    bytes_sent: Option<u64>,
    aborted: bool,
    matched_rule: Option<&'a str>,
    delete_marker: bool,
    live_read: bool,
    content_sha256: Option<&'a str>,
    checksum: Option<&'a ContentChecksum>,
    request_content_type: Option<&'a str>,
    identity: Option<&'a str>,
    error_code: Option<&'a str>,
}

fn native(event: &Event) -> NativeEvent<'_> {
    NativeEvent {
        schema: SCHEMA,
        id: event.id.as_str(),
        time: super::rfc3339_millis(event.time),
        event_name: event.event_name(),
        b2_event_type: event.b2_event_type(),
        operation: event.operation,
        bucket: event.bucket.as_deref(),
        key: event.key.as_deref(),
        version_id: event.version_id.as_deref(),
        size: event.size,
        etag: event.etag.as_deref(),
        content_type: event.content_type.as_deref(),
        status: event.status,
        method: &event.method,
        url: &event.url,
        signature_timestamp: event.signature_timestamp.as_deref(),
        access_key_id: event.access_key_id.as_deref(),
        source_ip: event.source_ip,
        upstream_request_id: event.upstream_request_id.as_deref(),
        request_id: event.request_id.as_deref(),
        content_length: event.content_length,
        duration_ms: event.duration_ms,
        bytes_sent: event.bytes_sent,
        aborted: event.aborted,
        matched_rule: event.matched_rule.as_deref(),
        delete_marker: event.delete_marker,
        live_read: event.live_read,
        content_sha256: event.content_sha256.as_deref(),
        checksum: event.checksum.as_ref(),
        request_content_type: event.request_content_type.as_deref(),
        identity: event.identity.as_deref(),
        error_code: event.error_code.as_deref(),
    }
}

/// Appends one event as one JSON object to `out` (no newline).
pub fn write(event: &Event, out: &mut Vec<u8>) {
    serde_json::to_writer(out, &native(event)).expect("an event always serializes");
}

/// One event as one JSON object.
pub fn encode(event: &Event) -> Bytes {
    super::to_bytes(&native(event))
}

/// The events as one JSON array.
pub fn encode_array(events: &[Event]) -> Bytes {
    let all: Vec<NativeEvent<'_>> = events.iter().map(native).collect();
    super::to_bytes(&all)
}

/// The events as JSON lines: one object and `\n` per event.
pub fn encode_lines(events: &[Event]) -> Vec<u8> {
    let mut out = Vec::with_capacity(events.len() * 640);
    for event in events {
        write(event, &mut out);
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn every_event_field_is_in_the_schema() {
        // A field added to `Event` must be added here too (or the schema
        // version bumped): this fails until it is.
        let event = Event::new(S3Operation::PutObject, "PUT", 200, "https://h/b/k");
        let event_fields = serde_json::to_value(&event).unwrap();
        let schema: serde_json::Value = serde_json::from_slice(&encode(&event)).unwrap();
        for field in event_fields.as_object().unwrap().keys() {
            assert!(
                schema.get(field).is_some(),
                "Event::{field} is missing from {SCHEMA}"
            );
        }
    }

    #[test]
    fn time_is_rfc3339_and_the_schema_is_named() {
        let mut event = Event::new(S3Operation::GetObject, "GET", 404, "https://h/b/k");
        event.time = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        event.checksum = Some(ContentChecksum {
            algorithm: "CRC32".into(),
            value: "AAAAAA==".into(),
        });
        let v: serde_json::Value = serde_json::from_slice(&encode(&event)).unwrap();
        assert_eq!(v["schema"], "s3tap.event/1");
        assert_eq!(v["time"], "2023-11-14T22:13:20.123Z");
        assert_eq!(v["event_name"], "s3:ObjectAccessed:Get");
        assert_eq!(v["b2_event_type"], "s3tap:ObjectAccessed:Get");
        assert_eq!(v["operation"], "GetObject");
        assert_eq!(v["status"], 404);
        assert_eq!(
            v["checksum"],
            serde_json::json!({"algorithm": "CRC32", "value": "AAAAAA=="})
        );
        assert!(v["content_sha256"].is_null());
        let lines = encode_lines(&[event.clone(), event]);
        assert_eq!(lines.iter().filter(|&&b| b == b'\n').count(), 2);
    }
}
