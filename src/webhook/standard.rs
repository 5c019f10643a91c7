//! Standard Webhooks: `webhook-id`, `webhook-timestamp` and a
//! `webhook-signature` list over `{id}.{timestamp}.{body}`.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use http::{HeaderName, HeaderValue};
use zeroize::Zeroizing;

use super::error::{InvalidSecret, WebhookError};
use super::scheme::{verify_any, ReplayId, WebhookContext, WebhookScheme};
use super::secret::Secret;

const ID: &str = "webhook-id";
const TIMESTAMP: &str = "webhook-timestamp";
const SIGNATURE: &str = "webhook-signature";

/// What Standard Webhooks signs: `{id}.{timestamp}.{body}`.
fn signed_parts<'a>(id: &'a str, timestamp: &'a str, body: &'a [u8]) -> [&'a [u8]; 5] {
    [id.as_bytes(), b".", timestamp.as_bytes(), b".", body]
}

/// Standard Webhooks (the format Svix and others send): headers
/// `webhook-id`, `webhook-timestamp` (Unix seconds) and `webhook-signature`, a
/// space-separated list of `v1,<base64>` entries, each the HMAC-SHA256 of
/// `{id}.{timestamp}.{raw body}`.
///
/// Secrets are written `whsec_<base64>`; the key is the decoded base64 part
/// (the prefix may be left out). Entries of other versions, such as the
/// asymmetric `v1a`, are ignored. The timestamp must lie within the layer's
/// tolerance (default ±5 min). The replay id is the `webhook-id`, which the
/// sender keeps across retries of one message.
#[derive(Debug, Clone)]
pub struct StandardWebhooks {
    secrets: Vec<Secret>,
}

impl StandardWebhooks {
    /// Verifies with this `whsec_<base64>` secret.
    pub fn new(secret: &str) -> Result<Self, InvalidSecret> {
        Ok(Self {
            secrets: vec![decode_secret(secret)?],
        })
    }

    /// Also accepts signatures made with `secret`, e.g. during a rotation.
    pub fn or_secret(mut self, secret: &str) -> Result<Self, InvalidSecret> {
        self.secrets.push(decode_secret(secret)?);
        Ok(self)
    }

    /// Signs a message as a Standard Webhooks sender does, under the first
    /// secret: the headers `webhook-id`, `webhook-timestamp` (`timestamp`,
    /// Unix seconds) and `webhook-signature: v1,<base64 HMAC-SHA256>` that
    /// [`verify`](WebhookScheme::verify) accepts. `id` must be a valid header
    /// value (the sender's message id, kept across retries).
    ///
    /// ```
    /// use s3tap::webhook::StandardWebhooks;
    ///
    /// // The standard's published vector.
    /// let scheme = StandardWebhooks::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?;
    /// let headers = scheme.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, br#"{"test": 2432232314}"#);
    /// assert_eq!(headers[2].1, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    /// # Ok::<(), s3tap::webhook::InvalidSecret>(())
    /// ```
    ///
    /// # Panics
    ///
    /// When `id` is not a valid header value.
    pub fn sign(&self, id: &str, timestamp: u64, body: &[u8]) -> [(HeaderName, HeaderValue); 3] {
        let timestamp = timestamp.to_string();
        let mac = crate::crypto::hmac_sha256_parts(
            self.secrets[0].expose(),
            &signed_parts(id, &timestamp, body),
        );
        let signature = format!("v1,{}", BASE64.encode(mac));
        let value = |s: &str| HeaderValue::from_str(s).expect("a valid header value");
        [
            (HeaderName::from_static(ID), value(id)),
            (HeaderName::from_static(TIMESTAMP), value(&timestamp)),
            (HeaderName::from_static(SIGNATURE), value(&signature)),
        ]
    }
}

fn decode_secret(secret: &str) -> Result<Secret, InvalidSecret> {
    let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
    let key = Zeroizing::new(BASE64.decode(encoded).map_err(|_| InvalidSecret {
        reason: "the part after whsec_ is not base64",
    })?);
    if key.is_empty() {
        return Err(InvalidSecret {
            reason: "the key is empty",
        });
    }
    Ok(Secret::from_zeroizing(key))
}

impl WebhookScheme for StandardWebhooks {
    fn check_headers(&self, request: &WebhookContext<'_>) -> Result<(), WebhookError> {
        request.header(ID)?;
        request.header(SIGNATURE)?;
        request.check_timestamp(TIMESTAMP, request.header(TIMESTAMP)?)?;
        Ok(())
    }

    fn verify(
        &self,
        request: &WebhookContext<'_>,
        body: &[u8],
    ) -> Result<Option<ReplayId>, WebhookError> {
        let id = request.header(ID)?;
        let timestamp = request.header(TIMESTAMP)?;
        request.check_timestamp(TIMESTAMP, timestamp)?;
        // Entries that are not `v1` or do not decode to a MAC cannot match;
        // the libraries of the standard skip them the same way, so a sender
        // may add new versions without breaking receivers.
        let candidates: Vec<[u8; 32]> = request
            .header(SIGNATURE)?
            .split(' ')
            .filter_map(|entry| entry.strip_prefix("v1,"))
            .filter_map(|encoded| BASE64.decode(encoded).ok()?.try_into().ok())
            .collect();
        verify_any(
            &self.secrets,
            &signed_parts(id, timestamp, body),
            &candidates,
        )?;
        Ok(Some(ReplayId::from(id)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_decode_with_or_without_prefix() {
        let with = decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let without = decode_secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(with.expose(), without.expose());
        assert!(decode_secret("whsec_not base64!").is_err());
        assert!(decode_secret("whsec_").is_err());
    }
}
