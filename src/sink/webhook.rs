//! [`WebhookSink`]: batches of events as signed HTTP POSTs (feature
//! `sink-webhook`).

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use http::{HeaderMap, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use rustls::pki_types::CertificateDer;
use sha2::{Digest, Sha256};

use super::{outcome, BoxFuture, Sink, SinkBuildError, SinkError};
use crate::https::{self, TlsSetupError};
use crate::notify::format::{EncodedBody, Encoder, Format, FormatOptions};
use crate::notify::Event;
use crate::webhook::{StandardWebhooks, B2};

type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Requests one delivery keeps in flight at once, unless configured: enough
/// for a one-event-per-POST format to keep up with the proxy's full request
/// rate against a receiver that answers at once (`benches/webhook_keeps_up`:
/// 16 fell behind, 64 kept up; see [`WebhookSinkBuilder::concurrency`]).
pub const DEFAULT_CONCURRENCY: usize = 64;

/// The default wire format: a JSON array of the events in s3tap's event
/// schema ([`native`](crate::notify::format::native), `s3tap.event/1`),
/// `application/json`.
fn default_encoder() -> Encoder {
    Encoder::new(Format::Native, FormatOptions::default())
}

/// Delivers batches of events as HTTP POSTs to one URL. Built by
/// [`WebhookSink::builder`].
///
/// - The body is one message of the sink's [format](WebhookSinkBuilder::format)
///   (default s3tap's own schema, a JSON array), signed as sent; a message
///   is never larger than one message of the format carries.
/// - One delivery of the dispatcher is up to
///   [`concurrency`](WebhookSinkBuilder::concurrency) messages sent at once
///   (default [`DEFAULT_CONCURRENCY`]), each with its own timeout and
///   answer: a format of one event per message (the seed format, B2's
///   default) keeps up with the proxy it serves. Events of one sink may then
///   arrive out of order, as S3's own notifications may; `concurrency(1)`
///   sends one message at a time, in order.
/// - HTTPS uses rustls with the webpki roots (plus
///   [`add_root_certificate`](WebhookSinkBuilder::add_root_certificate)) and
///   HTTP/2 when the receiver offers it (ALPN), else HTTP/1.1; connections
///   are kept alive and reused.
/// - Signatures, any combination, made by the same schemes that verify them
///   on the receiving side ([`crate::webhook`]):
///   [`sign_b2`](WebhookSinkBuilder::sign_b2) adds
///   `x-bz-event-notification-signature: v1=<hex HMAC-SHA256(secret, body)>`
///   (Backblaze B2 Event Notifications, [`B2::sign`]);
///   [`sign_standard_webhooks`](WebhookSinkBuilder::sign_standard_webhooks) adds
///   `webhook-id`, `webhook-timestamp` and
///   `webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`
///   (Standard Webhooks, [`StandardWebhooks::sign`]; the id is the event id
///   for a batch of one, else `batch_` and a digest of the batch's event
///   ids, so a retried batch keeps its id).
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
/// use std::time::Duration;
/// use http::{HeaderName, HeaderValue};
/// use s3tap::notify::format::{CloudEventsMode, Encoder, Format, FormatOptions};
/// use s3tap::sink::{Sink, WebhookSink};
///
/// let sink = WebhookSink::builder("https://hooks.example.com/s3")
///     .header(HeaderName::from_static("x-tenant"), HeaderValue::from_static("acme"))
///     .timeout(Duration::from_secs(5))
///     .max_batch(100)
///     .concurrency(4)
///     .format(Encoder::new(
///         Format::CloudEvents { mode: CloudEventsMode::Batch },
///         FormatOptions::default(),
///     ))
///     .sign_standard_webhooks("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
///     .build()?;
/// // One delivery: four messages of up to 100 events each, sent at once.
/// assert_eq!(sink.max_batch(), 400);
/// # Ok::<(), s3tap::sink::SinkBuildError>(())
/// ```
pub struct WebhookSink {
    name: String,
    url: Uri,
    headers: HeaderMap,
    timeout: Duration,
    /// Events per message (capped at the format's limit).
    max_batch: usize,
    /// Messages per delivery, in flight at once.
    concurrency: usize,
    encoder: Encoder,
    b2: Option<B2>,
    standard_webhooks: Option<StandardWebhooks>,
    client: HttpsClient,
}

impl fmt::Debug for WebhookSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSink")
            .field("name", &self.name)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("timeout", &self.timeout)
            .field("max_batch", &self.max_batch)
            .field("concurrency", &self.concurrency)
            .field("format", &self.encoder.format)
            .field("b2", &self.b2)
            .field("standard_webhooks", &self.standard_webhooks)
            .finish_non_exhaustive()
    }
}

/// Configures a [`WebhookSink`]; [`build`](Self::build) checks the settings
/// (nothing connects: connections open on the first delivery).
#[must_use = "a builder does nothing until built"]
pub struct WebhookSinkBuilder {
    url: String,
    name: Option<String>,
    headers: HeaderMap,
    timeout: Duration,
    max_batch: usize,
    concurrency: usize,
    encoder: Encoder,
    b2: Option<crate::webhook::Secret>,
    standard_webhooks: Option<crate::secret::Secret<String>>,
    roots: Vec<Vec<u8>>,
}

impl fmt::Debug for WebhookSinkBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL's path and query may carry a token: not printed.
        f.debug_struct("WebhookSinkBuilder")
            .field("name", &self.name)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("timeout", &self.timeout)
            .field("max_batch", &self.max_batch)
            .field("concurrency", &self.concurrency)
            .field("format", &self.encoder.format)
            .field("b2", &self.b2)
            .field("standard_webhooks", &self.standard_webhooks)
            .field("extra_roots", &self.roots.len())
            .finish_non_exhaustive()
    }
}

impl WebhookSink {
    /// Starts building a sink posting to `url` (`http://` or `https://`).
    ///
    /// Defaults: name `webhook:<scheme>://<host:port>` (never the path or
    /// query, which may carry a token), s3tap's own schema as a JSON array,
    /// 10 s timeout per request, up to 100 events per request,
    /// [`DEFAULT_CONCURRENCY`] requests in flight per delivery, no
    /// signature.
    pub fn builder(url: impl Into<String>) -> WebhookSinkBuilder {
        let mut headers = HeaderMap::new();
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("s3tap/", env!("CARGO_PKG_VERSION"))),
        );
        WebhookSinkBuilder {
            url: url.into(),
            name: None,
            headers,
            timeout: Duration::from_secs(10),
            max_batch: 100,
            concurrency: DEFAULT_CONCURRENCY,
            encoder: default_encoder(),
            b2: None,
            standard_webhooks: None,
            roots: Vec::new(),
        }
    }
}

impl WebhookSinkBuilder {
    /// The sink's name in logs and metrics (default
    /// `webhook:<scheme>://<host:port>`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
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

    /// The most events per request (default 100), capped at what one
    /// message of the format carries ([`Format::max_batch`]; s3tap's own
    /// schema, a JSON array, carries any number).
    pub fn max_batch(mut self, max: usize) -> Self {
        self.max_batch = max.max(1);
        self
    }

    /// How many requests one delivery sends at once (default
    /// [`DEFAULT_CONCURRENCY`], at least 1): the dispatcher hands the sink
    /// up to `concurrency` × [`max_batch`](Self::max_batch) events, sent as
    /// that many messages in parallel over pooled connections, each
    /// acknowledged, retried or dead-lettered on its own answer. With a
    /// format of one event per message this is what lets delivery keep up
    /// with the requests that cause the events. `1` keeps a sink's events
    /// in order, one request at a time.
    pub fn concurrency(mut self, requests: usize) -> Self {
        self.concurrency = requests.max(1);
        self
    }

    /// The wire format (default: s3tap's own schema, a JSON array). A batch
    /// is one message of it: `content-type` and any headers the format adds
    /// (CloudEvents binary mode's `ce-*`) travel with the body.
    pub fn format(mut self, encoder: Encoder) -> Self {
        self.encoder = encoder;
        self
    }

    /// Also trusts the certificates in `pem` (e.g. a test CA or a
    /// self-signed receiver); checked by [`build`](Self::build).
    pub fn add_root_certificate(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.roots.push(pem.into());
        self
    }

    /// Signs each body the way Backblaze B2 Event Notifications do.
    pub fn sign_b2(mut self, secret: impl Into<crate::webhook::Secret>) -> Self {
        self.b2 = Some(secret.into());
        self
    }

    /// Signs each request the Standard Webhooks way with a
    /// `whsec_<base64>` secret (the prefix may be left out); checked by
    /// [`build`](Self::build).
    pub fn sign_standard_webhooks(
        mut self,
        secret: impl Into<crate::secret::Secret<String>>,
    ) -> Self {
        self.standard_webhooks = Some(secret.into());
        self
    }

    /// Checks the settings and builds the sink. Fails on a URL that is not
    /// `http(s)://` with a host, an unusable root certificate, or a
    /// malformed Standard Webhooks secret.
    pub fn build(self) -> Result<WebhookSink, SinkBuildError> {
        let url: Uri = self
            .url
            .parse()
            .map_err(|e: http::uri::InvalidUri| SinkBuildError::InvalidUrl(e.to_string()))?;
        match url.scheme_str() {
            Some("http") | Some("https") if url.host().is_some() => {}
            _ => {
                return Err(SinkBuildError::InvalidUrl(
                    "expected http:// or https:// and a host".to_owned(),
                ))
            }
        }
        let name = self.name.unwrap_or_else(|| {
            format!(
                "webhook:{}://{}",
                url.scheme_str().unwrap_or("http"),
                url.authority().map(|a| a.as_str()).unwrap_or("")
            )
        });
        let tls_error = |e: TlsSetupError| match e {
            TlsSetupError::RootCertificate(m) | TlsSetupError::Tls(m) => {
                SinkBuildError::InvalidCertificate(m)
            }
        };
        let mut extra = Vec::<CertificateDer<'static>>::new();
        for pem in &self.roots {
            extra.extend(https::pem_roots(pem).map_err(tls_error)?);
        }
        let tls = https::client_config(https::root_store(true, extra).map_err(tls_error)?)
            .map_err(tls_error)?;
        // HTTP/2 where an HTTPS receiver offers it: a delivery's requests
        // then share one connection.
        let connector = https::connector(tls, HttpConnector::new(), true);
        let client = https::pooled(connector, Some(Duration::from_secs(60)), usize::MAX);
        let standard_webhooks = self
            .standard_webhooks
            .map(|secret| StandardWebhooks::new(secret.expose()))
            .transpose()
            .map_err(|e| SinkBuildError::InvalidSecret(e.reason))?;
        Ok(WebhookSink {
            name,
            url,
            headers: self.headers,
            timeout: self.timeout,
            max_batch: match self.encoder.format {
                Format::Native => self.max_batch,
                format => self.max_batch.min(format.max_batch()),
            },
            concurrency: self.concurrency,
            encoder: self.encoder,
            b2: self.b2.map(B2::new),
            standard_webhooks,
            client,
        })
    }
}

impl WebhookSink {
    /// The request for `batch` (one message: at most
    /// [`max_batch`](WebhookSinkBuilder::max_batch) events), signed, as it
    /// would be sent at `now`. Public so tests (and curious users) can check
    /// the signing.
    pub fn request(&self, batch: &[Event], now: SystemTime) -> Request<Full<Bytes>> {
        let body = match self.encoder.format {
            // A JSON array is one valid message at any length: the webhook
            // sends its whole batch as one (`native::MAX_BATCH` is the
            // proxy's limit, not the format's).
            Format::Native => EncodedBody {
                content_type: Format::Native.content_type(),
                body: crate::notify::format::native::encode_array(batch),
                headers: Vec::new(),
            },
            // `max_batch` is capped at the format's limit, so one message
            // holds the batch; a caller handing more gets the first
            // message's worth.
            _ => self
                .encoder
                .encode_batches(batch)
                .into_iter()
                .next()
                .expect("a batch is never empty"),
        };
        self.request_for(body, &message_id(batch), now)
    }

    /// The request for an already encoded body, signed, as it would be sent
    /// at `now`; `id` is the Standard Webhooks `webhook-id`.
    pub fn request_for(
        &self,
        encoded: EncodedBody,
        id: &str,
        now: SystemTime,
    ) -> Request<Full<Bytes>> {
        let mut builder = Request::post(self.url.clone());
        let headers = builder.headers_mut().expect("a fresh builder");
        headers.extend(self.headers.clone());
        for (name, value) in &encoded.headers {
            // A format's headers are ASCII names and values it made itself.
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                headers.append(name, value);
            }
        }
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(encoded.content_type));
        if let Some(b2) = &self.b2 {
            let (name, value) = b2.sign(&encoded.body);
            headers.insert(name, value);
        }
        if let Some(standard) = &self.standard_webhooks {
            let timestamp = now
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            for (name, value) in standard.sign(id, timestamp, &encoded.body) {
                headers.insert(name, value);
            }
        }
        builder
            .body(Full::new(encoded.body))
            .expect("a POST with a valid URI and headers")
    }

    /// POSTs one already encoded body (signed like every delivery), within
    /// the sink's timeout, outside the dispatcher: for one-off messages such
    /// as a B2 test event. `id` is the Standard Webhooks `webhook-id`.
    pub async fn post(&self, encoded: EncodedBody, id: &str) -> Result<(), SinkError> {
        self.send_within_timeout(self.request_for(encoded, id, SystemTime::now()))
            .await
    }

    /// Sends `batch` as messages of at most `max_batch` events, up to
    /// `concurrency` in flight, and folds their answers into one result for
    /// the dispatcher: events of answered messages are acknowledged, the
    /// others retried or dead-lettered by their own message's answer.
    ///
    /// A transient failure (5xx, 429, a timeout, no connection) or a `410`
    /// stops the delivery from starting more messages: the receiver asked
    /// to wait, or is struggling, and the dispatcher backs the whole sink
    /// off (honouring `Retry-After`). Requests already in flight finish;
    /// messages not sent yet fail with that same error, to be retried.
    async fn send(&self, batch: &[Event]) -> Result<(), SinkError> {
        let now = SystemTime::now();
        if batch.len() <= self.max_batch {
            return self.send_within_timeout(self.request(batch, now)).await;
        }
        let messages: Vec<&[Event]> = batch.chunks(self.max_batch).collect();
        let mut answers: Vec<Option<Result<(), SinkError>>> = vec![None; messages.len()];
        let mut unsent = messages.iter().enumerate();
        let mut in_flight = FuturesUnordered::new();
        let mut stop: Option<SinkError> = None;
        loop {
            while stop.is_none() && in_flight.len() < self.concurrency {
                let Some((index, message)) = unsent.next() else {
                    break;
                };
                let request = self.request(message, now);
                in_flight.push(async move { (index, self.send_within_timeout(request).await) });
            }
            let Some((index, answer)) = in_flight.next().await else {
                break;
            };
            if let Err(error @ (SinkError::Transient { .. } | SinkError::Disabled { .. })) = &answer
            {
                stop.get_or_insert_with(|| error.clone());
            }
            answers[index] = Some(answer);
        }
        let mut failed = Vec::new();
        let mut first = 0;
        for (message, answer) in messages.iter().zip(answers) {
            let error = match answer {
                Some(Ok(())) => None,
                Some(Err(error)) => Some(error),
                None => stop.clone(),
            };
            if let Some(error) = error {
                failed.extend((first..first + message.len()).map(|i| (i, error.clone())));
            }
            first += message.len();
        }
        outcome::fold(batch.len(), failed)
    }

    async fn send_within_timeout(&self, request: Request<Full<Bytes>>) -> Result<(), SinkError> {
        match tokio::time::timeout(self.timeout, self.send_request(request)).await {
            Ok(result) => result,
            Err(_) => Err(SinkError::transient(format!(
                "{}: no answer within {:?}",
                self.name, self.timeout
            ))),
        }
    }

    async fn send_request(&self, request: Request<Full<Bytes>>) -> Result<(), SinkError> {
        let response = self.client.request(request).await.map_err(|e| {
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

    /// Events per message times the messages sent at once.
    fn max_batch(&self) -> usize {
        self.max_batch.saturating_mul(self.concurrency)
    }

    /// Each message is bounded by the sink's timeout on its own; the
    /// messages of one delivery run at once.
    fn deliver<'a>(&'a self, batch: &'a [Event]) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(self.send(batch))
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
        let builder = WebhookSink::builder("https://example.com/hook?token=abc")
            .sign_b2("super-secret-value")
            .sign_standard_webhooks("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let debug = format!("{builder:?}");
        assert!(
            !debug.contains("super-secret") && !debug.contains("token"),
            "{debug}"
        );
        let sink = builder.build().unwrap();
        let debug = format!("{sink:?}");
        assert!(!debug.contains("super-secret"), "{debug}");
        assert!(debug.contains("redacted"));
        assert_eq!(sink.name(), "webhook:https://example.com");
    }
}
