//! The original Cloudflare Worker's webhook JSON, field for field, so that
//! receivers written for the Worker keep working behind s3tap.
//!
//! ```json
//! {"contentLength":14,"contentType":"text/plain","method":"PUT",
//!  "signatureTimestamp":"20220224T193204Z","status":200,
//!  "url":"https://s3.us-west-004.backblazeb2.com/my-bucket/tester.txt"}
//! ```
//!
//! The Worker read `contentType` and `signatureTimestamp` straight from the
//! request headers (`Content-Type`, `x-amz-date`), so each is a string or
//! `null`. `contentLength` is the request's `Content-Length` header parsed
//! as an integer: a JSON *number*, or `null` when the request had none (the
//! Worker's first version sent the header's text; the one its article shows
//! sends the number, and so does s3tap). `status` is the upstream
//! response's number and `url` the upstream URL with its query.
//! `contentType` is the request's `Content-Type`, also for reads, whose
//! [`Event::content_type`] is the object's
//! ([`Event::request_content_type`] keeps the request's there).

use bytes::Bytes;
use serde::Serialize;

use crate::notify::{Event, S3Operation};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SeedJson<'a> {
    content_length: Option<u64>,
    content_type: Option<&'a str>,
    method: &'a str,
    signature_timestamp: Option<&'a str>,
    status: u16,
    url: &'a str,
}

/// One event as the Worker's JSON.
pub fn encode(event: &Event) -> Bytes {
    super::to_bytes(&SeedJson {
        content_length: event.content_length,
        content_type: match event.operation {
            S3Operation::GetObject | S3Operation::HeadObject => {
                event.request_content_type.as_deref()
            }
            _ => event.content_type.as_deref(),
        },
        method: &event.method,
        signature_timestamp: event.signature_timestamp.as_deref(),
        status: event.status,
        url: &event.url,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_is_a_number_or_null() {
        let mut event = Event::new(S3Operation::PutObject, "PUT", 200, "https://h/b/k");
        event.content_length = Some(30155);
        let json: serde_json::Value = serde_json::from_slice(&encode(&event)).unwrap();
        assert_eq!(json["contentLength"], serde_json::json!(30155));
        event.content_length = None;
        let json: serde_json::Value = serde_json::from_slice(&encode(&event)).unwrap();
        assert!(json["contentLength"].is_null());
        assert!(json.as_object().unwrap().contains_key("contentLength"));
        // A read's content type is the object's; the Worker sent the
        // request's.
        let mut get = Event::new(S3Operation::GetObject, "GET", 200, "https://h/b/k");
        get.content_type = Some("image/png".into());
        let json: serde_json::Value = serde_json::from_slice(&encode(&get)).unwrap();
        assert!(json["contentType"].is_null());
    }
}
