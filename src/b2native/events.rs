//! The [`Event`]s of native API calls, in the crate's one event model: each
//! call is named by the S3 operation that does the same (so the B2 type, the
//! S3 name, rules and formats are those of `event_types`), its fields taken
//! from B2's JSON answer or download headers.

use std::net::IpAddr;
use std::time::Instant;

use base64::Engine as _;
use http::HeaderMap;
use serde_json::Value;

use super::state::Routes;
use crate::notify::{ContentChecksum, Event, S3Operation};
use crate::sigv4::canonical::percent_decode;

/// The native calls that make an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NativeOp {
    /// `b2_upload_file`: `b2:ObjectCreated:Upload`.
    UploadFile,
    /// `b2_upload_part`: s3tap's `MultipartUpload:UploadPart`.
    UploadPart,
    /// `b2_finish_large_file`: `b2:ObjectCreated:MultipartUpload`.
    FinishLargeFile,
    /// `b2_copy_file`: `b2:ObjectCreated:Copy`.
    CopyFile,
    /// `b2_delete_file_version`: `b2:ObjectDeleted:Delete`.
    DeleteFileVersion,
    /// `b2_hide_file`: `b2:HideMarkerCreated:Hide`.
    HideFile,
    /// `b2_download_file_by_id` (GET or HEAD).
    DownloadById,
    /// `/file/<bucket>/<name>` (GET or HEAD).
    DownloadByName,
}

impl NativeOp {
    /// The API operation's event-making kind, from its name.
    pub(crate) fn from_api_name(name: &str) -> Option<NativeOp> {
        Some(match name {
            "b2_finish_large_file" => NativeOp::FinishLargeFile,
            "b2_copy_file" => NativeOp::CopyFile,
            "b2_delete_file_version" => NativeOp::DeleteFileVersion,
            "b2_hide_file" => NativeOp::HideFile,
            _ => return None,
        })
    }

    fn s3_operation(self, method: &str) -> (S3Operation, bool) {
        match self {
            NativeOp::UploadFile => (S3Operation::PutObject, false),
            NativeOp::UploadPart => (S3Operation::UploadPart, false),
            NativeOp::FinishLargeFile => (S3Operation::CompleteMultipartUpload, false),
            NativeOp::CopyFile => (S3Operation::CopyObject, false),
            NativeOp::DeleteFileVersion => (S3Operation::DeleteObject, false),
            // Hiding a file is B2's delete marker.
            NativeOp::HideFile => (S3Operation::DeleteObject, true),
            NativeOp::DownloadById | NativeOp::DownloadByName if method == "HEAD" => {
                (S3Operation::HeadObject, false)
            }
            NativeOp::DownloadById | NativeOp::DownloadByName => (S3Operation::GetObject, false),
        }
    }
}

/// What the request itself tells an event.
#[derive(Clone, Debug)]
pub(crate) struct RequestFacts {
    pub(crate) method: String,
    /// The upstream URL, less a download's token (see `event_url`).
    pub(crate) path: String,
    pub(crate) request_id: Option<String>,
    pub(crate) source_ip: Option<IpAddr>,
    pub(crate) started: Instant,
    pub(crate) key_id: Option<String>,
    pub(crate) content_length: Option<u64>,
}

fn base_event(op: NativeOp, facts: &RequestFacts, status: u16) -> Event {
    let (operation, delete_marker) = op.s3_operation(&facts.method);
    let mut event = Event::new(operation, facts.method.clone(), status, facts.path.clone());
    event.delete_marker = delete_marker;
    event.request_id = facts.request_id.clone();
    event.source_ip = facts.source_ip;
    event.access_key_id = facts.key_id.clone();
    event.content_length = facts.content_length;
    event.duration_ms = facts.started.elapsed().as_millis() as u64;
    event
}

/// B2's `contentSha1` (hex, possibly `unverified:`-prefixed) as the event's
/// checksum (base64 of the digest, as S3 carries checksums).
fn sha1_checksum(hex_digest: &str) -> Option<ContentChecksum> {
    let hex_digest = hex_digest.strip_prefix("unverified:").unwrap_or(hex_digest);
    let mut digest = [0u8; 20];
    hex::decode_to_slice(hex_digest, &mut digest).ok()?;
    Some(sha1_value(&digest))
}

pub(crate) fn sha1_value(digest: &[u8; 20]) -> ContentChecksum {
    ContentChecksum {
        algorithm: "SHA1".to_owned(),
        value: base64::engine::general_purpose::STANDARD.encode(digest),
    }
}

fn text(value: Option<&Value>, field: &str) -> Option<String> {
    value?.get(field)?.as_str().map(str::to_owned)
}

/// The event of an API call or upload, from B2's answer (when it succeeded)
/// or the request (when it did not).
pub(crate) fn from_answer(
    op: NativeOp,
    facts: &RequestFacts,
    status: u16,
    answer: Option<&Value>,
    request: Option<&Value>,
    routes: &Routes,
) -> Event {
    let mut event = base_event(op, facts, status);
    let succeeded = (200..300).contains(&status);
    let file = if succeeded { answer } else { None };
    if !succeeded {
        event.error_code = text(answer, "code").or_else(|| Some(status.to_string()));
    }
    event.key = text(file, "fileName").or_else(|| text(request, "fileName"));
    event.version_id = text(file, "fileId").or_else(|| text(request, "fileId"));
    let bucket_id = text(file, "bucketId")
        .or_else(|| text(request, "bucketId"))
        .or_else(|| text(request, "destinationBucketId"));
    // Events name buckets; the native API names them by id, so the name is
    // the one learned from earlier answers, else the id.
    event.bucket = bucket_id.map(|id| routes.bucket_name(&id).unwrap_or(id));
    if op != NativeOp::HideFile && op != NativeOp::DeleteFileVersion {
        event.size = file
            .and_then(|f| f.get("contentLength"))
            .and_then(Value::as_u64);
    }
    event.content_type = text(file, "contentType");
    event.checksum = text(file, "contentSha1").and_then(|s| sha1_checksum(&s));
    event
}

/// The event of a download, from the answer's headers. `bucket` is the one
/// in a by-name path.
pub(crate) fn from_download(
    op: NativeOp,
    facts: &RequestFacts,
    status: u16,
    headers: &HeaderMap,
    bucket: Option<String>,
) -> Event {
    let mut event = base_event(op, facts, status);
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if !(200..300).contains(&status) {
        event.error_code = Some(status.to_string());
    }
    event.bucket = bucket;
    event.key = header("x-bz-file-name")
        .map(|name| String::from_utf8_lossy(&percent_decode(name, true)).into_owned());
    event.version_id = header("x-bz-file-id").map(str::to_owned);
    event.size = header("content-length").and_then(|v| v.parse().ok());
    event.content_type = header("content-type").map(str::to_owned);
    event.checksum = header("x-bz-content-sha1").and_then(sha1_checksum);
    event.content_length = None;
    event
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::event_types::names;
    use serde_json::json;

    fn facts(method: &str) -> RequestFacts {
        RequestFacts {
            method: method.into(),
            path: "/b2api/v3/x".into(),
            request_id: None,
            source_ip: None,
            started: Instant::now(),
            key_id: Some("key1".into()),
            content_length: None,
        }
    }

    #[test]
    fn native_calls_carry_b2s_event_types() {
        let routes = Routes::new(4, 4, 4);
        routes.remember_bucket("b1", "photos");
        let answer = json!({
            "fileId": "f1", "fileName": "a/b.txt", "bucketId": "b1",
            "contentLength": 5, "contentType": "text/plain",
            "contentSha1": "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d",
        });
        for (op, b2) in [
            (NativeOp::UploadFile, "b2:ObjectCreated:Upload"),
            (
                NativeOp::FinishLargeFile,
                "b2:ObjectCreated:MultipartUpload",
            ),
            (NativeOp::CopyFile, "b2:ObjectCreated:Copy"),
            (NativeOp::DeleteFileVersion, "b2:ObjectDeleted:Delete"),
            (NativeOp::HideFile, "b2:HideMarkerCreated:Hide"),
        ] {
            let event = from_answer(op, &facts("POST"), 200, Some(&answer), None, &routes);
            assert_eq!(names(&event).b2, Some(b2), "{op:?}");
            assert_eq!(event.bucket.as_deref(), Some("photos"));
            assert_eq!(event.key.as_deref(), Some("a/b.txt"));
            assert_eq!(event.version_id.as_deref(), Some("f1"));
            assert_eq!(event.access_key_id.as_deref(), Some("key1"));
        }
        let event = from_answer(
            NativeOp::UploadFile,
            &facts("POST"),
            200,
            Some(&answer),
            None,
            &routes,
        );
        assert_eq!(event.size, Some(5));
        assert_eq!(event.checksum.unwrap().algorithm, "SHA1");
    }

    #[test]
    fn a_failed_call_names_the_error() {
        let routes = Routes::new(4, 4, 4);
        let answer = json!({"status": 400, "code": "bad_request", "message": "m"});
        let request = json!({"bucketId": "b9", "fileName": "x"});
        let event = from_answer(
            NativeOp::HideFile,
            &facts("POST"),
            400,
            Some(&answer),
            Some(&request),
            &routes,
        );
        assert!(!event.succeeded());
        assert_eq!(event.error_code.as_deref(), Some("bad_request"));
        assert_eq!(event.bucket.as_deref(), Some("b9"));
        assert_eq!(event.key.as_deref(), Some("x"));
    }
}
