//! [`PostBody`]: the file of a form upload as the body of the `PUT` sent
//! on: read back from the bounded spool, or streamed from the form when the
//! file part stated its length.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, ReadBuf};

use super::error::PostError;
use crate::body::BoxError;

/// Size of the reads from the spool file.
const READ_CHUNK: usize = 64 * 1024;

/// Where a refusal found while the file streams is left for the response:
/// the upstream sees an aborted request, the client gets the S3 error.
pub(crate) type StreamVerdict = Arc<Mutex<Option<PostError>>>;

pin_project! {
    /// The body of the `PUT` a form upload becomes. Its length is always
    /// known (`size_hint` is exact), so the upstream gets a `Content-Length`.
    pub struct PostBody {
        #[pin]
        source: Source,
        remaining: u64,
    }
}

pin_project! {
    #[project = SourceProj]
    enum Source {
        Spooled { #[pin] file: tokio::fs::File, buf: BytesMut },
        Streamed {
            field: Pin<Box<multer::Field<'static>>>,
            held: Option<Bytes>,
            declared: u64,
            min: u64,
            max: u64,
            seen: u64,
            verdict: StreamVerdict,
        },
    }
}

impl PostBody {
    /// The spooled file, rewound, of `len` bytes.
    pub(crate) fn spooled(file: tokio::fs::File, len: u64) -> PostBody {
        PostBody {
            source: Source::Spooled {
                file,
                buf: BytesMut::new(),
            },
            remaining: len,
        }
    }

    /// The file part streamed as it arrives, `declared` bytes long; a part
    /// whose bytes differ from `declared`, or outside `min..=max`, ends the
    /// body with an error before its last chunk (and leaves the reason in
    /// `verdict`).
    pub(crate) fn streamed(
        field: multer::Field<'static>,
        declared: u64,
        (min, max): (u64, u64),
        verdict: StreamVerdict,
    ) -> PostBody {
        PostBody {
            source: Source::Streamed {
                field: Box::pin(field),
                held: None,
                declared,
                min,
                max,
                seen: 0,
                verdict,
            },
            remaining: declared,
        }
    }

    /// Bytes left to send.
    pub fn len(&self) -> u64 {
        self.remaining
    }

    /// Whether no byte is left.
    pub fn is_empty(&self) -> bool {
        self.remaining == 0
    }
}

impl std::fmt::Debug for PostBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostBody")
            .field("remaining", &self.remaining)
            .finish_non_exhaustive()
    }
}

fn fail(verdict: &StreamVerdict, error: PostError) -> BoxError {
    let message = error.to_string();
    *verdict.lock().unwrap_or_else(|p| p.into_inner()) = Some(error);
    message.into()
}

impl Body for PostBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        match this.source.project() {
            SourceProj::Spooled { file, buf } => {
                if *this.remaining == 0 {
                    return Poll::Ready(None);
                }
                let want = (*this.remaining).min(READ_CHUNK as u64) as usize;
                if buf.capacity() < want {
                    buf.reserve(want - buf.len());
                }
                buf.resize(want, 0);
                let mut read = ReadBuf::new(&mut buf[..]);
                ready!(file.poll_read(cx, &mut read))?;
                let n = read.filled().len();
                if n == 0 {
                    return Poll::Ready(Some(Err("the upload spool ended early".into())));
                }
                buf.truncate(n);
                *this.remaining -= n as u64;
                Poll::Ready(Some(Ok(Frame::data(buf.split().freeze()))))
            }
            SourceProj::Streamed {
                field,
                held,
                declared,
                min,
                max,
                seen,
                verdict,
            } => loop {
                // The last chunk is held until the part has ended with its
                // closing boundary and its stated length: a form cut off
                // right after the stated bytes (a client gone, a broken
                // multipart end) must not have sent the upstream the whole
                // Content-Length, which would store the object.
                match ready!(field.as_mut().poll_next(cx)) {
                    Some(Ok(chunk)) => {
                        *seen += chunk.len() as u64;
                        if *seen > *max {
                            let error = PostError::TooLarge { max: *max };
                            return Poll::Ready(Some(Err(fail(verdict, error))));
                        }
                        if *seen > *declared {
                            return Poll::Ready(Some(Err(fail(
                                verdict,
                                PostError::LengthMismatch,
                            ))));
                        }
                        if chunk.is_empty() {
                            continue;
                        }
                        if let Some(previous) = held.replace(chunk) {
                            *this.remaining -= previous.len() as u64;
                            return Poll::Ready(Some(Ok(Frame::data(previous))));
                        }
                    }
                    Some(Err(error)) => {
                        return Poll::Ready(Some(Err(fail(verdict, PostError::from_multer(error)))))
                    }
                    None if *seen != *declared => {
                        return Poll::Ready(Some(Err(fail(verdict, PostError::LengthMismatch))))
                    }
                    None if *seen < *min => {
                        let error = PostError::TooSmall { min: *min };
                        return Poll::Ready(Some(Err(fail(verdict, error))));
                    }
                    None => {
                        return Poll::Ready(held.take().map(|last| {
                            *this.remaining -= last.len() as u64;
                            Ok(Frame::data(last))
                        }))
                    }
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.source, Source::Spooled { .. }) && self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}
