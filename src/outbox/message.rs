//! One message of the outbox: a routed copy of an event, its subject, its
//! de-duplication id and its headers, and the way back from a message.

use std::sync::Arc;

use async_nats::HeaderMap;
use bytes::Bytes;

use crate::notify::Event;

/// Header naming the sink a message is for.
pub(crate) const SINK_HEADER: &str = "S3tap-Sink";
/// Header naming the rule that routed the event (absent without one).
pub(crate) const RULE_HEADER: &str = "S3tap-Rule";
/// Header of a dead letter: why it was given up on.
pub(crate) const REASON_HEADER: &str = "S3tap-Reason";
/// Header of a dead letter: delivery attempts made.
pub(crate) const ATTEMPTS_HEADER: &str = "S3tap-Attempts";
/// Header of a dead letter: when it was given up on (ms since the epoch).
pub(crate) const DEAD_SINCE_HEADER: &str = "S3tap-Dead-Since";

/// The shard of an event's subject: a hash (FNV-1a) of bucket and key, so
/// that one object's events share a subject and keep their order there.
pub fn shard_of(event: &Event) -> u8 {
    let mut hash: u32 = 0x811c_9dc5;
    let bucket = event.bucket.as_deref().unwrap_or("");
    let key = event.key.as_deref().unwrap_or("");
    for byte in bucket.bytes().chain([b'/']).chain(key.bytes()) {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    (hash ^ (hash >> 8) ^ (hash >> 16) ^ (hash >> 24)) as u8
}

/// A routed copy of an event as the outbox carries it.
#[derive(Clone, Debug)]
pub struct OutboxMessage {
    /// The sink it is for.
    pub sink: Arc<str>,
    /// The event (its `matched_rule` names the rule that routed it).
    pub event: Event,
}

impl OutboxMessage {
    /// The de-duplication id: event id, sink and rule (one event may go to
    /// one sink through two rules, as B2 sends it).
    pub fn msg_id(&self) -> String {
        format!(
            "{}:{}:{}",
            self.event.id.as_str(),
            self.sink,
            self.event.matched_rule.as_deref().unwrap_or("")
        )
    }

    /// The subject under `prefix`: `<prefix>.<sink>.<shard>`.
    pub fn subject(&self, prefix: &str) -> String {
        format!("{prefix}.{}.{:02x}", self.sink, shard_of(&self.event))
    }

    pub(crate) fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, self.msg_id().as_str());
        headers.insert(SINK_HEADER, &*self.sink);
        if let Some(rule) = &self.event.matched_rule {
            headers.insert(RULE_HEADER, rule.as_str());
        }
        headers
    }

    pub(crate) fn payload(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(&self.event).expect("an Event always serializes"))
    }

    /// Reads a message back: the sink from its header (or, failing that,
    /// the subject's token after `prefix`) and the event from its body.
    pub(crate) fn decode(
        subject: &str,
        headers: Option<&HeaderMap>,
        payload: &[u8],
        prefix: &str,
    ) -> Result<OutboxMessage, String> {
        let sink = headers
            .and_then(|h| h.get(SINK_HEADER))
            .map(|v| v.as_str().to_owned())
            .or_else(|| {
                subject
                    .strip_prefix(prefix)
                    .and_then(|rest| rest.strip_prefix('.'))
                    .and_then(|rest| rest.split('.').next())
                    .map(str::to_owned)
            })
            .ok_or_else(|| format!("message on {subject} names no sink"))?;
        let event: Event = serde_json::from_slice(payload)
            .map_err(|e| format!("message on {subject} is not an event: {e}"))?;
        Ok(OutboxMessage {
            sink: Arc::from(sink),
            event,
        })
    }
}

/// Whether `name` can be one token of a subject: what a sink's name must be
/// in fleet mode.
pub(crate) fn is_subject_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::S3Operation;

    fn put(bucket: &str, key: &str) -> Event {
        let mut event = Event::new(S3Operation::PutObject, "PUT", 200, "http://up/b/k");
        event.bucket = Some(bucket.into());
        event.key = Some(key.into());
        event
    }

    #[test]
    fn one_object_keeps_one_subject_and_objects_spread() {
        let message = |key: &str| OutboxMessage {
            sink: Arc::from("hook"),
            event: put("photos", key),
        };
        assert_eq!(
            message("a.jpg").subject("s3tap.events"),
            message("a.jpg").subject("s3tap.events")
        );
        let shards: std::collections::HashSet<u8> = (0..200)
            .map(|i| shard_of(&put("photos", &format!("k{i}"))))
            .collect();
        assert!(shards.len() > 100, "200 keys in {} shards", shards.len());
        assert!(message("a.jpg")
            .subject("s3tap.events")
            .starts_with("s3tap.events.hook."));
    }

    #[test]
    fn a_message_reads_back_with_its_sink_and_event() {
        let mut event = put("b", "k");
        event.matched_rule = Some("uploads".into());
        let message = OutboxMessage {
            sink: Arc::from("hook"),
            event,
        };
        assert!(message.msg_id().ends_with(":hook:uploads"));
        let subject = message.subject("p");
        let back =
            OutboxMessage::decode(&subject, Some(&message.headers()), &message.payload(), "p")
                .unwrap();
        assert_eq!(&*back.sink, "hook");
        assert_eq!(back.event, message.event);
        // Without headers the subject names the sink.
        let back = OutboxMessage::decode(&subject, None, &message.payload(), "p").unwrap();
        assert_eq!(&*back.sink, "hook");
        assert!(OutboxMessage::decode(&subject, None, b"{", "p").is_err());
    }

    #[test]
    fn sink_names_must_be_subject_tokens() {
        assert!(is_subject_token("orders-hook_2"));
        for bad in ["", "a.b", "a b", "a*", "a>"] {
            assert!(!is_subject_token(bad), "{bad:?}");
        }
    }
}
