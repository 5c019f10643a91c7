//! GitHub webhooks: `X-Hub-Signature-256: sha256=<hex>` over the body.

use super::error::WebhookError;
use super::scheme::{decode_hex_mac, verify_any, ReplayId, WebhookContext, WebhookScheme};
use super::secret::Secret;
use http::HeaderName;

const SIGNATURE: &str = "x-hub-signature-256";

/// GitHub webhooks: `X-Hub-Signature-256: sha256=<hex>`, the HMAC-SHA256 of
/// the raw body under the webhook secret.
///
/// GitHub signs no timestamp, so the tolerance does not apply. The replay id
/// is the verified signature; GitHub's `X-GitHub-Delivery` header is not
/// signed, so it is not used. The legacy SHA-1 `X-Hub-Signature` is ignored.
#[derive(Debug, Clone)]
pub struct GitHub {
    secrets: Vec<Secret>,
}

impl GitHub {
    /// Verifies with this webhook secret.
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

impl WebhookScheme for GitHub {
    fn check_headers(&self, request: &WebhookContext<'_>) -> Result<(), WebhookError> {
        parse_signature(request.header(SIGNATURE)?).map(drop)
    }

    fn verify(
        &self,
        request: &WebhookContext<'_>,
        body: &[u8],
    ) -> Result<Option<ReplayId>, WebhookError> {
        let claimed = parse_signature(request.header(SIGNATURE)?)?;
        let mac = verify_any(&self.secrets, &[body], &[claimed])?;
        Ok(Some(ReplayId::from(mac)))
    }

    /// GitHub signs the body only; a redelivery repeats it byte for byte.
    fn signs_timestamp(&self) -> bool {
        false
    }
}

fn parse_signature(header: &str) -> Result<[u8; 32], WebhookError> {
    let malformed = |reason| WebhookError::MalformedHeader {
        header: HeaderName::from_static(SIGNATURE),
        reason,
    };
    let digits = header
        .strip_prefix("sha256=")
        .ok_or_else(|| malformed("expected sha256=<hex>"))?;
    decode_hex_mac(digits).ok_or_else(|| malformed("signature is not 64 hex digits"))
}
