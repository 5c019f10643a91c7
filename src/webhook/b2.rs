//! Backblaze B2 Event Notifications: `x-bz-event-notification-signature`,
//! signed (by the webhook sink) and verified (by the layer) here alone.

use super::error::WebhookError;
use super::scheme::{decode_hex_mac, verify_any, ReplayId, WebhookContext, WebhookScheme};
use super::secret::Secret;
use crate::crypto::hmac_sha256_parts;
use http::{HeaderName, HeaderValue};

const SIGNATURE: &str = "x-bz-event-notification-signature";

/// What B2 signs: the raw body, nothing else.
fn signed_parts(body: &[u8]) -> [&[u8]; 1] {
    [body]
}

/// B2 Event Notifications: `x-bz-event-notification-signature: v1=<hex>`,
/// the HMAC-SHA256 of the raw body under the rule's signing secret.
///
/// The header may list several comma-separated `v1=` signatures and the
/// scheme may hold several secrets ([`or_secret`](Self::or_secret)), so a
/// secret can be rotated without dropping events. B2 signs no timestamp, so
/// the tolerance does not apply; the replay id is the verified signature.
/// `b2:TestEvent` messages are signed like any other and are verified the same
/// way.
#[derive(Debug, Clone)]
pub struct B2 {
    secrets: Vec<Secret>,
}

impl B2 {
    /// Verifies with this signing secret (the rule's `hmacSha256SigningSecret`).
    pub fn new(secret: impl Into<Secret>) -> Self {
        Self {
            secrets: vec![secret.into()],
        }
    }

    /// Also accepts signatures made with `secret`, e.g. the previous one while
    /// a rotation is under way.
    pub fn or_secret(mut self, secret: impl Into<Secret>) -> Self {
        self.secrets.push(secret.into());
        self
    }

    /// Signs `body` as B2 does, under the first secret: the header
    /// `x-bz-event-notification-signature: v1=<hex HMAC-SHA256>` that
    /// [`verify`](WebhookScheme::verify) accepts.
    ///
    /// ```
    /// use s3tap::webhook::B2;
    ///
    /// let (name, value) = B2::new("secret").sign(b"{}");
    /// assert_eq!(name, "x-bz-event-notification-signature");
    /// assert!(value.to_str().unwrap().starts_with("v1="));
    /// ```
    pub fn sign(&self, body: &[u8]) -> (HeaderName, HeaderValue) {
        let mac = hmac_sha256_parts(self.secrets[0].expose(), &signed_parts(body));
        let value = format!("v1={}", hex::encode(mac));
        (
            HeaderName::from_static(SIGNATURE),
            HeaderValue::from_str(&value).expect("hex is a valid header value"),
        )
    }
}

impl WebhookScheme for B2 {
    fn check_headers(&self, request: &WebhookContext<'_>) -> Result<(), WebhookError> {
        parse_signatures(request.header(SIGNATURE)?).map(drop)
    }

    fn verify(
        &self,
        request: &WebhookContext<'_>,
        body: &[u8],
    ) -> Result<Option<ReplayId>, WebhookError> {
        let candidates = parse_signatures(request.header(SIGNATURE)?)?;
        let mac = verify_any(&self.secrets, &signed_parts(body), &candidates)?;
        Ok(Some(ReplayId::from(mac)))
    }

    /// B2 signs the body only, and retries a failed delivery with the same
    /// body: a repeat is a redelivery, not an attack that a timestamp
    /// would expose.
    fn signs_timestamp(&self) -> bool {
        false
    }
}

/// Every `v1=` entry must be well-formed: a header that is half garbage is
/// more likely tampered with than rotated.
fn parse_signatures(header: &str) -> Result<Vec<[u8; 32]>, WebhookError> {
    let malformed = |reason| WebhookError::MalformedHeader {
        header: HeaderName::from_static(SIGNATURE),
        reason,
    };
    let mut candidates = Vec::with_capacity(2);
    for entry in header.split(',').map(str::trim) {
        let digits = entry
            .strip_prefix("v1=")
            .ok_or_else(|| malformed("expected v1=<hex>"))?;
        candidates.push(
            decode_hex_mac(digits).ok_or_else(|| malformed("signature is not 64 hex digits"))?,
        );
    }
    Ok(candidates)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_a_comma_separated_list() {
        let one = "v1=".to_owned() + &"ab".repeat(32);
        assert_eq!(parse_signatures(&one).unwrap().len(), 1);
        assert_eq!(parse_signatures(&format!("{one}, {one}")).unwrap().len(), 2);
        assert!(parse_signatures("v2=00").is_err());
        assert!(parse_signatures(&format!("{one},")).is_err());
    }
}
