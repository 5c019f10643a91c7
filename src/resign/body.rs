//! [`ResignBody`]: the payload as the upstream gets it. Hex and unsigned
//! payloads pass through untouched; aws-chunked payloads are framed again
//! with the client's chunk boundaries, new chunk signatures chained from the
//! new seed signature (reusing the digests computed while verifying), and
//! the trailers written back, so the upstream sees the client's length.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::body::BoxError;
use crate::sigv4::chunked::{empty_sha256, TRAILER_SIGNATURE_NAME};
use crate::sigv4::{ChunkSigner, PayloadMode};
use crate::verified::ChunkDigests;

/// What went wrong while re-framing (a verifier and re-signer that disagree
/// on chunk boundaries; never the client's fault).
#[derive(Debug, thiserror::Error)]
pub enum ReframeError {
    /// Payload bytes arrived for a chunk whose boundary was not published.
    #[error("no chunk boundary published for payload bytes; is SigV4VerifyLayer::publish_chunk_digests on?")]
    MissingBoundary,
    /// A signed chunk's digest was not published.
    #[error("no digest published for a signed chunk")]
    MissingDigest,
    /// The payload ended inside a chunk.
    #[error("the payload ended {0} bytes before the end of its last chunk")]
    Truncated(u64),
}

pub(crate) struct FramingPlan {
    pub(crate) mode: PayloadMode,
    pub(crate) signer: Option<ChunkSigner>,
    pub(crate) digests: ChunkDigests,
    pub(crate) encoded_len: Option<u64>,
}

struct Reframer {
    plan: FramingPlan,
    remaining_in_chunk: u64,
    // The CRLF that closes a chunk travels with the next header, saving a frame.
    chunk_open: bool,
    trailers: Option<HeaderMap>,
    out: VecDeque<Bytes>,
    done: bool,
}

pin_project! {
    /// Request body of [`Resign`](super::Resign).
    pub struct ResignBody<B> {
        #[pin]
        inner: B,
        reframer: Option<Box<Reframer>>,
    }
}

impl<B> ResignBody<B> {
    pub(crate) fn passthrough(inner: B) -> Self {
        ResignBody {
            inner,
            reframer: None,
        }
    }

    pub(crate) fn reframe(inner: B, plan: FramingPlan) -> Self {
        ResignBody {
            inner,
            reframer: Some(Box::new(Reframer {
                plan,
                remaining_in_chunk: 0,
                chunk_open: false,
                trailers: None,
                out: VecDeque::new(),
                done: false,
            })),
        }
    }
}

impl Reframer {
    fn chunk_header(&mut self, len: u64, signature: Option<[u8; 32]>) -> Bytes {
        let mut header = BytesMut::with_capacity(2 + 16 + 17 + 64 + 2);
        if self.chunk_open {
            header.extend_from_slice(b"\r\n");
        }
        header.extend_from_slice(format!("{len:x}").as_bytes());
        if let Some(signature) = signature {
            header.extend_from_slice(b";chunk-signature=");
            header.extend_from_slice(hex::encode(signature).as_bytes());
        }
        header.extend_from_slice(b"\r\n");
        header.freeze()
    }

    fn accept(&mut self, mut data: Bytes) -> Result<(), ReframeError> {
        while !data.is_empty() {
            if self.remaining_in_chunk == 0 {
                let next = self
                    .plan
                    .digests
                    .pop()
                    .ok_or(ReframeError::MissingBoundary)?;
                let signature = match &mut self.plan.signer {
                    Some(signer) => {
                        Some(signer.next_chunk(&next.sha256.ok_or(ReframeError::MissingDigest)?))
                    }
                    None => None,
                };
                let header = self.chunk_header(next.len, signature);
                self.out.push_back(header);
                self.remaining_in_chunk = next.len;
                self.chunk_open = true;
            }
            let take = self.remaining_in_chunk.min(data.len() as u64) as usize;
            self.out.push_back(data.split_to(take));
            self.remaining_in_chunk -= take as u64;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), ReframeError> {
        if self.remaining_in_chunk > 0 {
            return Err(ReframeError::Truncated(self.remaining_in_chunk));
        }
        let final_signature = self
            .plan
            .signer
            .as_mut()
            .map(|s| s.next_chunk(&empty_sha256()));
        let mut tail = BytesMut::from(&self.chunk_header(0, final_signature)[..]);
        if self.plan.mode.has_trailer() {
            let mut lines: Vec<(String, String)> = self
                .trailers
                .take()
                .unwrap_or_default()
                .iter()
                .filter(|(name, _)| name.as_str() != TRAILER_SIGNATURE_NAME)
                .filter_map(|(name, value)| {
                    Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
                })
                .collect();
            lines.sort();
            for (name, value) in &lines {
                tail.extend_from_slice(format!("{name}:{value}\r\n").as_bytes());
            }
            if let Some(signer) = &mut self.plan.signer {
                let canonical: String = lines.iter().map(|(n, v)| format!("{n}:{v}\n")).collect();
                let signature = signer.trailer(canonical.as_bytes());
                tail.extend_from_slice(
                    format!("{TRAILER_SIGNATURE_NAME}:{}\r\n", hex::encode(signature)).as_bytes(),
                );
            }
        }
        tail.extend_from_slice(b"\r\n");
        self.out.push_back(tail.freeze());
        self.done = true;
        Ok(())
    }
}

impl<B> Body for ResignBody<B>
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
        let Some(reframer) = this.reframer.as_mut() else {
            return this.inner.poll_frame(cx).map_err(Into::into);
        };
        loop {
            if let Some(frame) = reframer.out.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(frame))));
            }
            if reframer.done {
                return Poll::Ready(None);
            }
            match ready!(this.inner.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        if let Err(error) = reframer.accept(data) {
                            return Poll::Ready(Some(Err(Box::new(error))));
                        }
                    }
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            reframer
                                .trailers
                                .get_or_insert_with(HeaderMap::new)
                                .extend(trailers);
                        }
                    }
                },
                Some(Err(error)) => return Poll::Ready(Some(Err(error.into()))),
                None => {
                    if let Err(error) = reframer.finish() {
                        return Poll::Ready(Some(Err(Box::new(error))));
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.reframer {
            None => self.inner.is_end_stream(),
            Some(reframer) => reframer.done && reframer.out.is_empty(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.reframer {
            None => self.inner.size_hint(),
            Some(reframer) => match reframer.plan.encoded_len {
                // Exact only before anything was sent; afterwards a lower
                // bound is all that matters to the client connection.
                Some(length)
                    if !reframer.done && reframer.out.is_empty() && !reframer.chunk_open =>
                {
                    SizeHint::with_exact(length)
                }
                _ => SizeHint::default(),
            },
        }
    }
}

impl<B> std::fmt::Debug for ResignBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResignBody")
            .field("reframed", &self.reframer.is_some())
            .finish_non_exhaustive()
    }
}
