//! [`ResponseFuture`] of [`PostObject`](super::PostObject): the wrapped
//! stack's future, or the form upload's (read, check, send, answer).

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::Response;
use pin_project_lite::pin_project;

use super::response::PostResponseBody;

type FormFuture<A, R, E> =
    Pin<Box<dyn Future<Output = Result<Response<PostResponseBody<A, R>>, E>> + Send>>;

pin_project! {
    /// Response future of [`PostObject`](super::PostObject).
    pub struct ResponseFuture<F, A, R, E> {
        #[pin]
        kind: Kind<F, A, R, E>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, A, R, E> {
        Inner { #[pin] future: F },
        Form { future: FormFuture<A, R, E> },
    }
}

impl<F, A, R, E> ResponseFuture<F, A, R, E> {
    pub(crate) fn inner(future: F) -> Self {
        ResponseFuture {
            kind: Kind::Inner { future },
        }
    }

    pub(crate) fn form(future: FormFuture<A, R, E>) -> Self {
        ResponseFuture {
            kind: Kind::Form { future },
        }
    }
}

impl<F, A, R, E> Future for ResponseFuture<F, A, R, E>
where
    F: Future<Output = Result<Response<A>, E>>,
{
    type Output = Result<Response<PostResponseBody<A, R>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future } => {
                let response = ready!(future.poll(cx))?;
                Poll::Ready(Ok(response.map(PostResponseBody::other)))
            }
            KindProj::Form { future } => future.as_mut().poll(cx),
        }
    }
}
