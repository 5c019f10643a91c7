//! Why a webhook was refused, and the JSON response each refusal becomes.

use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::Full;

/// A reason to refuse a webhook request.
///
/// Every variant maps to one HTTP status and one stable machine-readable
/// `error` code (see [`WebhookError::status`] and [`WebhookError::code`]); the
/// layer answers with a small JSON body such as
/// `{"error":"invalid_signature","message":"no signature matches the body"}`.
/// Messages never contain secrets, expected signatures or body bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// A header the scheme needs is absent. `401`, code `missing_header`.
    #[error("the {0} header is missing")]
    MissingHeader(HeaderName),
    /// A header is present but cannot be parsed (not ASCII, repeated, wrong
    /// prefix, bad hex or base64, non-numeric timestamp...). `401`, code
    /// `malformed_header`.
    #[error("the {header} header is malformed: {reason}")]
    MalformedHeader {
        /// The offending header.
        header: HeaderName,
        /// What is wrong with it, for the sender's operator.
        reason: &'static str,
    },
    /// No signature in the request matches the body under any configured
    /// secret. `401`, code `invalid_signature`.
    #[error("no signature matches the request")]
    InvalidSignature,
    /// The signed timestamp is older than the tolerance allows. `403`, code
    /// `stale_timestamp`.
    #[error("the timestamp is {age_secs} s old, beyond the {tolerance_secs} s tolerance")]
    StaleTimestamp {
        /// How far in the past the timestamp is.
        age_secs: u64,
        /// The configured tolerance.
        tolerance_secs: u64,
    },
    /// The signed timestamp lies further in the future than the tolerance
    /// allows. `403`, code `future_timestamp`.
    #[error(
        "the timestamp is {ahead_secs} s in the future, beyond the {tolerance_secs} s tolerance"
    )]
    FutureTimestamp {
        /// How far in the future the timestamp is.
        ahead_secs: u64,
        /// The configured tolerance.
        tolerance_secs: u64,
    },
    /// A correctly signed message that was already accepted inside the replay
    /// window. `401` (not `409`: to the receiver a replay is an
    /// authentication failure, and senders treat any 4xx as final), code
    /// `replayed`.
    #[error("this message was already received")]
    Replayed,
    /// The body is larger than the configured limit. `413`, code
    /// `body_too_large`.
    #[error("the body exceeds the {limit} byte limit")]
    BodyTooLarge {
        /// The configured limit in bytes.
        limit: usize,
    },
    /// The request body failed while being read. `400`, code
    /// `body_unreadable`.
    #[error("the request body could not be read")]
    BodyUnreadable,
    /// The message is correctly signed but the [replay
    /// store](super::ReplayStore) could not say whether it was seen before
    /// (Redis down or too slow). `503`, code `replay_store_unavailable`:
    /// the layer fails closed, and senders (B2, Standard Webhooks senders,
    /// Stripe, GitHub's redeliveries) retry a 5xx later, when the store can
    /// answer again, instead of the receiver accepting a possible replay.
    #[error("the replay store is unavailable; retry later")]
    ReplayStoreUnavailable,
}

impl WebhookError {
    /// The HTTP status the layer answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MissingHeader(_)
            | Self::MalformedHeader { .. }
            | Self::InvalidSignature
            | Self::Replayed => StatusCode::UNAUTHORIZED,
            Self::StaleTimestamp { .. } | Self::FutureTimestamp { .. } => StatusCode::FORBIDDEN,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyUnreadable => StatusCode::BAD_REQUEST,
            Self::ReplayStoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The stable `error` code of the JSON body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingHeader(_) => "missing_header",
            Self::MalformedHeader { .. } => "malformed_header",
            Self::InvalidSignature => "invalid_signature",
            Self::StaleTimestamp { .. } => "stale_timestamp",
            Self::FutureTimestamp { .. } => "future_timestamp",
            Self::Replayed => "replayed",
            Self::BodyTooLarge { .. } => "body_too_large",
            Self::BodyUnreadable => "body_unreadable",
            Self::ReplayStoreUnavailable => "replay_store_unavailable",
        }
    }

    /// The JSON body `{"error":CODE,"message":TEXT}`.
    pub fn to_json(&self) -> String {
        let message = self.to_string();
        let mut json = String::with_capacity(32 + message.len());
        json.push_str("{\"error\":\"");
        json.push_str(self.code());
        json.push_str("\",\"message\":\"");
        push_json_escaped(&mut json, &message);
        json.push_str("\"}");
        json
    }

    /// The complete rejection response.
    pub fn to_response(&self) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(Bytes::from(self.to_json())));
        *response.status_mut() = self.status();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}

/// Messages are mostly fixed text, but header names from custom schemes and
/// any future variant must not be able to break the JSON.
fn push_json_escaped(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
}

/// A secret that cannot be used, e.g. a Standard Webhooks secret whose
/// base64 part does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid webhook secret: {reason}")]
pub struct InvalidSecret {
    pub(crate) reason: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_body_escapes_and_names_the_code() {
        let error = WebhookError::MalformedHeader {
            header: HeaderName::from_static("x-test"),
            reason: "has a \"quote\"\n",
        };
        assert_eq!(
            error.to_json(),
            r#"{"error":"malformed_header","message":"the x-test header is malformed: has a \"quote\"\n"}"#
        );
        let response = error.to_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    }

    #[test]
    fn timestamps_out_of_tolerance_are_forbidden_not_unauthorized() {
        let stale = WebhookError::StaleTimestamp {
            age_secs: 301,
            tolerance_secs: 300,
        };
        assert_eq!(stale.status(), StatusCode::FORBIDDEN);
        assert_eq!(WebhookError::Replayed.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            WebhookError::BodyTooLarge { limit: 1 }.status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }
}
