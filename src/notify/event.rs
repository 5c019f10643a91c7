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
        EventId(next_v7().to_string())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A UUIDv7 as `uuid::Uuid::now_v7` makes it (millisecond time, a 42-bit
/// counter seeded at random each millisecond, so ids from one process sort
/// in the order they were made, then random bits), with its random bits
/// from a userspace generator seeded once per thread instead of a
/// `getrandom` system call per event.
fn next_v7() -> uuid::Uuid {
    use std::sync::Mutex;
    const COUNTER_BITS: u32 = 42;
    const COUNTER_MAX: u64 = (1 << COUNTER_BITS) - 1;
    static LAST: Mutex<(u64, u64)> = Mutex::new((0, 0));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let (millis, counter) = {
        let mut last = LAST.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if now > last.0 {
            // A new millisecond: a fresh counter with its top bit clear,
            // so it has room to count up.
            *last = (now, fastrand::u64(..) & (COUNTER_MAX >> 1));
        } else if last.1 < COUNTER_MAX {
            last.1 += 1;
        } else {
            // The counter is spent (or the clock went back): borrow the
            // next millisecond.
            *last = (last.0 + 1, fastrand::u64(..) & (COUNTER_MAX >> 1));
        }
        *last
    };
    let millis = u128::from(millis & ((1 << 48) - 1));
    let counter = u128::from(counter);
    let random = u128::from(fastrand::u32(..));
    uuid::Uuid::from_u128(
        millis << 80
            | 0x7 << 76
            | (counter >> 30) << 64
            | 0b10 << 62
            | (counter & ((1 << 30) - 1)) << 32
            | random,
    )
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
    /// `GET /` (the service).
    ListBuckets,
    /// `HEAD /bucket`.
    HeadBucket,
    /// `GET /bucket/key?uploadId=..`.
    ListParts,
    /// `GET /bucket?uploads`.
    ListMultipartUploads,
    /// `GET /bucket?versions`.
    ListObjectVersions,
    /// `GET /bucket/key?tagging`.
    GetObjectTagging,
    /// `PUT /bucket/key?tagging`.
    PutObjectTagging,
    /// `DELETE /bucket/key?tagging`.
    DeleteObjectTagging,
    /// `GET /bucket/key?acl`.
    GetObjectAcl,
    /// `PUT /bucket/key?acl`.
    PutObjectAcl,
    /// `GET /bucket/key?retention`.
    GetObjectRetention,
    /// `PUT /bucket/key?retention`.
    PutObjectRetention,
    /// `GET /bucket/key?legal-hold`.
    GetObjectLegalHold,
    /// `PUT /bucket/key?legal-hold`.
    PutObjectLegalHold,
    /// `POST /bucket/key?restore`.
    RestoreObject,
    /// `GET /bucket/key?attributes`.
    GetObjectAttributes,
    /// `POST /bucket/key?select&select-type=2`.
    SelectObjectContent,
    /// `GET /bucket/key?torrent`.
    GetObjectTorrent,
    /// `GET /bucket?location`.
    GetBucketLocation,
    /// `GET /bucket?versioning`.
    GetBucketVersioning,
    /// `PUT /bucket?versioning`.
    PutBucketVersioning,
    /// `GET /bucket?policy`.
    GetBucketPolicy,
    /// `PUT /bucket?policy`.
    PutBucketPolicy,
    /// `DELETE /bucket?policy`.
    DeleteBucketPolicy,
    /// `GET /bucket?policyStatus`.
    GetBucketPolicyStatus,
    /// `GET /bucket?cors`.
    GetBucketCors,
    /// `PUT /bucket?cors`.
    PutBucketCors,
    /// `DELETE /bucket?cors`.
    DeleteBucketCors,
    /// `GET /bucket?lifecycle`.
    GetBucketLifecycleConfiguration,
    /// `PUT /bucket?lifecycle`.
    PutBucketLifecycleConfiguration,
    /// `DELETE /bucket?lifecycle`.
    DeleteBucketLifecycle,
    /// `GET /bucket?tagging`.
    GetBucketTagging,
    /// `PUT /bucket?tagging`.
    PutBucketTagging,
    /// `DELETE /bucket?tagging`.
    DeleteBucketTagging,
    /// `GET /bucket?encryption`.
    GetBucketEncryption,
    /// `PUT /bucket?encryption`.
    PutBucketEncryption,
    /// `DELETE /bucket?encryption`.
    DeleteBucketEncryption,
    /// `GET /bucket?notification`.
    GetBucketNotificationConfiguration,
    /// `PUT /bucket?notification`.
    PutBucketNotificationConfiguration,
    /// `GET /bucket?acl`.
    GetBucketAcl,
    /// `PUT /bucket?acl`.
    PutBucketAcl,
    /// `GET /bucket?website`.
    GetBucketWebsite,
    /// `PUT /bucket?website`.
    PutBucketWebsite,
    /// `DELETE /bucket?website`.
    DeleteBucketWebsite,
    /// `GET /bucket?logging`.
    GetBucketLogging,
    /// `PUT /bucket?logging`.
    PutBucketLogging,
    /// `GET /bucket?replication`.
    GetBucketReplication,
    /// `PUT /bucket?replication`.
    PutBucketReplication,
    /// `DELETE /bucket?replication`.
    DeleteBucketReplication,
    /// `GET /bucket?object-lock`.
    GetObjectLockConfiguration,
    /// `PUT /bucket?object-lock`.
    PutObjectLockConfiguration,
    /// `GET /bucket?publicAccessBlock`.
    GetPublicAccessBlock,
    /// `PUT /bucket?publicAccessBlock`.
    PutPublicAccessBlock,
    /// `DELETE /bucket?publicAccessBlock`.
    DeletePublicAccessBlock,
    /// `GET /bucket?ownershipControls`.
    GetBucketOwnershipControls,
    /// `PUT /bucket?ownershipControls`.
    PutBucketOwnershipControls,
    /// `DELETE /bucket?ownershipControls`.
    DeleteBucketOwnershipControls,
    /// `GET /bucket?accelerate`.
    GetBucketAccelerateConfiguration,
    /// `PUT /bucket?accelerate`.
    PutBucketAccelerateConfiguration,
    /// `GET /bucket?requestPayment`.
    GetBucketRequestPayment,
    /// `PUT /bucket?requestPayment`.
    PutBucketRequestPayment,
    /// Anything else.
    Other,
}

impl S3Operation {
    /// The operation's AWS API name (`PutObject`, `GetBucketVersioning`,
    /// ...), or `Other`: stable, for logs and metric labels.
    pub fn as_str(&self) -> &'static str {
        match self {
            S3Operation::PutObject => "PutObject",
            S3Operation::CopyObject => "CopyObject",
            S3Operation::CreateMultipartUpload => "CreateMultipartUpload",
            S3Operation::UploadPart => "UploadPart",
            S3Operation::UploadPartCopy => "UploadPartCopy",
            S3Operation::CompleteMultipartUpload => "CompleteMultipartUpload",
            S3Operation::AbortMultipartUpload => "AbortMultipartUpload",
            S3Operation::DeleteObject => "DeleteObject",
            S3Operation::DeleteObjects => "DeleteObjects",
            S3Operation::GetObject => "GetObject",
            S3Operation::HeadObject => "HeadObject",
            S3Operation::ListObjects => "ListObjects",
            S3Operation::ListObjectsV2 => "ListObjectsV2",
            S3Operation::CreateBucket => "CreateBucket",
            S3Operation::DeleteBucket => "DeleteBucket",
            S3Operation::PostObject => "PostObject",
            S3Operation::ListBuckets => "ListBuckets",
            S3Operation::HeadBucket => "HeadBucket",
            S3Operation::ListParts => "ListParts",
            S3Operation::ListMultipartUploads => "ListMultipartUploads",
            S3Operation::ListObjectVersions => "ListObjectVersions",
            S3Operation::GetObjectTagging => "GetObjectTagging",
            S3Operation::PutObjectTagging => "PutObjectTagging",
            S3Operation::DeleteObjectTagging => "DeleteObjectTagging",
            S3Operation::GetObjectAcl => "GetObjectAcl",
            S3Operation::PutObjectAcl => "PutObjectAcl",
            S3Operation::GetObjectRetention => "GetObjectRetention",
            S3Operation::PutObjectRetention => "PutObjectRetention",
            S3Operation::GetObjectLegalHold => "GetObjectLegalHold",
            S3Operation::PutObjectLegalHold => "PutObjectLegalHold",
            S3Operation::RestoreObject => "RestoreObject",
            S3Operation::GetObjectAttributes => "GetObjectAttributes",
            S3Operation::SelectObjectContent => "SelectObjectContent",
            S3Operation::GetObjectTorrent => "GetObjectTorrent",
            S3Operation::GetBucketLocation => "GetBucketLocation",
            S3Operation::GetBucketVersioning => "GetBucketVersioning",
            S3Operation::PutBucketVersioning => "PutBucketVersioning",
            S3Operation::GetBucketPolicy => "GetBucketPolicy",
            S3Operation::PutBucketPolicy => "PutBucketPolicy",
            S3Operation::DeleteBucketPolicy => "DeleteBucketPolicy",
            S3Operation::GetBucketPolicyStatus => "GetBucketPolicyStatus",
            S3Operation::GetBucketCors => "GetBucketCors",
            S3Operation::PutBucketCors => "PutBucketCors",
            S3Operation::DeleteBucketCors => "DeleteBucketCors",
            S3Operation::GetBucketLifecycleConfiguration => "GetBucketLifecycleConfiguration",
            S3Operation::PutBucketLifecycleConfiguration => "PutBucketLifecycleConfiguration",
            S3Operation::DeleteBucketLifecycle => "DeleteBucketLifecycle",
            S3Operation::GetBucketTagging => "GetBucketTagging",
            S3Operation::PutBucketTagging => "PutBucketTagging",
            S3Operation::DeleteBucketTagging => "DeleteBucketTagging",
            S3Operation::GetBucketEncryption => "GetBucketEncryption",
            S3Operation::PutBucketEncryption => "PutBucketEncryption",
            S3Operation::DeleteBucketEncryption => "DeleteBucketEncryption",
            S3Operation::GetBucketNotificationConfiguration => "GetBucketNotificationConfiguration",
            S3Operation::PutBucketNotificationConfiguration => "PutBucketNotificationConfiguration",
            S3Operation::GetBucketAcl => "GetBucketAcl",
            S3Operation::PutBucketAcl => "PutBucketAcl",
            S3Operation::GetBucketWebsite => "GetBucketWebsite",
            S3Operation::PutBucketWebsite => "PutBucketWebsite",
            S3Operation::DeleteBucketWebsite => "DeleteBucketWebsite",
            S3Operation::GetBucketLogging => "GetBucketLogging",
            S3Operation::PutBucketLogging => "PutBucketLogging",
            S3Operation::GetBucketReplication => "GetBucketReplication",
            S3Operation::PutBucketReplication => "PutBucketReplication",
            S3Operation::DeleteBucketReplication => "DeleteBucketReplication",
            S3Operation::GetObjectLockConfiguration => "GetObjectLockConfiguration",
            S3Operation::PutObjectLockConfiguration => "PutObjectLockConfiguration",
            S3Operation::GetPublicAccessBlock => "GetPublicAccessBlock",
            S3Operation::PutPublicAccessBlock => "PutPublicAccessBlock",
            S3Operation::DeletePublicAccessBlock => "DeletePublicAccessBlock",
            S3Operation::GetBucketOwnershipControls => "GetBucketOwnershipControls",
            S3Operation::PutBucketOwnershipControls => "PutBucketOwnershipControls",
            S3Operation::DeleteBucketOwnershipControls => "DeleteBucketOwnershipControls",
            S3Operation::GetBucketAccelerateConfiguration => "GetBucketAccelerateConfiguration",
            S3Operation::PutBucketAccelerateConfiguration => "PutBucketAccelerateConfiguration",
            S3Operation::GetBucketRequestPayment => "GetBucketRequestPayment",
            S3Operation::PutBucketRequestPayment => "PutBucketRequestPayment",
            S3Operation::Other => "Other",
        }
    }
}

impl std::fmt::Display for S3Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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
    /// content length for reads, the sum of the parts seen for a multipart
    /// completion (or what a [`SizeLookup`](super::SizeLookup) found).
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
    /// Who the verified client is: the credential store's identity name
    /// (a `[[clients]]` entry's `identity`, else its access key id). Rules
    /// match `clients` against it and against [`Event::access_key_id`].
    #[serde(default)]
    pub identity: Option<String>,
    /// The S3 error code of an operation that failed after answering `200`
    /// (CompleteMultipartUpload and copies put an `<Error>` in the body);
    /// such an event is not a success whatever its status says.
    #[serde(default)]
    pub error_code: Option<String>,
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

    /// Whether the operation succeeded: a 2xx status and no
    /// [`error_code`](Event::error_code) from the body. What S3 and B2
    /// notify, and what a rule's `status = "success"` lets through.
    pub fn succeeded(&self) -> bool {
        (200..300).contains(&self.status) && self.error_code.is_none()
    }

    /// Whether the request may have changed the store: any method but
    /// `GET` and `HEAD`, except a Select, which only reads. The events
    /// [`NotifyLayer::commit_before_answer`](super::NotifyLayer::commit_before_answer) commits before the answer.
    pub fn may_change_state(&self) -> bool {
        !matches!(self.method.as_str(), "GET" | "HEAD")
            && self.operation != S3Operation::SelectObjectContent
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
            identity: None,
            error_code: None,
            live_read: false,
            content_sha256: None,
            checksum: None,
            request_content_type: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_are_uuid_v7_in_the_order_they_were_made() {
        let ids: Vec<String> = (0..10_000).map(|_| EventId::new().0).collect();
        for id in &ids {
            let uuid = uuid::Uuid::parse_str(id).unwrap();
            assert_eq!(uuid.get_version_num(), 7, "{id}");
            assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122, "{id}");
        }
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "not increasing");
        let millis = uuid::Uuid::parse_str(&ids[0])
            .unwrap()
            .get_timestamp()
            .unwrap()
            .to_unix();
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        assert!(now.as_secs().abs_diff(millis.0) < 60);
    }

    #[test]
    fn success_needs_a_2xx_and_no_error_in_the_body() {
        let mut event = Event::new(S3Operation::CompleteMultipartUpload, "POST", 200, "u");
        assert!(event.succeeded());
        event.error_code = Some("InternalError".into());
        assert!(!event.succeeded());
        for status in [199, 304, 404, 500] {
            assert!(!Event::new(S3Operation::PutObject, "PUT", status, "u").succeeded());
        }
        assert!(Event::new(S3Operation::DeleteObject, "DELETE", 204, "u").succeeded());
    }

    #[test]
    fn an_event_without_error_code_still_deserializes() {
        let event = Event::new(S3Operation::PutObject, "PUT", 200, "u");
        let mut json = serde_json::to_value(&event).unwrap();
        json.as_object_mut().unwrap().remove("error_code");
        let back: Event = serde_json::from_value(json).unwrap();
        assert_eq!(back, event);
    }

    #[test]
    fn operation_names_are_the_variants() {
        for operation in [
            S3Operation::PutObject,
            S3Operation::ListBuckets,
            S3Operation::GetBucketNotificationConfiguration,
            S3Operation::Other,
        ] {
            assert_eq!(operation.as_str(), format!("{operation:?}"));
            assert_eq!(serde_json::to_value(operation).unwrap(), operation.as_str());
        }
    }
}
