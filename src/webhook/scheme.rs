//! The `WebhookScheme` trait every signature format implements, and the
//! parsing and comparison helpers the built-in schemes share.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName};

use super::error::WebhookError;
use super::secret::Secret;
use crate::crypto::{constant_time_eq, hmac_sha256_parts};

/// One way of signing webhooks: which headers carry what, and what is signed.
///
/// The layer calls [`check_headers`](Self::check_headers) before it reads any
/// of the body, so requests that can be refused from their headers alone
/// (missing signature, stale timestamp) cost no body I/O; then, with the body
/// read up to the size limit, it calls [`verify`](Self::verify).
///
/// `verify` returns the message's *replay id* when it has one: the key under
/// which the optional replay cache remembers the message. Schemes whose
/// messages carry an id (Standard Webhooks' `webhook-id`) return it; the
/// others return the verified signature itself.
///
/// # Example
///
/// A scheme for a sender that puts `hex(HMAC-SHA256(secret, body))` in
/// `x-signature`:
///
/// ```
/// use s3tap::webhook::{ReplayId, Secret, WebhookContext, WebhookError, WebhookScheme};
///
/// #[derive(Debug)]
/// struct PlainHex(Secret);
///
/// impl WebhookScheme for PlainHex {
///     fn verify(&self, request: &WebhookContext<'_>, body: &[u8]) -> Result<Option<ReplayId>, WebhookError> {
///         let header = request.header("x-signature")?;
///         let mac = s3tap::crypto::hmac_sha256(self.0.expose(), body);
///         let claimed = request.decode_hex_signature("x-signature", header)?;
///         if s3tap::crypto::constant_time_eq(&mac, &claimed) {
///             Ok(Some(ReplayId::from(mac)))
///         } else {
///             Err(WebhookError::InvalidSignature)
///         }
///     }
/// }
/// # let _ = s3tap::webhook::VerifyWebhookLayer::new(PlainHex(Secret::from("k")));
/// ```
pub trait WebhookScheme: fmt::Debug + Send + Sync + 'static {
    /// Refuses what can be refused from the headers alone. The default accepts
    /// everything and leaves all checks to [`verify`](Self::verify).
    fn check_headers(&self, request: &WebhookContext<'_>) -> Result<(), WebhookError> {
        let _ = request;
        Ok(())
    }

    /// Checks the signature over the raw body and returns the message's replay
    /// id, if it has one.
    fn verify(
        &self,
        request: &WebhookContext<'_>,
        body: &[u8],
    ) -> Result<Option<ReplayId>, WebhookError>;

    /// Whether the signature covers a timestamp the layer holds to its
    /// tolerance. It decides what the replay cache does with a message it
    /// has seen: a timestamped one is refused (`401 replayed`); one without
    /// a timestamp (B2, GitHub) is a sender's retry of an identical body,
    /// so it reaches the inner service marked with [`Redelivery`](super::Redelivery).
    /// The default, `true`, refuses.
    fn signs_timestamp(&self) -> bool {
        true
    }
}

/// What a [`WebhookScheme`] may look at besides the body: the request
/// headers, the current time from the layer's clock, and the layer's
/// timestamp tolerance.
#[derive(Debug, Clone, Copy)]
pub struct WebhookContext<'a> {
    headers: &'a HeaderMap,
    now: SystemTime,
    tolerance: Duration,
}

impl<'a> WebhookContext<'a> {
    /// A context, e.g. to unit-test a custom scheme without the layer.
    pub fn new(headers: &'a HeaderMap, now: SystemTime, tolerance: Duration) -> Self {
        Self {
            headers,
            now,
            tolerance,
        }
    }

    /// All request headers.
    pub fn headers(&self) -> &'a HeaderMap {
        self.headers
    }

    /// The current time, from the layer's clock.
    pub fn now(&self) -> SystemTime {
        self.now
    }

    /// How far a signed timestamp may be from [`now`](Self::now), either way.
    pub fn tolerance(&self) -> Duration {
        self.tolerance
    }

    /// The value of a header that must appear exactly once and be visible
    /// ASCII. `name` is written in lowercase, as `http` stores header names
    /// (an uppercase name panics, like [`HeaderName::from_static`]). A repeated header is refused rather than guessed at: a proxy
    /// that appends a second signature header must not decide which one is
    /// checked.
    pub fn header(&self, name: &'static str) -> Result<&'a str, WebhookError> {
        let header = HeaderName::from_static(name);
        let mut values = self.headers.get_all(&header).iter();
        let value = values
            .next()
            .ok_or_else(|| WebhookError::MissingHeader(header.clone()))?;
        if values.next().is_some() {
            return Err(WebhookError::MalformedHeader {
                header,
                reason: "sent more than once",
            });
        }
        value.to_str().map_err(|_| WebhookError::MalformedHeader {
            header,
            reason: "not visible ASCII",
        })
    }

    /// Parses a Unix timestamp in seconds (ASCII digits only) and checks that
    /// it lies within the tolerance of now. Returns the parsed value.
    pub fn check_timestamp(&self, name: &'static str, value: &str) -> Result<u64, WebhookError> {
        let malformed = |reason| WebhookError::MalformedHeader {
            header: HeaderName::from_static(name),
            reason,
        };
        // `u64::from_str` would also take a leading `+`; a signed timestamp is
        // compared as text by the sender's own libraries, so only plain digits
        // are one.
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(malformed("not a Unix timestamp in seconds"));
        }
        let timestamp: u64 = value
            .parse()
            .map_err(|_| malformed("timestamp out of range"))?;
        let now = self
            .now
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs();
        let tolerance_secs = self.tolerance.as_secs();
        if timestamp < now && now - timestamp > tolerance_secs {
            return Err(WebhookError::StaleTimestamp {
                age_secs: now - timestamp,
                tolerance_secs,
            });
        }
        if timestamp > now && timestamp - now > tolerance_secs {
            return Err(WebhookError::FutureTimestamp {
                ahead_secs: timestamp - now,
                tolerance_secs,
            });
        }
        Ok(timestamp)
    }

    /// Decodes a hex-encoded HMAC-SHA256 (64 hex digits, either case).
    pub fn decode_hex_signature(
        &self,
        name: &'static str,
        hex_digits: &str,
    ) -> Result<[u8; 32], WebhookError> {
        decode_hex_mac(hex_digits).ok_or(WebhookError::MalformedHeader {
            header: HeaderName::from_static(name),
            reason: "signature is not 64 hex digits",
        })
    }
}

pub(crate) fn decode_hex_mac(hex_digits: &str) -> Option<[u8; 32]> {
    let mut mac = [0u8; 32];
    hex::decode_to_slice(hex_digits, &mut mac).ok()?;
    Some(mac)
}

/// Finds a secret under which one of `candidates` is the HMAC-SHA256 of
/// `signed_parts`, comparing in constant time.
///
/// On success returns the MAC under the *first* configured secret, so that a
/// message re-sent with only a rotated-out signature still maps to the same
/// replay id.
pub(crate) fn verify_any(
    secrets: &[Secret],
    signed_parts: &[&[u8]],
    candidates: &[[u8; 32]],
) -> Result<[u8; 32], WebhookError> {
    let mut primary = None;
    for secret in secrets {
        let mac = hmac_sha256_parts(secret.expose(), signed_parts);
        let primary = *primary.get_or_insert(mac);
        // Every candidate is compared even after a match, so the time taken
        // does not say which one matched.
        let matched = candidates.iter().fold(false, |found, candidate| {
            constant_time_eq(&mac, candidate) | found
        });
        if matched {
            return Ok(primary);
        }
    }
    Err(WebhookError::InvalidSignature)
}

/// The key under which the replay cache remembers a verified message.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ReplayId(Box<[u8]>);

impl ReplayId {
    /// The id's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for ReplayId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match std::str::from_utf8(&self.0) {
            Ok(text) => write!(f, "ReplayId({text:?})"),
            Err(_) => write!(f, "ReplayId({})", hex::encode(&self.0)),
        }
    }
}

impl From<&[u8]> for ReplayId {
    fn from(id: &[u8]) -> Self {
        Self(id.into())
    }
}

impl From<&str> for ReplayId {
    fn from(id: &str) -> Self {
        Self(id.as_bytes().into())
    }
}

impl From<String> for ReplayId {
    fn from(id: String) -> Self {
        Self(id.into_bytes().into_boxed_slice())
    }
}

impl From<[u8; 32]> for ReplayId {
    fn from(mac: [u8; 32]) -> Self {
        Self(Box::new(mac))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn timestamps_are_checked_both_ways() {
        let headers = HeaderMap::new();
        let request = WebhookContext::new(&headers, at(1_000), Duration::from_secs(300));
        assert_eq!(request.check_timestamp("x-ts", "700"), Ok(700));
        assert_eq!(request.check_timestamp("x-ts", "1300"), Ok(1300));
        assert!(matches!(
            request.check_timestamp("x-ts", "699"),
            Err(WebhookError::StaleTimestamp { age_secs: 301, .. })
        ));
        assert!(matches!(
            request.check_timestamp("x-ts", "1301"),
            Err(WebhookError::FutureTimestamp {
                ahead_secs: 301,
                ..
            })
        ));
        for bad in ["", "+1000", "-5", "1e3", "10 00", "99999999999999999999999"] {
            assert!(
                matches!(
                    request.check_timestamp("x-ts", bad),
                    Err(WebhookError::MalformedHeader { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_repeated_header_is_refused() {
        let mut headers = HeaderMap::new();
        headers.append("x-sig", "a".parse().unwrap());
        headers.append("x-sig", "b".parse().unwrap());
        let request = WebhookContext::new(&headers, at(0), Duration::ZERO);
        assert!(matches!(
            request.header("x-sig"),
            Err(WebhookError::MalformedHeader { .. })
        ));
        assert!(matches!(
            request.header("x-other"),
            Err(WebhookError::MissingHeader(_))
        ));
    }

    #[test]
    fn verify_any_reports_the_primary_mac_whichever_secret_matched() {
        let secrets = [Secret::from("new"), Secret::from("old")];
        let under_old = hmac_sha256_parts(b"old", &[b"body"]);
        let under_new = hmac_sha256_parts(b"new", &[b"body"]);
        assert_eq!(
            verify_any(&secrets, &[b"body"], &[under_old]),
            Ok(under_new)
        );
        assert_eq!(
            verify_any(&secrets, &[b"body"], &[[0; 32]]),
            Err(WebhookError::InvalidSignature)
        );
    }
}
