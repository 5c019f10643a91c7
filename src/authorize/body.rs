//! [`AuthorizeBody`]: the request body the inner service gets, the
//! client's own stream, or the frames of a DeleteObjects key list that was
//! read to decide, replayed as they came.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

pin_project! {
    /// Request body of [`Authorize`](super::Authorize)'s inner service.
    pub struct AuthorizeBody<B> {
        #[pin]
        inner: Option<B>,
        // Frames kept in order (data and trailers), so chunk boundaries
        // that later layers rely on stay as the body produced them.
        replay: VecDeque<Frame<Bytes>>,
    }
}

impl<B> AuthorizeBody<B> {
    pub(crate) fn passthrough(inner: B) -> Self {
        AuthorizeBody {
            inner: Some(inner),
            replay: VecDeque::new(),
        }
    }

    pub(crate) fn replay(frames: VecDeque<Frame<Bytes>>) -> Self {
        AuthorizeBody {
            inner: None,
            replay: frames,
        }
    }
}

impl<B> Body for AuthorizeBody<B>
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
        match this.inner.as_pin_mut() {
            Some(body) => body.poll_frame(cx),
            None => Poll::Ready(this.replay.pop_front().map(Ok)),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Some(body) => body.is_end_stream(),
            None => self.replay.is_empty(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Some(body) => body.size_hint(),
            None => SizeHint::with_exact(
                self.replay
                    .iter()
                    .filter_map(|f| f.data_ref().map(|d| d.remaining() as u64))
                    .sum(),
            ),
        }
    }
}
