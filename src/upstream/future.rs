//! [`ResponseFuture`]: waits for the upstream's response head, bounded by
//! the response timeout, and turns every failure into an S3 error response.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Response;
use hyper::body::Incoming;
use hyper_util::client::legacy;
use pin_project_lite::pin_project;
use tokio::time::Sleep;

use super::body::UpstreamBody;
use super::error::UpstreamError;
use crate::hop_by_hop::remove_hop_by_hop;
use crate::s3error::RequestId;

/// What an error response needs to say, kept aside while waiting. The
/// texts are made from the URI only when an error needs them: most
/// requests never fail.
pub(crate) struct ErrorContext {
    pub(crate) uri: http::Uri,
    pub(crate) is_head: bool,
    pub(crate) request_id: RequestId,
    pub(crate) connect_timeout: Duration,
    pub(crate) response_timeout: Duration,
}

impl ErrorContext {
    /// `host:port` of the upstream, as errors name it.
    fn host(&self) -> String {
        super::client::host_and_port(&self.uri)
    }
}

pin_project! {
    /// Response future of [`UpstreamClient`](super::UpstreamClient).
    pub struct ResponseFuture {
        #[pin]
        state: State,
        context: Box<ErrorContext>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State {
        Waiting {
            #[pin]
            response: legacy::ResponseFuture,
            #[pin]
            deadline: Sleep,
        },
        Failed { error: Option<UpstreamError> },
    }
}

impl ResponseFuture {
    pub(crate) fn waiting(response: legacy::ResponseFuture, context: ErrorContext) -> Self {
        ResponseFuture {
            state: State::Waiting {
                response,
                deadline: tokio::time::sleep(context.response_timeout),
            },
            context: Box::new(context),
        }
    }

    pub(crate) fn failed(error: UpstreamError, context: ErrorContext) -> Self {
        ResponseFuture {
            state: State::Failed { error: Some(error) },
            context: Box::new(context),
        }
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<UpstreamBody>, std::convert::Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let context = &**this.context;
        let error = match this.state.project() {
            StateProj::Waiting { response, deadline } => match response.poll(cx) {
                Poll::Ready(Ok(response)) => return Poll::Ready(Ok(forward(response))),
                Poll::Ready(Err(error)) => {
                    UpstreamError::classify(error, context.host(), context.connect_timeout)
                }
                Poll::Pending => match deadline.poll(cx) {
                    Poll::Ready(()) => UpstreamError::ResponseTimeout {
                        host: context.host(),
                        timeout: context.response_timeout,
                    },
                    Poll::Pending => return Poll::Pending,
                },
            },
            StateProj::Failed { error } => error.take().expect("polled after completion"),
        };
        Poll::Ready(Ok(error_response(&error, context)))
    }
}

fn forward(response: Response<Incoming>) -> Response<UpstreamBody> {
    let (mut parts, body) = response.into_parts();
    remove_hop_by_hop(&mut parts.headers);
    Response::from_parts(parts, UpstreamBody::streaming(body))
}

fn error_response(error: &UpstreamError, context: &ErrorContext) -> Response<UpstreamBody> {
    // Warn, not error: the upstream's health is outside this process.
    tracing::warn!(request_id = %context.request_id, "{error}");
    error
        .to_s3_error()
        .to_response(
            context.uri.path(),
            context.request_id.as_str(),
            context.is_head,
        )
        .map(UpstreamBody::error)
}
