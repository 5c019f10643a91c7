//! Helpers shared by the `webhook_*` integration tests: an echoing inner
//! service that counts its calls, a body that counts the bytes polled from it,
//! and signers for each scheme.
#![allow(dead_code)]

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use s3tap::crypto::hmac_sha256;
use s3tap::webhook::VerifyWebhookLayer;
use tower::{Layer, ServiceExt};

/// What came back from one request through the layer.
#[derive(Debug)]
pub struct Outcome {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// How often the inner service was called (0 or 1).
    pub inner_calls: usize,
}

impl Outcome {
    pub fn error_code(&self) -> String {
        let json: serde_json::Value =
            serde_json::from_slice(&self.body).expect("refusals are JSON");
        json["error"].as_str().expect("an error code").to_owned()
    }
}

/// Sends `request` through `layer` around an inner service that echoes the
/// body it receives.
pub async fn send<B>(layer: &VerifyWebhookLayer, request: Request<B>) -> Outcome
where
    B: Body + Send + 'static,
    B::Data: Send,
{
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let echo = tower::service_fn(move |request: Request<Full<Bytes>>| {
        counter.fetch_add(1, Ordering::SeqCst);
        async move {
            let body = request.into_body().collect().await?.to_bytes();
            Ok::<_, Infallible>(Response::new(Full::new(body)))
        }
    });
    let response = layer
        .layer(echo)
        .oneshot(request)
        .await
        .expect("infallible");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("infallible").to_bytes();
    Outcome {
        status: parts.status,
        headers: parts.headers,
        body,
        inner_calls: calls.load(Ordering::SeqCst),
    }
}

pub fn at(unix_secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(unix_secs)
}

/// A clock the test can move.
#[derive(Clone, Default)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    pub fn starting_at(unix_secs: u64) -> Self {
        Self(Arc::new(AtomicU64::new(unix_secs)))
    }
    pub fn set(&self, unix_secs: u64) {
        self.0.store(unix_secs, Ordering::SeqCst);
    }
    pub fn reader(&self) -> impl Fn() -> SystemTime + Send + Sync + 'static {
        let now = Arc::clone(&self.0);
        move || at(now.load(Ordering::SeqCst))
    }
}

/// A request body that yields `total` bytes in `chunk`-sized frames and
/// records how many bytes were polled out of it.
pub struct CountingBody {
    remaining: usize,
    chunk: usize,
    pub polled: Arc<AtomicUsize>,
}

impl CountingBody {
    pub fn new(total: usize, chunk: usize) -> (Self, Arc<AtomicUsize>) {
        let polled = Arc::new(AtomicUsize::new(0));
        (
            Self {
                remaining: total,
                chunk,
                polled: Arc::clone(&polled),
            },
            polled,
        )
    }
}

impl Body for CountingBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let len = self.chunk.min(self.remaining);
        self.remaining -= len;
        self.polled.fetch_add(len, Ordering::SeqCst);
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b'x'; len])))))
    }
}

pub fn hex_mac(key: &[u8], data: &[u8]) -> String {
    hex::encode(hmac_sha256(key, data))
}

pub fn b2_header(secret: &str, body: &[u8]) -> String {
    format!("v1={}", hex_mac(secret.as_bytes(), body))
}

pub fn frameio_header(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let signed = [b"v0:", timestamp.as_bytes(), b":", body].concat();
    format!("v0={}", hex_mac(secret.as_bytes(), &signed))
}

pub fn stripe_header(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let signed = [timestamp.as_bytes(), b".", body].concat();
    format!("t={timestamp},v1={}", hex_mac(secret.as_bytes(), &signed))
}

pub fn github_header(secret: &str, body: &[u8]) -> String {
    format!("sha256={}", hex_mac(secret.as_bytes(), body))
}

pub fn standard_header(whsec: &str, id: &str, timestamp: &str, body: &[u8]) -> String {
    let engine = base64::engine::general_purpose::STANDARD;
    let key = engine.decode(whsec.trim_start_matches("whsec_")).unwrap();
    let signed = [id.as_bytes(), b".", timestamp.as_bytes(), b".", body].concat();
    format!("v1,{}", engine.encode(hmac_sha256(&key, &signed)))
}

/// A request with these headers and body.
pub fn request(headers: &[(&str, &str)], body: impl Into<Bytes>) -> Request<Full<Bytes>> {
    let mut builder = Request::post("/webhook");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Full::new(body.into())).unwrap()
}
