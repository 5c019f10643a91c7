//! [`WebhookSink`]: batches of events as signed HTTP POSTs (feature
//! `sink-webhook`).

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use http::{HeaderMap, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::{BoxFuture, Sink, SinkError};
use crate::crypto::hmac_sha256;
use crate::notify::Event;

/// A request body made from a batch of events, with its content type and
/// any headers the format adds.
#[derive(Clone, Debug)]
pub struct Encoded {
    /// The `content-type` of the body.
    pub content_type: HeaderValue,
    /// The body, exactly as it is signed and sent.
    pub body: Bytes,
    /// More headers to send (e.g. a format's version header).
    pub headers: HeaderMap,
}

/// Turns a batch into a request body; see [`WebhookSink::encoder`].
pub type Encoder = Arc<dyn Fn(&[Event]) -> Encoded + Send + Sync>;

/// The default encoding: a JSON array of the events in s3tap's event schema
/// ([`native`](crate::notify::format::native), `s3tap.event/1`),
/// `application/json`.
pub fn json_array(events: &[Event]) -> Encoded {
    Encoded {
        content_type: HeaderValue::from_static("application/json"),
        body: crate::notify::format::native::encode_array(events),
        headers: HeaderMap::new(),
    }
}

/// One event per line in s3tap's event schema, `application/x-ndjson`.
pub fn json_lines(events: &[Event]) -> Encoded {
    Encoded {
        content_type: HeaderValue::from_static("application/x-ndjson"),
        body: Bytes::from(crate::notify::format::native::encode_lines(events)),
        headers: HeaderMap::new(),
    }
}

/// Why a [`WebhookSink`] could not be configured.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookSinkError {
    /// The URL does not parse or is not `http`/`https` with a host.
    #[error("invalid webhook URL: {0}")]
    InvalidUrl(String),
    /// The PEM holds no certificate or does not parse.
    #[error("invalid root certificate: {0}")]
    InvalidCertificate(String),
    /// A Standard Webhooks secret must be `whsec_<base64>` with a non-empty key.
    #[error("invalid signing secret: {0}")]
    InvalidSecret(&'static str),
}

struct Key(Zeroizing<Vec<u8>>);

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

#[derive(Debug)]
enum Signer {
    B2(Key),
    StandardWebhooks(Key),
}

type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Delivers batches of events as HTTP POSTs to one URL.
///
/// - The body comes from the [`encoder`](Self::encoder) (default
///   [`json_array`]); it is signed as sent.
/// - HTTPS uses rustls with the webpki roots (plus
///   [`add_root_certificate`](Self::add_root_certificate)); connections are
///   kept alive and reused.
/// - Signatures, any combination:
///   [`sign_b2`](Self::sign_b2) adds
///   `x-bz-event-notification-signature: v1=<hex HMAC-SHA256(secret, body)>`
///   (Backblaze B2 Event Notifications);
///   [`sign_standard_webhooks`](Self::sign_standard_webhooks) adds
///   `webhook-id`, `webhook-timestamp` and
///   `webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`
///   (Standard Webhooks; the id is the event id for a batch of one, else
///   `batch_` and a digest of the batch's event ids, so a retried batch keeps
///   its id).
///
/// The answer decides what the dispatcher does:
///
/// | answer | result |
/// | --- | --- |
/// | 2xx | delivered |
/// | 410 Gone | [`SinkError::Disabled`] |
/// | 429, 503 | [`SinkError::Transient`] with the `Retry-After` (seconds or HTTP date) |
/// | 408, other 5xx, timeout, connection error | [`SinkError::Transient`] (a `Retry-After` is honoured too) |
/// | other 4xx, 3xx | [`SinkError::Permanent`] |
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use http::{HeaderName, HeaderValue};
/// use s3tap::sink::{webhook, Sink, WebhookSink};
///
/// let sink = WebhookSink::new("https://hooks.example.com/s3")?
///     .header(HeaderName::from_static("x-tenant"), HeaderValue::from_static("acme"))
///     .timeout(Duration::from_secs(5))
///     .max_batch(100)
///     .encoder(Arc::new(webhook::json_lines))
///     .sign_standard_webhooks("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?;
/// // The builder method shadows the trait's getter: ask the trait.
/// assert_eq!(Sink::max_batch(&sink), 100);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct WebhookSink {
    name: String,
    url: Uri,
    headers: HeaderMap,
    timeout: Duration,
    max_batch: usize,
    encoder: Encoder,
    signers: Vec<Signer>,
    extra_roots: Vec<CertificateDer<'static>>,
    client: OnceLock<HttpsClient>,
}

impl fmt::Debug for WebhookSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSink")
            .field("name", &self.name)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("timeout", &self.timeout)
            .field("max_batch", &self.max_batch)
            .field("signers", &self.signers)
            .field("extra_roots", &self.extra_roots.len())
            .finish_non_exhaustive()
    }
}

impl WebhookSink {
    /// A sink posting to `url` (`http://` or `https://`).
    pub fn new(url: &str) -> Result<Self, WebhookSinkError> {
        let parsed: Uri = url
            .parse()
            .map_err(|e: http::uri::InvalidUri| WebhookSinkError::InvalidUrl(e.to_string()))?;
        match parsed.scheme_str() {
            Some("http") | Some("https") if parsed.host().is_some() => {}
            _ => {
                return Err(WebhookSinkError::InvalidUrl(
                    "expected http:// or https:// and a host".to_owned(),
                ))
            }
        }
        // The name shows in logs: scheme, host and port, never the path or
        // query, which may carry a token.
        let name = format!(
            "webhook:{}://{}",
            parsed.scheme_str().unwrap_or("http"),
            parsed.authority().map(|a| a.as_str()).unwrap_or("")
        );
        let mut headers = HeaderMap::new();
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("s3tap/", env!("CARGO_PKG_VERSION"))),
        );
        Ok(WebhookSink {
            name,
            url: parsed,
            headers,
            timeout: Duration::from_secs(10),
            max_batch: 100,
            encoder: Arc::new(json_array),
            signers: Vec::new(),
            extra_roots: Vec::new(),
            client: OnceLock::new(),
        })
    }

    /// Sends this header with every request (replacing one of the same
    /// name).
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.insert(name, value);
        self
    }

    /// The limit for one request, from connecting to reading the answer
    /// (default 10 s). Exceeding it is a transient failure.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The largest batch per request (default 100).
    pub fn max_batch(mut self, max: usize) -> Self {
        self.max_batch = max.max(1);
        self
    }

    /// How a batch becomes a body (default [`json_array`]). A format's
    /// `encode_batch` plugs in as a closure.
    pub fn encoder(mut self, encoder: Encoder) -> Self {
        self.encoder = encoder;
        self
    }

    /// Also trusts the certificates in `pem` (e.g. a test CA or a
    /// self-signed receiver).
    pub fn add_root_certificate(mut self, pem: &[u8]) -> Result<Self, WebhookSinkError> {
        let mut found = 0;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| WebhookSinkError::InvalidCertificate(e.to_string()))?;
            self.extra_roots.push(cert);
            found += 1;
        }
        if found == 0 {
            return Err(WebhookSinkError::InvalidCertificate(
                "no CERTIFICATE block".to_owned(),
            ));
        }
        self.client = OnceLock::new();
        Ok(self)
    }

    /// Signs each body the way Backblaze B2 Event Notifications do.
    pub fn sign_b2(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.signers
            .push(Signer::B2(Key(Zeroizing::new(secret.as_ref().to_vec()))));
        self
    }

    /// Signs each request the Standard Webhooks way with a
    /// `whsec_<base64>` secret (the prefix may be left out).
    pub fn sign_standard_webhooks(mut self, secret: &str) -> Result<Self, WebhookSinkError> {
        let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
        let key =
            Zeroizing::new(BASE64.decode(encoded).map_err(|_| {
                WebhookSinkError::InvalidSecret("the part after whsec_ is not base64")
            })?);
        if key.is_empty() {
            return Err(WebhookSinkError::InvalidSecret("the key is empty"));
        }
        self.signers.push(Signer::StandardWebhooks(Key(key)));
        Ok(self)
    }

    fn client(&self) -> &HttpsClient {
        self.client.get_or_init(|| {
            let mut roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            let (added, ignored) = roots.add_parsable_certificates(self.extra_roots.iter().cloned());
            if ignored > 0 {
                tracing::warn!(sink = %self.name, added, ignored, "some root certificates were not usable");
            }
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
            let connector = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(config)
                .https_or_http()
                .enable_http1()
                .build();
            Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(60))
                .build(connector)
        })
    }

    /// The request for `batch`, signed, as it would be sent at `now`.
    /// Public so tests (and curious users) can check the signing.
    pub fn request(&self, batch: &[Event], now: SystemTime) -> Request<Full<Bytes>> {
        self.request_for(self.encoder.as_ref()(batch), &message_id(batch), now)
    }

    /// The request for an already encoded body, signed, as it would be sent
    /// at `now`; `id` is the Standard Webhooks `webhook-id`.
    pub fn request_for(&self, encoded: Encoded, id: &str, now: SystemTime) -> Request<Full<Bytes>> {
        let mut builder = Request::post(self.url.clone());
        let headers = builder.headers_mut().expect("a fresh builder");
        headers.extend(self.headers.clone());
        headers.extend(encoded.headers);
        headers.insert(CONTENT_TYPE, encoded.content_type);
        for signer in &self.signers {
            match signer {
                Signer::B2(key) => {
                    let mac = hmac_sha256(&key.0, &encoded.body);
                    let value = format!("v1={}", hex::encode(mac));
                    headers.insert(
                        HeaderName::from_static("x-bz-event-notification-signature"),
                        HeaderValue::from_str(&value).expect("hex is a valid header value"),
                    );
                }
                Signer::StandardWebhooks(key) => {
                    let timestamp = now
                        .duration_since(UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or(0)
                        .to_string();
                    let mac = crate::crypto::hmac_sha256_parts(
                        &key.0,
                        &[
                            id.as_bytes(),
                            b".",
                            timestamp.as_bytes(),
                            b".",
                            &encoded.body,
                        ],
                    );
                    let signature = format!("v1,{}", BASE64.encode(mac));
                    let value = |s: &str| {
                        HeaderValue::from_str(s)
                            .expect("ids, digits and base64 are valid header values")
                    };
                    headers.insert(HeaderName::from_static("webhook-id"), value(id));
                    headers.insert(
                        HeaderName::from_static("webhook-timestamp"),
                        value(&timestamp),
                    );
                    headers.insert(
                        HeaderName::from_static("webhook-signature"),
                        value(&signature),
                    );
                }
            }
        }
        builder
            .body(Full::new(encoded.body))
            .expect("a POST with a valid URI and headers")
    }

    /// POSTs one already encoded body (signed like every delivery), within
    /// the sink's timeout, outside the dispatcher: for one-off messages such
    /// as a B2 test event. `id` is the Standard Webhooks `webhook-id`.
    pub async fn post(&self, encoded: Encoded, id: &str) -> Result<(), SinkError> {
        let request = self.request_for(encoded, id, SystemTime::now());
        match tokio::time::timeout(self.timeout, self.send_request(request)).await {
            Ok(result) => result,
            Err(_) => Err(SinkError::transient(format!(
                "{}: no answer within {:?}",
                self.name, self.timeout
            ))),
        }
    }

    async fn send(&self, batch: &[Event]) -> Result<(), SinkError> {
        self.send_request(self.request(batch, SystemTime::now()))
            .await
    }

    async fn send_request(&self, request: Request<Full<Bytes>>) -> Result<(), SinkError> {
        let response = self.client().request(request).await.map_err(|e| {
            SinkError::transient(format!(
                "{}: request failed: {}",
                self.name,
                error_chain(&e)
            ))
        })?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        // Read the answer (bounded) so the connection can be reused, and to
        // say what went wrong.
        let body = Limited::new(response.into_body(), 64 * 1024)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        if status.is_success() {
            return Ok(());
        }
        let excerpt: String = String::from_utf8_lossy(&body).chars().take(200).collect();
        let message = format!("{}: HTTP {status}: {excerpt}", self.name);
        Err(classify(status, retry_after, message))
    }
}

fn classify(status: StatusCode, retry_after: Option<Duration>, message: String) -> SinkError {
    match status {
        StatusCode::GONE => SinkError::Disabled { message },
        StatusCode::TOO_MANY_REQUESTS | StatusCode::REQUEST_TIMEOUT => SinkError::Transient {
            message,
            retry_after,
        },
        s if s.is_server_error() => SinkError::Transient {
            message,
            retry_after,
        },
        _ => SinkError::Permanent { message },
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The `webhook-id` of a batch: the event id for one event, else a digest of
/// the ids, so a retry of the same batch keeps the same id.
fn message_id(batch: &[Event]) -> String {
    match batch {
        [one] => one.id.to_string(),
        _ => {
            let mut digest = Sha256::new();
            for event in batch {
                digest.update(event.id.as_str().as_bytes());
                digest.update(b"\n");
            }
            format!("batch_{}", &hex::encode(digest.finalize())[..32])
        }
    }
}

/// Parses `Retry-After`: delay-seconds, or an HTTP date (a date in the past
/// means now).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

impl Sink for WebhookSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn max_batch(&self) -> usize {
        self.max_batch
    }

    fn deliver<'a>(&'a self, batch: &'a [Event]) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            match tokio::time::timeout(self.timeout, self.send(batch)).await {
                Ok(result) => result,
                Err(_) => Err(SinkError::transient(format!(
                    "{}: no answer within {:?}",
                    self.name, self.timeout
                ))),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn statuses_map_to_errors() {
        let m = || "m".to_owned();
        assert!(matches!(
            classify(StatusCode::GONE, None, m()),
            SinkError::Disabled { .. }
        ));
        assert!(matches!(
            classify(StatusCode::TOO_MANY_REQUESTS, Some(Duration::from_secs(3)), m()),
            SinkError::Transient { retry_after: Some(d), .. } if d == Duration::from_secs(3)
        ));
        assert!(matches!(
            classify(StatusCode::BAD_GATEWAY, None, m()),
            SinkError::Transient { .. }
        ));
        assert!(matches!(
            classify(StatusCode::BAD_REQUEST, None, m()),
            SinkError::Permanent { .. }
        ));
        assert!(matches!(
            classify(StatusCode::UNAUTHORIZED, None, m()),
            SinkError::Permanent { .. }
        ));
        assert!(matches!(
            classify(StatusCode::FOUND, None, m()),
            SinkError::Permanent { .. }
        ));
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let sink = WebhookSink::new("https://example.com/hook?token=abc")
            .unwrap()
            .sign_b2("super-secret-value")
            .sign_standard_webhooks("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .unwrap();
        let debug = format!("{sink:?}");
        assert!(!debug.contains("super-secret"), "{debug}");
        assert!(debug.contains("redacted"));
        assert_eq!(sink.name(), "webhook:https://example.com");
    }
}
