//! [`ResponseFuture`]: waits for the credential lookup, calls the inner
//! service, and turns any verification failure into an S3 error response.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::body::{FailureSlot, VerifyBody};
use super::checks::{complete, Claim};
use super::error::VerifyError;
use super::layer::VerifyConfig;
use crate::body::ResponseBody;
use crate::credentials::{Credential, CredentialStoreError};
use crate::s3error::{new_request_id, RequestId};

pub(crate) type LookupFuture =
    Pin<Box<dyn Future<Output = Result<Option<Credential>, CredentialStoreError>> + Send>>;

pub(crate) struct Pending<B> {
    parts: http::request::Parts,
    body: B,
    claim: Claim,
    config: Arc<VerifyConfig>,
}

pin_project! {
    /// Response future of [`SigV4Verify`](super::SigV4Verify).
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<VerifyBody<B>>>,
    {
        #[pin]
        state: State<S, B>,
        resource: String,
        is_head: bool,
        request_id: Option<RequestId>,
        failure: FailureSlot,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B>
    where
        S: Service<Request<VerifyBody<B>>>,
    {
        Authenticating {
            lookup: LookupFuture,
            inner: Option<S>,
            pending: Option<Box<Pending<B>>>,
        },
        Calling {
            #[pin]
            future: S::Future,
        },
        Rejected {
            error: Option<VerifyError>,
        },
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<VerifyBody<B>>>,
{
    pub(crate) fn rejected(parts: &http::request::Parts, error: VerifyError) -> Self {
        ResponseFuture {
            state: State::Rejected { error: Some(error) },
            resource: parts.uri.path().to_owned(),
            is_head: parts.method == http::Method::HEAD,
            request_id: parts.extensions.get::<RequestId>().cloned(),
            failure: FailureSlot::default(),
        }
    }

    pub(crate) fn authenticating(
        lookup: LookupFuture,
        inner: S,
        parts: http::request::Parts,
        body: B,
        claim: Claim,
        config: Arc<VerifyConfig>,
    ) -> Self {
        ResponseFuture {
            resource: parts.uri.path().to_owned(),
            is_head: parts.method == http::Method::HEAD,
            request_id: parts.extensions.get::<RequestId>().cloned(),
            failure: FailureSlot::default(),
            state: State::Authenticating {
                lookup,
                inner: Some(inner),
                pending: Some(Box::new(Pending {
                    parts,
                    body,
                    claim,
                    config,
                })),
            },
        }
    }
}

fn error_response<B>(
    error: &VerifyError,
    resource: &str,
    is_head: bool,
    request_id: Option<&RequestId>,
) -> Response<ResponseBody<B>> {
    // The server's id for this request when it set one, so the client's
    // error and the logs agree.
    let request_id = request_id.map_or_else(new_request_id, |id| id.as_str().to_owned());
    tracing::debug!(reason = error.reason(), %request_id, "request rejected: {error}");
    let mut response = error
        .to_s3_error()
        .to_response(resource, &request_id, is_head)
        .map(ResponseBody::error);
    response
        .extensions_mut()
        .insert(crate::verified::Rejection {
            layer: "verify",
            reason: error.reason(),
        });
    response
}

impl<S, B, ResBody> Future for ResponseFuture<S, B>
where
    S: Service<Request<VerifyBody<B>>, Response = Response<ResBody>>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Authenticating {
                    lookup,
                    inner,
                    pending,
                } => {
                    let found = ready!(lookup.as_mut().poll(cx));
                    let Pending {
                        parts,
                        body,
                        claim,
                        config,
                    } = *pending.take().expect("polled after completion");
                    let mut service = inner.take().expect("polled after completion");
                    let outcome = match found {
                        Ok(Some(credential)) => complete(
                            &config,
                            parts,
                            body,
                            claim,
                            credential,
                            this.failure.clone(),
                        ),
                        Ok(None) => Err(VerifyError::UnknownAccessKey(claim.scope.access_key_id)),
                        Err(error) => {
                            tracing::warn!("credential lookup failed: {error}");
                            Err(VerifyError::StoreUnavailable(error.to_string()))
                        }
                    };
                    match outcome {
                        Ok(request) => {
                            let future = service.call(request);
                            this.state.set(State::Calling { future });
                        }
                        Err(error) => this.state.set(State::Rejected { error: Some(error) }),
                    }
                }
                StateProj::Calling { future } => {
                    let outcome = ready!(future.poll(cx));
                    // An inner service that forwards the body (a proxy's
                    // upstream client) fails when verification aborts the
                    // body; that failure is ours to explain, not an error.
                    let response = match outcome {
                        Ok(response) => response,
                        Err(error) => match this.failure.take() {
                            Some(failure) => {
                                return Poll::Ready(Ok(error_response(
                                    &failure,
                                    this.resource,
                                    *this.is_head,
                                    this.request_id.as_ref(),
                                )))
                            }
                            None => return Poll::Ready(Err(error)),
                        },
                    };
                    // A body that failed verification makes whatever the inner
                    // service answered (often a generic 400/500 or an upstream
                    // error) moot: the client gets the precise S3 error.
                    if let Some(error) = this.failure.take() {
                        return Poll::Ready(Ok(error_response(
                            &error,
                            this.resource,
                            *this.is_head,
                            this.request_id.as_ref(),
                        )));
                    }
                    return Poll::Ready(Ok(response.map(ResponseBody::inner)));
                }
                StateProj::Rejected { error } => {
                    let error = error.take().expect("polled after completion");
                    return Poll::Ready(Ok(error_response(
                        &error,
                        this.resource,
                        *this.is_head,
                        this.request_id.as_ref(),
                    )));
                }
            }
        }
    }
}
