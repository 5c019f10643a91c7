//! [`SigV4Verify`]: checks everything that can be checked from the request
//! head, then looks up the secret and checks the signature, all before the
//! body is polled (so `Expect: 100-continue` clients get the error, not 100).

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::body::VerifyBody;
use super::checks::read_claim;
use super::future::ResponseFuture;
use super::layer::VerifyConfig;
use crate::body::ResponseBody;
use crate::credentials::CredentialStore;

/// The service made by [`SigV4VerifyLayer`](super::SigV4VerifyLayer).
pub struct SigV4Verify<S, C> {
    inner: S,
    store: Arc<C>,
    config: Arc<VerifyConfig>,
}

impl<S, C> SigV4Verify<S, C> {
    pub(crate) fn new(inner: S, store: Arc<C>, config: Arc<VerifyConfig>) -> Self {
        SigV4Verify {
            inner,
            store,
            config,
        }
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
}

impl<S, C: crate::credentials::CredentialStore> SigV4Verify<S, C> {
    /// The layer that wraps services in this one
    /// ([`SigV4VerifyLayer::new`](super::SigV4VerifyLayer::new)).
    pub fn layer(store: C) -> super::SigV4VerifyLayer<C> {
        super::SigV4VerifyLayer::new(store)
    }
}

impl<S: Clone, C> Clone for SigV4Verify<S, C> {
    fn clone(&self) -> Self {
        SigV4Verify {
            inner: self.inner.clone(),
            store: self.store.clone(),
            config: self.config.clone(),
        }
    }
}

impl<S: fmt::Debug, C> fmt::Debug for SigV4Verify<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigV4Verify")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, C, ReqBody, ResBody> Service<Request<ReqBody>> for SigV4Verify<S, C>
where
    S: Service<Request<VerifyBody<ReqBody>>, Response = Response<ResBody>> + Clone + Send + 'static,
    C: CredentialStore,
    ReqBody: http_body::Body + Send + 'static,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let (parts, body) = request.into_parts();
        let claim = match read_claim(&self.config, &parts) {
            Ok(claim) => claim,
            Err(error) => return ResponseFuture::rejected(&parts, error),
        };
        let store = self.store.clone();
        let access_key_id = claim.scope.access_key_id.clone();
        let lookup = Box::pin(async move { store.lookup(&access_key_id).await });
        // The ready service goes into the future; a fresh clone stays here.
        let fresh = self.inner.clone();
        let ready_inner = std::mem::replace(&mut self.inner, fresh);
        ResponseFuture::authenticating(lookup, ready_inner, parts, body, claim, self.config.clone())
    }
}
