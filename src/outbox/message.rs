//! One message of the outbox: a routed copy of an event, its subject, its
//! de-duplication id and its headers, and the way back from a message.

use std::sync::Arc;

#[cfg(feature = "outbox-nats")]
use async_nats::HeaderMap;
use bytes::Bytes;

use crate::notify::{DeadLetterFilter, Event};

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
/// Header carrying the de-duplication id where the engine has no header of
/// its own for it (Kafka; JetStream uses `Nats-Msg-Id`).
#[cfg(feature = "outbox-kafka")]
pub(crate) const MSG_ID_HEADER: &str = "S3tap-Msg-Id";

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

    /// The headers every engine carries: the sink, and the rule when one
    /// routed the event.
    pub(crate) fn header_pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = vec![(SINK_HEADER, self.sink.to_string())];
        if let Some(rule) = &self.event.matched_rule {
            pairs.push((RULE_HEADER, rule.clone()));
        }
        pairs
    }

    /// Reads a message back from its sink (as its header names it) and
    /// its body; `place` says where it was read, for errors.
    pub(crate) fn from_parts(
        sink: Option<String>,
        payload: &[u8],
        place: &str,
    ) -> Result<OutboxMessage, String> {
        let sink = sink.ok_or_else(|| format!("message on {place} names no sink"))?;
        let event: Event = serde_json::from_slice(payload)
            .map_err(|e| format!("message on {place} is not an event: {e}"))?;
        Ok(OutboxMessage {
            sink: Arc::from(sink),
            event,
        })
    }

    /// The subject under `prefix`: `<prefix>.<sink>.<shard>`.
    #[cfg(feature = "outbox-nats")]
    pub fn subject(&self, prefix: &str) -> String {
        format!("{prefix}.{}.{:02x}", self.sink, shard_of(&self.event))
    }

    #[cfg(feature = "outbox-nats")]
    pub(crate) fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, self.msg_id().as_str());
        for (name, value) in self.header_pairs() {
            headers.insert(name, value.as_str());
        }
        headers
    }

    pub(crate) fn payload(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(&self.event).expect("an Event always serializes"))
    }

    /// Reads a message back: the sink from its header (or, failing that,
    /// the subject's token after `prefix`) and the event from its body.
    #[cfg(feature = "outbox-nats")]
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
            });
        Self::from_parts(sink, payload, subject)
    }
}

/// A dead letter as the engine's dead-letter stream or topic keeps it.
#[derive(Clone, Debug)]
pub struct OutboxDeadLetter {
    /// Its sequence in the dead-letter stream, or its offset in its
    /// partition of the dead-letter topic (what a redrive or purge
    /// removes).
    pub seq: u64,
    /// Its partition of the dead-letter topic (Kafka).
    pub partition: Option<i32>,
    /// The sink it was for.
    pub sink: String,
    /// Why it was given up on.
    pub reason: String,
    /// Delivery attempts made.
    pub attempts: u32,
    /// When it was given up on (ms since the Unix epoch).
    pub dead_since_ms: u64,
    /// The event.
    pub event: Event,
}

impl OutboxDeadLetter {
    /// Whether `filter` selects it at `now_ms`.
    pub(crate) fn selected_by(&self, filter: &DeadLetterFilter, now_ms: u64) -> bool {
        let age = std::time::Duration::from_millis(now_ms.saturating_sub(self.dead_since_ms));
        filter.sink.as_deref().is_none_or(|s| s == self.sink)
            && filter
                .id
                .as_deref()
                .is_none_or(|id| id == self.event.id.as_str())
            && filter.older_than.is_none_or(|min| age >= min)
            && filter.newer_than.is_none_or(|max| age < max)
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

    #[cfg(feature = "outbox-nats")]
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

    #[cfg(feature = "outbox-nats")]
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
