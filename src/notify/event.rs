//! The [`Event`]: what happened to which object, as every format and sink
//! sees it.

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// A stable event id (UUIDv7: time-ordered, unique), the key every sink and
/// format uses for de-duplication under at-least-once delivery.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventId(pub String);

impl EventId {
    /// A new id.
    pub fn new() -> Self {
        EventId(uuid::Uuid::now_v7().to_string())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for EventId {
    fn default() -> Self {
        EventId::new()
    }
}

impl std::fmt::Display for EventId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The S3 operation a request performed, classified from method, path,
/// query and headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum S3Operation {
    /// `PUT /bucket/key`.
    PutObject,
    /// `PUT /bucket/key` with `x-amz-copy-source`.
    CopyObject,
    /// `POST /bucket/key?uploads`.
    CreateMultipartUpload,
    /// `PUT /bucket/key?partNumber=N&uploadId=..`.
    UploadPart,
    /// `PUT ...?partNumber&uploadId` with `x-amz-copy-source`.
    UploadPartCopy,
    /// `POST /bucket/key?uploadId=..`.
    CompleteMultipartUpload,
    /// `DELETE /bucket/key?uploadId=..`.
    AbortMultipartUpload,
    /// `DELETE /bucket/key`.
    DeleteObject,
    /// `POST /bucket?delete` (one event per deleted key).
    DeleteObjects,
    /// `GET /bucket/key`.
    GetObject,
    /// `HEAD /bucket/key`.
    HeadObject,
    /// `GET /bucket`.
    ListObjects,
    /// `GET /bucket?list-type=2`.
    ListObjectsV2,
    /// `PUT /bucket`.
    CreateBucket,
    /// `DELETE /bucket`.
    DeleteBucket,
    /// `POST /bucket` with a form upload.
    PostObject,
    /// Anything else.
    Other,
}

/// One event: an operation on an object (or bucket), with everything the
/// formats need.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Stable id for de-duplication.
    pub id: EventId,
    /// When the event happened (the response head arrived).
    pub time: SystemTime,
    /// The operation.
    pub operation: S3Operation,
    /// Bucket name.
    pub bucket: Option<String>,
    /// Object key, decoded (not URL-encoded).
    pub key: Option<String>,
    /// Version id (`x-amz-version-id` of the response).
    pub version_id: Option<String>,
    /// Object size: the request's payload length for uploads, the response's
    /// content length for reads.
    pub size: Option<u64>,
    /// ETag without quotes.
    pub etag: Option<String>,
    /// Content type.
    pub content_type: Option<String>,
    /// HTTP status of the response.
    pub status: u16,
    /// HTTP method.
    pub method: String,
    /// The upstream URL with its query (the original Worker's `url`).
    pub url: String,
    /// `x-amz-date` of the client's signature.
    pub signature_timestamp: Option<String>,
    /// The client's access key id, once verified.
    pub access_key_id: Option<String>,
    /// The client's address.
    pub source_ip: Option<IpAddr>,
    /// The upstream's `x-amz-request-id`.
    pub upstream_request_id: Option<String>,
    /// s3tap's own request id.
    pub request_id: Option<String>,
    /// Request `Content-Length` as sent (the original Worker's `contentLength`).
    pub content_length: Option<u64>,
    /// Time from request to response head (or body end), milliseconds.
    pub duration_ms: u64,
    /// Response body bytes sent, when the event is emitted at body end.
    pub bytes_sent: Option<u64>,
    /// Whether the response body was cut short (client went away, error).
    pub aborted: bool,
    /// Set by routing: the rule that matched (B2's `matchedRuleName`).
    pub matched_rule: Option<String>,
    /// Whether the delete created a delete marker (versioned bucket): the
    /// response carried `x-amz-delete-marker: true`, or the DeleteObjects
    /// result said `<DeleteMarker>true</DeleteMarker>`. Decides between
    /// `ObjectRemoved:Delete` and `ObjectRemoved:DeleteMarkerCreated`.
    #[serde(default)]
    pub delete_marker: bool,
    /// A `CreateMultipartUpload` that asked B2 for Live Read
    /// (`x-backblaze-live-read-enabled: true`): B2 names it
    /// `b2:MultipartUploadCreated:LiveRead`.
    #[serde(default)]
    pub live_read: bool,
    /// Lower-case hex SHA-256 of the request payload, set only when s3tap
    /// itself hashed the payload and it matched the signed
    /// `x-amz-content-sha256` (never with `payload_hashing = "defer"`).
    #[serde(default)]
    pub content_sha256: Option<String>,
    /// The `x-amz-checksum-*` header or trailer of the request, set only when
    /// s3tap computed it over the payload and it matched.
    #[serde(default)]
    pub checksum: Option<ContentChecksum>,
    /// The request's `Content-Type` where [`Event::content_type`] is the
    /// response's (GetObject, HeadObject) and the request had one; `None`
    /// otherwise. The seed format reports the request's, as the Worker did.
    #[serde(default)]
    pub request_content_type: Option<String>,
}

/// An S3 additional checksum that s3tap verified over an upload's payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentChecksum {
    /// S3's name of the algorithm: `CRC32`, `CRC32C`, `CRC64NVME`, `SHA1`
    /// or `SHA256`.
    pub algorithm: String,
    /// The value as S3 carries it: base64 of the big-endian digest.
    pub value: String,
}

impl Event {
    /// Milliseconds since the Unix epoch of [`Event::time`].
    pub fn time_millis(&self) -> u64 {
        self.time
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }

    /// An event with only the required fields set (for tests and custom
    /// producers).
    pub fn new(
        operation: S3Operation,
        method: impl Into<String>,
        status: u16,
        url: impl Into<String>,
    ) -> Self {
        Event {
            id: EventId::new(),
            time: SystemTime::now(),
            operation,
            bucket: None,
            key: None,
            version_id: None,
            size: None,
            etag: None,
            content_type: None,
            status,
            method: method.into(),
            url: url.into(),
            signature_timestamp: None,
            access_key_id: None,
            source_ip: None,
            upstream_request_id: None,
            request_id: None,
            content_length: None,
            duration_ms: 0,
            bytes_sent: None,
            aborted: false,
            matched_rule: None,
            delete_marker: false,
            live_read: false,
            content_sha256: None,
            checksum: None,
            request_content_type: None,
        }
    }
}
