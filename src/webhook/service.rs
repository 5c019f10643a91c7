//! `VerifyWebhook`: the service that refuses unsigned requests and hands the
//! verified body on.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, Request, Response};
use http_body::Body;
use http_body_util::Full;
use tower_service::Service;

use super::body::ResponseBody;
use super::error::WebhookError;
use super::future::ResponseFuture;
use super::layer::Config;
use super::scheme::WebhookContext;

/// Verifies each request's webhook signature, then calls the inner service
/// with the verified body as [`Full<Bytes>`].
///
/// Made by [`VerifyWebhookLayer`](super::VerifyWebhookLayer).
#[derive(Clone)]
pub struct VerifyWebhook<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> VerifyWebhook<S> {
    pub(crate) fn new(inner: S, config: Arc<Config>) -> Self {
        Self { inner, config }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The layer that wraps services in this one
    /// ([`VerifyWebhookLayer::new`](super::VerifyWebhookLayer::new)).
    pub fn layer(scheme: impl super::WebhookScheme) -> super::VerifyWebhookLayer {
        super::VerifyWebhookLayer::new(scheme)
    }

    /// The refusal due before any byte of the body is read, if any.
    fn refuse_early<B: Body>(&self, request: &Request<B>) -> Result<(), WebhookError> {
        let limit = self.config.max_body_size;
        let too_large = WebhookError::BodyTooLarge { limit };
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|length| length > limit as u64)
            || request.body().size_hint().lower() > limit as u64
        {
            return Err(too_large);
        }
        let context = WebhookContext::new(
            request.headers(),
            (self.config.clock)(),
            self.config.tolerance,
        );
        self.config.scheme.check_headers(&context)
    }
}

impl<S, B, ResBody> Service<Request<B>> for VerifyWebhook<S>
where
    S: Service<Request<Full<Bytes>>, Response = Response<ResBody>> + Clone,
    B: Body,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if let Err(error) = self.refuse_early(&request) {
            return ResponseFuture::refused(error);
        }
        // The clone that was driven to readiness is the one to call; a fresh
        // clone stays behind for the next request.
        let ready = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, ready);
        ResponseFuture::reading(request, inner, Arc::clone(&self.config))
    }
}

impl<S: fmt::Debug> fmt::Debug for VerifyWebhook<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyWebhook")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .finish()
    }
}
