//! The original Cloudflare Worker's webhook JSON, field for field, so that
//! receivers written for the Worker keep working behind s3tap.
//!
//! ```json
//! {"contentLength":"14","contentType":"text/plain","method":"PUT",
//!  "signatureTimestamp":"20220224T193204Z","status":200,
//!  "url":"https://s3.us-west-004.backblazeb2.com/my-bucket/tester.txt"}
//! ```
//!
//! The Worker read `contentLength`, `contentType` and `signatureTimestamp`
//! straight from the request headers (`Content-Length`, `Content-Type`,
//! `x-amz-date`), so each is a *string* or `null`: `contentLength` is the
//! header's text, not a number. `status` is the upstream response's number
//! and `url` the upstream URL with its query. For the exact Worker output the
//! layer fills [`Event::content_type`] from the request's `Content-Type`.

use bytes::Bytes;
use serde::Serialize;

use crate::notify::Event;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SeedJson<'a> {
    content_length: Option<String>,
    content_type: Option<&'a str>,
    method: &'a str,
    signature_timestamp: Option<&'a str>,
    status: u16,
    url: &'a str,
}

/// One event as the Worker's JSON.
pub fn encode(event: &Event) -> Bytes {
    super::to_bytes(&SeedJson {
        content_length: event.content_length.map(|n| n.to_string()),
        content_type: event.content_type.as_deref(),
        method: &event.method,
        signature_timestamp: event.signature_timestamp.as_deref(),
        status: event.status,
        url: &event.url,
    })
}
