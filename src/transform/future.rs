//! [`ResponseFuture`] of [`Transform`](super::Transform): the inner
//! service's own future for requests the transform leaves alone, or the
//! layer's boxed run of several upstream requests for those it transforms.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::Response;
use pin_project_lite::pin_project;

use super::body::ResponseBody;

/// The boxed future of a transformed request.
pub(crate) type Boxed<RB, E> =
    Pin<Box<dyn Future<Output = Result<Response<ResponseBody<RB>>, E>> + Send>>;

pin_project! {
    /// Response future of [`Transform`](super::Transform).
    pub struct ResponseFuture<F, RB, E> {
        #[pin]
        kind: Kind<F, RB, E>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, RB, E> {
        Inner { #[pin] future: F },
        Transformed { future: Boxed<RB, E> },
    }
}

impl<F, RB, E> ResponseFuture<F, RB, E> {
    pub(crate) fn inner(future: F) -> Self {
        ResponseFuture {
            kind: Kind::Inner { future },
        }
    }

    pub(crate) fn transformed(future: Boxed<RB, E>) -> Self {
        ResponseFuture {
            kind: Kind::Transformed { future },
        }
    }
}

impl<F, RB, E> Future for ResponseFuture<F, RB, E>
where
    F: Future<Output = Result<Response<RB>, E>>,
{
    type Output = Result<Response<ResponseBody<RB>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future } => {
                let response = ready!(future.poll(cx))?;
                Poll::Ready(Ok(response.map(ResponseBody::inner)))
            }
            KindProj::Transformed { future } => future.as_mut().poll(cx),
        }
    }
}
