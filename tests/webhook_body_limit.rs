//! The body limit: `413` from Content-Length without reading, and no reading
//! past the limit while streaming.
#![cfg(feature = "webhook")]

mod webhook_support;

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body::{Body, Frame};
use s3tap::webhook::VerifyWebhookLayer;
use webhook_support::*;

const SECRET: &str = "limit-test-secret";
const LIMIT: usize = 4 * 1024;
const CHUNK: usize = 1024;

fn layer() -> VerifyWebhookLayer {
    VerifyWebhookLayer::b2(SECRET).max_body_size(LIMIT)
}

/// A request whose body is `total` bytes of `x`, correctly signed, streamed
/// in `CHUNK`-byte frames.
fn streamed(
    total: usize,
    content_length: Option<usize>,
) -> (
    Request<CountingBody>,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    let (body, polled) = CountingBody::new(total, CHUNK);
    let mut builder = Request::post("/b2").header(
        "x-bz-event-notification-signature",
        b2_header(SECRET, &vec![b'x'; total]),
    );
    if let Some(length) = content_length {
        builder = builder.header("content-length", length);
    }
    (builder.body(body).unwrap(), polled)
}

#[tokio::test]
async fn a_declared_oversized_body_is_refused_without_reading_it() {
    let (request, polled) = streamed(1 << 20, Some(1 << 20));
    let outcome = send(&layer(), request).await;
    assert_eq!(outcome.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(outcome.error_code(), "body_too_large");
    assert_eq!(outcome.headers["content-type"], "application/json");
    assert_eq!(polled.load(Ordering::SeqCst), 0, "not one byte may be read");
    assert_eq!(outcome.inner_calls, 0);
}

#[tokio::test]
async fn an_undeclared_oversized_body_is_read_no_further_than_the_limit() {
    let (request, polled) = streamed(1 << 20, None);
    let outcome = send(&layer(), request).await;
    assert_eq!(outcome.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(outcome.inner_calls, 0);
    let polled = polled.load(Ordering::SeqCst);
    // The frame that crosses the limit has to be polled to be seen.
    assert!(
        polled <= LIMIT + CHUNK,
        "read {polled} bytes for a {LIMIT} byte limit"
    );
}

#[tokio::test]
async fn a_body_longer_than_its_content_length_is_stopped_at_the_limit() {
    let (request, polled) = streamed(1 << 20, Some(100));
    let outcome = send(&layer(), request).await;
    assert_eq!(outcome.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(polled.load(Ordering::SeqCst) <= LIMIT + CHUNK);
    assert_eq!(outcome.inner_calls, 0);
}

#[tokio::test]
async fn a_body_of_exactly_the_limit_is_verified_and_passed_on() {
    let (request, polled) = streamed(LIMIT, Some(LIMIT));
    let outcome = send(&layer(), request).await;
    assert_eq!(outcome.status, StatusCode::OK, "{:?}", outcome.body);
    assert_eq!(outcome.body.len(), LIMIT);
    assert_eq!(polled.load(Ordering::SeqCst), LIMIT);
    assert_eq!(outcome.inner_calls, 1);

    let (request, _) = streamed(LIMIT + 1, None);
    assert_eq!(
        send(&layer(), request).await.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
}

#[tokio::test]
async fn the_default_limit_is_one_mebibyte() {
    let layer = VerifyWebhookLayer::b2(SECRET);
    let (request, polled) = streamed(1 << 20, None);
    assert_eq!(send(&layer, request).await.status, StatusCode::OK);
    assert_eq!(polled.load(Ordering::SeqCst), 1 << 20);
    let (request, polled) = streamed((1 << 20) + 1, Some((1 << 20) + 1));
    assert_eq!(
        send(&layer, request).await.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(polled.load(Ordering::SeqCst), 0);
}

/// A body that fails after its first frame.
struct FailingBody(bool);

impl Body for FailingBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if self.0 {
            return Poll::Ready(Some(Err(std::io::Error::other("connection reset"))));
        }
        self.0 = true;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"partial")))))
    }
}

#[tokio::test]
async fn a_failing_body_is_a_bad_request() {
    let request = Request::post("/b2")
        .header(
            "x-bz-event-notification-signature",
            b2_header(SECRET, b"partial"),
        )
        .body(FailingBody(false))
        .unwrap();
    let outcome = send(&layer(), request).await;
    assert_eq!(outcome.status, StatusCode::BAD_REQUEST);
    assert_eq!(outcome.error_code(), "body_unreadable");
    assert_eq!(outcome.inner_calls, 0);
}
