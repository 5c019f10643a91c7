//! [`ClientBody`]: the client's request body with an idle timeout (a client
//! that stops sending mid-body cannot hold a connection and an upstream
//! request forever) and a byte counter for metrics.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use crate::body::BoxError;

/// The body stalled for longer than the idle timeout.
#[derive(Debug, thiserror::Error)]
#[error("the request body sent nothing for {0:?}")]
pub(super) struct BodyIdleTimeout(pub Duration);

pin_project! {
    /// A request body with an idle timeout and a byte counter.
    pub struct ClientBody<B> {
        #[pin]
        inner: B,
        #[pin]
        idle: Sleep,
        timeout: Duration,
        counter: metrics::Counter,
    }
}

impl<B> ClientBody<B> {
    /// Wraps `inner`; the clock starts now.
    pub(super) fn new(inner: B, timeout: Duration, counter: metrics::Counter) -> Self {
        ClientBody {
            inner,
            idle: tokio::time::sleep(timeout),
            timeout,
            counter,
        }
    }
}

impl<B> Body for ClientBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(frame) => {
                if let Some(Ok(frame)) = &frame {
                    if let Some(data) = frame.data_ref() {
                        this.counter.increment(data.len() as u64);
                    }
                }
                this.idle.as_mut().reset(Instant::now() + *this.timeout);
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => match this.idle.poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyIdleTimeout(*this.timeout))))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project! {
    /// A response body that counts the bytes sent to the client.
    pub struct CountedBody<B> {
        #[pin]
        inner: B,
        counter: metrics::Counter,
    }
}

impl<B> CountedBody<B> {
    /// Wraps `inner`.
    pub(super) fn new(inner: B, counter: metrics::Counter) -> Self {
        CountedBody { inner, counter }
    }
}

impl<B> Body for CountedBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let frame = std::task::ready!(this.inner.poll_frame(cx));
        if let Some(Ok(frame)) = &frame {
            if let Some(data) = frame.data_ref() {
                this.counter.increment(data.len() as u64);
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
