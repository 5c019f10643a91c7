//! [`Notify`]: records what the request was, then lets it through untouched.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use http::{header, Request, Response};
use tower_service::Service;

use super::classify::classify;
use super::future::{PendingEvent, ResponseFuture};
use super::layer::NotifyConfig;
use crate::s3error::RequestId;
use crate::verified::{ClientAddr, Observed};

/// The service made by [`NotifyLayer`](super::NotifyLayer).
pub struct Notify<S> {
    inner: S,
    config: Arc<NotifyConfig>,
}

impl<S> Notify<S> {
    pub(crate) fn new(inner: S, config: Arc<NotifyConfig>) -> Self {
        Notify { inner, config }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: Clone> Clone for Notify<S> {
    fn clone(&self) -> Self {
        Notify {
            inner: self.inner.clone(),
            config: self.config.clone(),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for Notify<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notify")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

fn header_text(headers: &http::HeaderMap, name: impl header::AsHeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn header_number(headers: &http::HeaderMap, name: impl header::AsHeaderName) -> Option<u64> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Notify<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<super::body::NotifyBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let classified = classify(
            request.method(),
            request.uri(),
            request.headers(),
            self.config.virtual_host_suffix.as_deref(),
        );
        let headers = request.headers();
        let observed = Observed::default();
        let pending = PendingEvent {
            started: Instant::now(),
            time: SystemTime::now(),
            classified,
            method: request.method().as_str().to_owned(),
            request_uri: request.uri().to_string(),
            content_length: header_number(headers, header::CONTENT_LENGTH),
            decoded_content_length: header_number(headers, "x-amz-decoded-content-length"),
            content_type: header_text(headers, header::CONTENT_TYPE),
            amz_date: header_text(headers, "x-amz-date"),
            source_ip: request.extensions().get::<ClientAddr>().map(|a| a.0.ip()),
            request_id: request
                .extensions()
                .get::<RequestId>()
                .map(|r| r.as_str().to_owned()),
            observed: observed.clone(),
            config: self.config.clone(),
            live_read: headers
                .get("x-backblaze-live-read-enabled")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("true")),
        };
        request.extensions_mut().insert(observed);
        ResponseFuture::new(self.inner.call(request), pending)
    }
}
