//! Stripe webhooks: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...]`.

use super::error::WebhookError;
use super::scheme::{decode_hex_mac, verify_any, ReplayId, WebhookContext, WebhookScheme};
use super::secret::Secret;
use http::HeaderName;

const SIGNATURE: &str = "stripe-signature";

/// Stripe webhooks: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...]`, each
/// `v1` the HMAC-SHA256 of `{t}.{raw body}` under the endpoint's signing
/// secret (the whole `whsec_...` string is the key).
///
/// Stripe lists several `v1` entries while an endpoint secret is being
/// rolled; any one matching any configured secret is enough. Other entries
/// (`v0`, used only for test-mode events) are ignored. `t` must lie within the
/// layer's tolerance (default ±300 s). The replay id is the verified signature.
#[derive(Debug, Clone)]
pub struct Stripe {
    secrets: Vec<Secret>,
}

impl Stripe {
    /// Verifies with this endpoint signing secret (`whsec_...`).
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

struct StripeSignature<'a> {
    timestamp: &'a str,
    candidates: Vec<[u8; 32]>,
}

impl WebhookScheme for Stripe {
    fn check_headers(&self, request: &WebhookContext<'_>) -> Result<(), WebhookError> {
        let parsed = parse(request.header(SIGNATURE)?)?;
        request.check_timestamp(SIGNATURE, parsed.timestamp)?;
        Ok(())
    }

    fn verify(
        &self,
        request: &WebhookContext<'_>,
        body: &[u8],
    ) -> Result<Option<ReplayId>, WebhookError> {
        let parsed = parse(request.header(SIGNATURE)?)?;
        request.check_timestamp(SIGNATURE, parsed.timestamp)?;
        let signed: [&[u8]; 3] = [parsed.timestamp.as_bytes(), b".", body];
        let mac = verify_any(&self.secrets, &signed, &parsed.candidates)?;
        Ok(Some(ReplayId::from(mac)))
    }
}

fn parse(header: &str) -> Result<StripeSignature<'_>, WebhookError> {
    let malformed = |reason| WebhookError::MalformedHeader {
        header: HeaderName::from_static(SIGNATURE),
        reason,
    };
    let mut timestamp = None;
    let mut candidates = Vec::with_capacity(1);
    for entry in header.split(',') {
        let (key, value) = entry
            .trim()
            .split_once('=')
            .ok_or_else(|| malformed("expected key=value entries"))?;
        match key {
            "t" if timestamp.is_some() => return Err(malformed("more than one t= entry")),
            "t" => timestamp = Some(value),
            "v1" => candidates
                .push(decode_hex_mac(value).ok_or_else(|| malformed("v1 is not 64 hex digits"))?),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or_else(|| malformed("no t= entry"))?;
    if candidates.is_empty() {
        return Err(malformed("no v1= signature"));
    }
    Ok(StripeSignature {
        timestamp,
        candidates,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rolled_secrets_and_ignores_v0() {
        let sig = "ab".repeat(32);
        let header = format!("t=12,v1={sig},v0={sig},v1={sig}");
        let parsed = parse(&header).unwrap();
        assert_eq!(parsed.timestamp, "12");
        assert_eq!(parsed.candidates.len(), 2);
        assert!(parse(&format!("v1={sig}")).is_err());
        assert!(parse("t=12,v0=00").is_err());
        assert!(parse(&format!("t=1,t=2,v1={sig}")).is_err());
    }
}
