//! Backblaze B2 Event Notifications payloads.
//!
//! ```json
//! {"events":[{"accountId":"...","bucketId":"...","bucketName":"photos",
//!   "eventId":"...","eventTimestamp":1700000000123,
//!   "eventType":"b2:ObjectCreated:Upload","eventVersion":1,
//!   "matchedRuleName":"uploads","objectName":"a/b.jpg",
//!   "objectSize":123,"objectVersionId":"..."}]}
//! ```
//!
//! `eventTimestamp` is milliseconds since the Unix epoch (a number) and
//! `eventVersion` the number 1. `objectSize` and `objectVersionId` are left
//! out when unknown (B2 omits them for some deletes) rather than sent as
//! `null`, which receivers typed after B2's payload would not expect.
//! `accountId` and `bucketId` come from [`B2Identity`](super::B2Identity);
//! an unconfigured bucket's id is its name. `matchedRuleName` is the routing
//! rule's name, empty if the event was not routed through rules. Events that
//! B2 itself would not send carry an `s3tap:` event type.

use bytes::Bytes;
use serde::Serialize;

use super::FormatOptions;
use crate::notify::Event;

/// The most events one B2 notification message carries.
pub const MAX_EVENTS: usize = 50;

/// The `eventVersion` of the payloads.
pub const EVENT_VERSION: u32 = 1;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct B2Event<'a> {
    account_id: &'a str,
    bucket_id: &'a str,
    bucket_name: &'a str,
    event_id: &'a str,
    event_timestamp: u64,
    event_type: &'static str,
    event_version: u32,
    matched_rule_name: &'a str,
    object_name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    object_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    object_version_id: Option<&'a str>,
}

#[derive(Serialize)]
struct B2Body<'a> {
    events: Vec<B2Event<'a>>,
}

/// The events as one B2 message (the caller keeps to [`MAX_EVENTS`]).
pub fn encode(events: &[Event], options: &FormatOptions) -> Bytes {
    let events = events
        .iter()
        .map(|event| {
            let bucket = event.bucket.as_deref().unwrap_or("");
            B2Event {
                account_id: &options.b2.account_id,
                bucket_id: options.b2.bucket_id(bucket),
                bucket_name: bucket,
                event_id: event.id.as_str(),
                event_timestamp: event.time_millis(),
                event_type: event.b2_event_type(),
                event_version: EVENT_VERSION,
                matched_rule_name: event.matched_rule.as_deref().unwrap_or(""),
                object_name: event.key.as_deref().unwrap_or(""),
                object_size: event.size,
                object_version_id: event.version_id.as_deref(),
            }
        })
        .collect();
    super::to_bytes(&B2Body { events })
}
