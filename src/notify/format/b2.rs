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
//! B2 itself would not send carry an `s3tap:` (or `s3:`) event type. A
//! `CreateMultipartUpload` with `x-backblaze-live-read-enabled: true` is
//! `b2:MultipartUploadCreated:LiveRead`, as B2 names it.
//!
//! B2 posts with `User-Agent: B2/EventNotifications` ([`USER_AGENT`]), one
//! event per message unless a rule's `maxEventsPerBatch` (1 to 50) allows
//! more; the proxy does the same (`max_events_per_batch`, default 1). B2's
//! "Test Rule" posts one `b2:TestEvent` ([`encode_test_event`]), which names
//! no object:
//!
//! ```json
//! {"events":[{"accountId":"...","bucketId":"...","bucketName":"photos",
//!   "eventTimestamp":1700000000123,"eventType":"b2:TestEvent",
//!   "eventVersion":1,"matchedRuleName":"uploads"}]}
//! ```

use bytes::Bytes;
use serde::Serialize;

use super::FormatOptions;
use crate::notify::Event;

/// The most events one B2 notification message carries.
pub const MAX_EVENTS: usize = 50;

/// The `eventVersion` of the payloads.
pub const EVENT_VERSION: u32 = 1;

/// How many events B2 puts in one message unless told otherwise.
pub const DEFAULT_EVENTS_PER_BATCH: usize = 1;

/// The `User-Agent` of B2's notification requests.
pub const USER_AGENT: &str = "B2/EventNotifications";

/// The `eventType` of B2's "Test Rule" message.
pub const TEST_EVENT_TYPE: &str = "b2:TestEvent";

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

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TestEvent<'a> {
    account_id: &'a str,
    bucket_id: &'a str,
    bucket_name: &'a str,
    event_timestamp: u64,
    event_type: &'static str,
    event_version: u32,
    matched_rule_name: &'a str,
}

#[derive(Serialize)]
struct TestBody<'a> {
    events: [TestEvent<'a>; 1],
}

/// The message B2's "Test Rule" sends: one `b2:TestEvent` for `bucket` and
/// `rule`, at `time`, without `eventId` or any object field.
pub fn encode_test_event(
    options: &FormatOptions,
    bucket: &str,
    rule: &str,
    time: std::time::SystemTime,
) -> Bytes {
    let event_timestamp = time
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    super::to_bytes(&TestBody {
        events: [TestEvent {
            account_id: &options.b2.account_id,
            bucket_id: options.b2.bucket_id(bucket),
            bucket_name: bucket,
            event_timestamp,
            event_type: TEST_EVENT_TYPE,
            event_version: EVENT_VERSION,
            matched_rule_name: rule,
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn test_event_is_shaped_as_b2_sends_it() {
        let mut options = FormatOptions::default();
        options.b2.account_id = "e85c6a500333".into();
        options
            .b2
            .bucket_ids
            .insert("photos".into(), "aea8c5bc362ae55070130333".into());
        let time = UNIX_EPOCH + Duration::from_millis(1_684_793_309_123);
        let body = encode_test_event(&options, "photos", "uploads", time);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"events": [{
                "accountId": "e85c6a500333",
                "bucketId": "aea8c5bc362ae55070130333",
                "bucketName": "photos",
                "eventTimestamp": 1_684_793_309_123u64,
                "eventType": "b2:TestEvent",
                "eventVersion": 1,
                "matchedRuleName": "uploads",
            }]})
        );
    }
}
