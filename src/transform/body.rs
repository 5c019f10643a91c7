//! Bodies of the transform layer: [`TransformBody`] (what the inner service
//! is sent: the client's body, or bytes the layer encoded) and
//! [`ResponseBody`] (the upstream's body, decoded on the way down, or one
//! the layer wrote).

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::codec::Decode;
use super::error::TransformError;
use crate::body::BoxError;

pin_project! {
    /// Request body the inner service gets from
    /// [`Transform`](super::Transform): the client's own body, untouched, or
    /// one buffer of transformed bytes with a known length.
    pub struct TransformBody<B> {
        #[pin]
        kind: RequestKind<B>,
    }
}

pin_project! {
    #[project = RequestKindProj]
    enum RequestKind<B> {
        Client { #[pin] body: B },
        Bytes { data: Option<Bytes> },
    }
}

impl<B> TransformBody<B> {
    pub(crate) fn client(body: B) -> Self {
        TransformBody {
            kind: RequestKind::Client { body },
        }
    }

    pub(crate) fn bytes(data: Bytes) -> Self {
        TransformBody {
            kind: RequestKind::Bytes {
                data: (!data.is_empty()).then_some(data),
            },
        }
    }
}

impl<B> Body for TransformBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().kind.project() {
            RequestKindProj::Client { body } => body.poll_frame(cx),
            RequestKindProj::Bytes { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            RequestKind::Client { body } => body.is_end_stream(),
            RequestKind::Bytes { data } => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            RequestKind::Client { body } => body.size_hint(),
            RequestKind::Bytes { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}

pin_project! {
    /// Response body of [`Transform`](super::Transform): the inner service's
    /// body as it came, decoded plaintext, or a document the layer wrote.
    pub struct ResponseBody<B> {
        #[pin]
        kind: ResponseKind<B>,
    }
}

pin_project! {
    #[project = ResponseKindProj]
    enum ResponseKind<B> {
        Inner { #[pin] body: B },
        Decoded { #[pin] body: B, decoding: Decoding },
        Bytes { data: Option<Bytes> },
    }
}

/// The decoder and how much of its plaintext goes to the client.
pub(crate) struct Decoding {
    decoder: Box<dyn Decode>,
    /// Where plaintext lands before it is cut to the range and copied out.
    window: Box<[u8]>,
    /// Stored bytes received and not yet decoded.
    pending: Bytes,
    /// Plaintext bytes still to drop (a range that starts inside a frame).
    skip: u64,
    /// Plaintext bytes still to send.
    remaining: u64,
}

/// Plaintext produced per step: the only buffer a download holds, whatever
/// the compression ratio.
const WINDOW: usize = 256 * 1024;

impl<B> ResponseBody<B> {
    pub(crate) fn inner(body: B) -> Self {
        ResponseBody {
            kind: ResponseKind::Inner { body },
        }
    }

    /// `body` decoded: `skip` plaintext bytes dropped, then `len` sent.
    pub(crate) fn decoded(body: B, decoder: Box<dyn Decode>, skip: u64, len: u64) -> Self {
        ResponseBody {
            kind: ResponseKind::Decoded {
                body,
                decoding: Decoding {
                    decoder,
                    window: vec![0u8; WINDOW].into_boxed_slice(),
                    pending: Bytes::new(),
                    skip,
                    remaining: len,
                },
            },
        }
    }

    pub(crate) fn bytes(data: Bytes) -> Self {
        ResponseBody {
            kind: ResponseKind::Bytes {
                data: (!data.is_empty()).then_some(data),
            },
        }
    }
}

impl Decoding {
    /// Decodes pending input into at most one window; `None` when it needs
    /// more input.
    fn step(&mut self) -> Result<Option<Bytes>, TransformError> {
        while !self.pending.is_empty() {
            let (read, written) = self
                .decoder
                .decode(&self.pending, &mut self.window)
                .map_err(TransformError::Decode)?;
            let _ = self.pending.split_to(read);
            if written == 0 {
                if read == 0 {
                    // The built-in codecs always make progress with input
                    // and room; never spin if another codec does not.
                    return Err(TransformError::Decode(std::io::Error::other(
                        "the decoder made no progress",
                    )));
                }
                continue;
            }
            let mut out = &self.window[..written];
            let skip = self.skip.min(out.len() as u64) as usize;
            self.skip -= skip as u64;
            out = &out[skip..];
            let take = self.remaining.min(out.len() as u64) as usize;
            self.remaining -= take as u64;
            if take > 0 {
                return Ok(Some(Bytes::copy_from_slice(&out[..take])));
            }
            if self.remaining == 0 {
                return Ok(None);
            }
        }
        Ok(None)
    }
}

impl<B> Body for ResponseBody<B>
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
        match self.project().kind.project() {
            ResponseKindProj::Inner { body } => body.poll_frame(cx).map_err(Into::into),
            ResponseKindProj::Bytes { data } => {
                Poll::Ready(data.take().map(|d| Ok(Frame::data(d))))
            }
            ResponseKindProj::Decoded { mut body, decoding } => loop {
                if decoding.remaining == 0 {
                    // The rest of the stored object (its index, frames past
                    // a range) is not the client's: stop reading it.
                    return Poll::Ready(None);
                }
                match decoding.step() {
                    Ok(Some(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Ok(None) if decoding.remaining == 0 => return Poll::Ready(None),
                    Ok(None) => {}
                    Err(e) => return Poll::Ready(Some(Err(e.into()))),
                }
                match ready!(body.as_mut().poll_frame(cx)) {
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            decoding.pending = data;
                        }
                    }
                    Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                    None => {
                        return Poll::Ready(Some(Err(TransformError::Truncated {
                            missing: decoding.remaining,
                        }
                        .into())))
                    }
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            ResponseKind::Inner { body } => body.is_end_stream(),
            ResponseKind::Decoded { decoding, .. } => decoding.remaining == 0,
            ResponseKind::Bytes { data } => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            ResponseKind::Inner { body } => body.size_hint(),
            ResponseKind::Decoded { decoding, .. } => SizeHint::with_exact(decoding.remaining),
            ResponseKind::Bytes { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}
