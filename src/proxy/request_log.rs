//! The proxy's outermost service: one span and the metrics per request, an
//! `x-amz-request-id` on every response, the request-target limit; and
//! [`RecordAccessKey`], deeper in the stack, which adds the verified key id
//! to that span and times the upstream.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use tower_service::Service;
use tracing::Instrument;

use super::config::Limits;
use super::limits::{ClientBody, CountedBody};
use super::metrics::ProxyMetrics;
use crate::addressing::ClientAddressing;
use crate::authorize::Denied;
use crate::notify::classify::classify_addressed;
use crate::s3error::{RequestId, S3Error, S3ErrorCode};
use crate::verified::{ClientAddr, Rejection, Verified};

/// One span per request (request id, method, path, access key id once
/// verified, status, duration) and an `x-amz-request-id` on every response.
#[derive(Clone)]
pub(super) struct RequestLog<S> {
    inner: S,
    peer: Option<SocketAddr>,
    metrics: Arc<ProxyMetrics>,
    limits: Limits,
    /// How clients address buckets: the `NotifyLayer` inside is given the
    /// same, so the classification made here is the one it would make.
    addressing: Arc<ClientAddressing>,
}

impl<S> RequestLog<S> {
    pub(super) fn new(
        inner: S,
        metrics: Arc<ProxyMetrics>,
        limits: Limits,
        virtual_host_suffix: Option<&str>,
    ) -> Self {
        let mut addressing = ClientAddressing::default();
        if let Some(suffix) = virtual_host_suffix {
            addressing.set_virtual_host_suffix(suffix);
        }
        RequestLog {
            inner,
            peer: None,
            metrics,
            limits,
            addressing: Arc::new(addressing),
        }
    }

    /// The same service for a connection from `peer`.
    pub(super) fn for_peer(&self, peer: SocketAddr) -> Self
    where
        S: Clone,
    {
        RequestLog {
            peer: Some(peer),
            ..self.clone()
        }
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// What the client gets: the stack's response, counted, or the proxy's own
/// S3 error for a request it refused at the door.
type ClientResponse<B> = Response<Either<CountedBody<B>, Full<Bytes>>>;

impl<S, B> Service<Request<Incoming>> for RequestLog<S>
where
    S: Service<Request<ClientBody<Incoming>>, Response = Response<B>, Error = Infallible>,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
{
    type Response = ClientResponse<B>;
    type Error = Infallible;
    type Future = BoxFuture<Result<ClientResponse<B>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Incoming>) -> Self::Future {
        let request_id = RequestId::generate();
        request.extensions_mut().insert(request_id.clone());
        if let Some(peer) = self.peer {
            request.extensions_mut().insert(ClientAddr(peer));
        }
        // The path only: a presigned URL's query holds its signature.
        let span = tracing::info_span!(
            "request",
            request_id = %request_id,
            method = %request.method(),
            path = %request.uri().path(),
            access_key_id = tracing::field::Empty,
            status = tracing::field::Empty,
            duration_ms = tracing::field::Empty,
        );
        let started = Instant::now();
        // Classified once, here: the metrics need the operation even for a
        // request refused below, and `NotifyLayer` takes this `Classified`
        // from the extensions instead of classifying again.
        let classified = classify_addressed(
            request.method(),
            request.uri(),
            request.headers(),
            &self.addressing,
        );
        let operation = classified.operation.as_str();
        let metrics = self.metrics.clone();
        // botocore (aws-cli v1, boto3) sends `Expect: 100-continue` even for
        // empty uploads; answered without a 100 (there is no body to ask
        // for), it misreads the next response on that connection and waits
        // for its read timeout. Closing such a connection after the answer
        // keeps the client's next request on a fresh one.
        let close_after = request
            .headers()
            .get(http::header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
            && request
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .is_some_and(|v| v.as_bytes() == b"0");
        let target_len = request
            .uri()
            .path_and_query()
            .map_or(0, |p| p.as_str().len());
        if target_len > self.limits.max_uri_bytes {
            let error = S3Error::new(
                S3ErrorCode::InvalidURI,
                format!(
                    "The request target is {target_len} bytes long; this proxy accepts at most {}.",
                    self.limits.max_uri_bytes
                ),
            );
            let is_head = request.method() == http::Method::HEAD;
            let response = error
                .to_response("", request_id.as_str(), is_head)
                .map(|body| Either::Right(Full::new(body)));
            metrics.rejection("proxy", "uri_too_long");
            metrics.request(operation, response.status().as_u16());
            return Box::pin(async move { Ok(response) }.instrument(span));
        }
        request.extensions_mut().insert(classified);
        let request = request
            .map(|body| ClientBody::new(body, self.limits.body_idle_timeout, metrics.bytes_in()));
        let future = span.in_scope(|| self.inner.call(request));
        Box::pin(
            async move {
                let Ok(response) = future.await;
                let (mut parts, body) = response.into_parts();
                if !parts.headers.contains_key("x-amz-request-id") {
                    if let Ok(value) = http::HeaderValue::from_str(request_id.as_str()) {
                        parts.headers.insert("x-amz-request-id", value);
                    }
                }
                if close_after {
                    parts.headers.insert(
                        http::header::CONNECTION,
                        http::HeaderValue::from_static("close"),
                    );
                }
                if let Some(rejection) = parts.extensions.get::<Rejection>() {
                    metrics.rejection(rejection.layer, rejection.reason);
                }
                if let Some(denied) = parts.extensions.get::<Denied>() {
                    let client = denied
                        .identity
                        .as_deref()
                        .or(denied.access_key_id.as_deref())
                        .unwrap_or("-");
                    metrics.authorization_denied(client, denied.action, denied.reason);
                }
                metrics.request(operation, parts.status.as_u16());
                let span = tracing::Span::current();
                span.record("status", parts.status.as_u16());
                span.record("duration_ms", started.elapsed().as_millis() as u64);
                // The id the client saw: ours, or the upstream's own.
                let amz_request_id = parts
                    .headers
                    .get("x-amz-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                tracing::info!(amz_request_id, "response");
                let body = Either::Left(CountedBody::new(body, metrics.bytes_out()));
                Ok(Response::from_parts(parts, body))
            }
            .instrument(span),
        )
    }
}

/// Writes the verified access key id into the request's span and times the
/// upstream's answer.
#[derive(Clone)]
pub(super) struct RecordAccessKey<S> {
    inner: S,
    metrics: Arc<ProxyMetrics>,
}

impl<S> RecordAccessKey<S> {
    pub(super) fn new(inner: S, metrics: Arc<ProxyMetrics>) -> Self {
        RecordAccessKey { inner, metrics }
    }
}

impl<S, B> Service<Request<B>> for RecordAccessKey<S>
where
    S: Service<Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if let Some(verified) = request.extensions().get::<Verified>() {
            tracing::Span::current().record("access_key_id", verified.access_key_id.as_str());
        }
        let started = Instant::now();
        let metrics = self.metrics.clone();
        let future = self.inner.call(request);
        Box::pin(async move {
            let result = future.await;
            metrics.observe_upstream_latency(started.elapsed().as_secs_f64());
            result
        })
    }
}
