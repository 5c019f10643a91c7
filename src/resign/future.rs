//! [`ResponseFuture`] of [`Resign`](super::Resign): the upstream's response,
//! or an S3 error when the request could not be re-signed.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::Response;
use pin_project_lite::pin_project;

use crate::body::{s3_error_response, ResponseBody};
use crate::s3error::S3Error;

pin_project! {
    /// Response future of [`Resign`](super::Resign).
    pub struct ResponseFuture<F> {
        #[pin]
        inner: Option<F>,
        rejection: Option<(S3Error, String, bool)>,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn inner(future: F) -> Self {
        ResponseFuture {
            inner: Some(future),
            rejection: None,
        }
    }

    pub(crate) fn rejected(error: &S3Error, resource: &str, is_head: bool) -> Self {
        ResponseFuture {
            inner: None,
            rejection: Some((error.clone(), resource.to_owned(), is_head)),
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.inner.as_pin_mut() {
            Some(future) => {
                let response = ready!(future.poll(cx))?;
                Poll::Ready(Ok(response.map(ResponseBody::inner)))
            }
            None => {
                let (error, resource, is_head) =
                    this.rejection.take().expect("polled after completion");
                Poll::Ready(Ok(s3_error_response(&error, &resource, is_head)))
            }
        }
    }
}
