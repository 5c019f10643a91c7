//! Frame.io custom actions (and webhooks): `X-Frameio-Signature` over
//! `v0:{timestamp}:{body}`.

use super::error::WebhookError;
use super::scheme::{verify_any, ReplayId, WebhookContext, WebhookScheme};
use super::secret::Secret;
use http::HeaderName;

const TIMESTAMP: &str = "x-frameio-request-timestamp";
const SIGNATURE: &str = "x-frameio-signature";

/// Frame.io custom actions: `X-Frameio-Request-Timestamp: <unix seconds>` and
/// `X-Frameio-Signature: v0=<hex>`, the HMAC-SHA256 of
/// `v0:{timestamp}:{raw body}`.
///
/// The timestamp must lie within the layer's tolerance (default ±300 s) and be
/// plain digits. The replay id is the verified signature.
#[derive(Debug, Clone)]
pub struct FrameIo {
    secrets: Vec<Secret>,
}

impl FrameIo {
    /// Verifies with this signing secret (shown when the action is created).
    pub fn new(secret: impl Into<Secret>) -> Self {
        Self {
            secrets: vec![secret.into()],
        }
    }

    /// Also accepts signatures made with `secret`, e.g. during a rotation.
    pub fn or_secret(mut self, secret: impl Into<Secret>) -> Self {
        self.secrets.push(secret.into());
        self
    }
}

impl WebhookScheme for FrameIo {
    fn check_headers(&self, request: &WebhookContext<'_>) -> Result<(), WebhookError> {
        parse_signature(request.header(SIGNATURE)?)?;
        request.check_timestamp(TIMESTAMP, request.header(TIMESTAMP)?)?;
        Ok(())
    }

    fn verify(
        &self,
        request: &WebhookContext<'_>,
        body: &[u8],
    ) -> Result<Option<ReplayId>, WebhookError> {
        let claimed = parse_signature(request.header(SIGNATURE)?)?;
        let timestamp = request.header(TIMESTAMP)?;
        request.check_timestamp(TIMESTAMP, timestamp)?;
        let signed: [&[u8]; 4] = [b"v0:", timestamp.as_bytes(), b":", body];
        let mac = verify_any(&self.secrets, &signed, &[claimed])?;
        Ok(Some(ReplayId::from(mac)))
    }
}

fn parse_signature(header: &str) -> Result<[u8; 32], WebhookError> {
    let malformed = |reason| WebhookError::MalformedHeader {
        header: HeaderName::from_static(SIGNATURE),
        reason,
    };
    let digits = header
        .strip_prefix("v0=")
        .ok_or_else(|| malformed("expected v0=<hex>"))?;
    super::scheme::decode_hex_mac(digits).ok_or_else(|| malformed("signature is not 64 hex digits"))
}
