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
    /// Plaintext bytes still to decode for the client.
    remaining: u64,
    /// The client's last plaintext, held back until the frame it came from
    /// has been decoded to its end and its checksum checked: a damaged
    /// frame then ends the download short, which the client sees as an
    /// error, instead of completing it with bytes nothing vouched for.
    last: Option<Bytes>,
    /// The request's span, for the log line of a failed download (the body
    /// is polled by the connection, outside it).
    span: tracing::Span,
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
                    last: None,
                    span: tracing::Span::current(),
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
    /// Whether everything the client gets has been sent.
    fn done(&self) -> bool {
        self.remaining == 0 && self.last.is_none()
    }

    /// Logs why the download ends short, in the request's span: the client
    /// only sees a body cut off, the operator learns which object is bad.
    fn failed(&self, error: TransformError) -> BoxError {
        self.span.in_scope(|| {
            tracing::error!(
                %error,
                unsent = self.unsent(),
                "a transformed download ends short: the stored object is damaged or cut"
            );
        });
        error.into()
    }

    /// Plaintext bytes not yet sent: still to decode, or held back.
    fn unsent(&self) -> u64 {
        self.remaining + self.last.as_ref().map_or(0, |last| last.len() as u64)
    }

    /// Decodes pending input into at most one window; `None` when it needs
    /// more input (or is [`done`](Decoding::done)).
    fn step(&mut self) -> Result<Option<Bytes>, TransformError> {
        while !self.pending.is_empty() && !self.done() {
            let (read, written) = self
                .decoder
                .decode(&self.pending, &mut self.window)
                .map_err(TransformError::Decode)?;
            let _ = self.pending.split_to(read);
            if read == 0 && written == 0 {
                // The built-in codecs always make progress with input and
                // room; never spin if another codec does not.
                return Err(TransformError::Decode(std::io::Error::other(
                    "the decoder made no progress",
                )));
            }
            let mut out = &self.window[..written];
            let skip = self.skip.min(out.len() as u64) as usize;
            self.skip -= skip as u64;
            out = &out[skip..];
            // Past the client's last byte the frame is decoded only to
            // check it: its plaintext is dropped.
            let take = self.remaining.min(out.len() as u64) as usize;
            self.remaining -= take as u64;
            if take > 0 {
                let data = Bytes::copy_from_slice(&out[..take]);
                if self.remaining > 0 {
                    return Ok(Some(data));
                }
                self.last = Some(data);
            }
            if self.remaining == 0 && self.decoder.frame_complete() {
                return Ok(self.last.take());
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
                if decoding.done() {
                    // The rest of the stored object (its index, frames past
                    // a range) is not the client's: stop reading it.
                    return Poll::Ready(None);
                }
                match decoding.step() {
                    Ok(Some(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Ok(None) if decoding.done() => return Poll::Ready(None),
                    Ok(None) => {}
                    Err(e) => return Poll::Ready(Some(Err(decoding.failed(e)))),
                }
                match ready!(body.as_mut().poll_frame(cx)) {
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            decoding.pending = data;
                        }
                    }
                    Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                    None => {
                        let missing = decoding.unsent();
                        return Poll::Ready(Some(Err(
                            decoding.failed(TransformError::Truncated { missing })
                        )));
                    }
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            ResponseKind::Inner { body } => body.is_end_stream(),
            ResponseKind::Decoded { decoding, .. } => decoding.done(),
            ResponseKind::Bytes { data } => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            ResponseKind::Inner { body } => body.size_hint(),
            ResponseKind::Decoded { decoding, .. } => SizeHint::with_exact(decoding.unsent()),
            ResponseKind::Bytes { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use futures_util::stream;
    use http_body_util::StreamBody;

    use super::*;
    use crate::body::testing::drain;
    use crate::transform::{Codec, Gzip, Zstd};

    /// Two frames of `plain`, split at `split`, and a skippable frame after
    /// them (where the index goes); also where each frame ends.
    fn stored(codec: &dyn Codec, plain: &[u8], split: usize) -> (Vec<u8>, usize, usize) {
        let mut encoder = codec.encoder().unwrap();
        let mut out = Vec::new();
        encoder.write(&plain[..split], &mut out).unwrap();
        encoder.end_frame(&mut out).unwrap();
        let first_frame = out.len();
        encoder.write(&plain[split..], &mut out).unwrap();
        encoder.end_frame(&mut out).unwrap();
        let last_frame = out.len();
        codec.skippable(b"not plaintext", &mut out);
        (out, first_frame, last_frame)
    }

    /// Where each built-in codec keeps a frame's checksum: the last bytes
    /// of the frame (zstd's XXH64 word; gzip's CRC-32, then ISIZE).
    fn checksum_byte(codec: &dyn Codec, frame_end: usize) -> usize {
        match codec.name() {
            Zstd::NAME => frame_end - 1,
            _ => frame_end - 8,
        }
    }

    /// Reads `body` the way hyper does, in pieces of 1000 stored bytes:
    /// the plaintext that came, then the error that ended it, if any.
    async fn read(
        codec: &dyn Codec,
        stored: &[u8],
        skip: u64,
        len: u64,
    ) -> (Vec<u8>, Option<BoxError>) {
        let pieces: Vec<Result<Frame<Bytes>, Infallible>> = stored
            .chunks(1000)
            .map(|piece| Ok(Frame::data(Bytes::copy_from_slice(piece))))
            .collect();
        drain(ResponseBody::decoded(
            StreamBody::new(stream::iter(pieces)),
            codec.decoder().unwrap(),
            skip,
            len,
        ))
        .await
    }

    fn codecs() -> [Box<dyn Codec>; 2] {
        [Box::new(Zstd::default()), Box::new(Gzip::default())]
    }

    fn plaintext() -> Vec<u8> {
        (0..300_000u32).map(|i| (i * 31 % 253) as u8).collect()
    }

    #[tokio::test]
    async fn a_whole_object_and_ranges_read_back() {
        let plain = plaintext();
        for codec in codecs() {
            let (stored, _, _) = stored(&*codec, &plain, 100_000);
            let whole = read(&*codec, &stored, 0, plain.len() as u64).await;
            assert!(whole.1.is_none(), "{}: {:?}", codec.name(), whole.1);
            assert_eq!(whole.0, plain, "{}", codec.name());
            for (first, len) in [(0, 1), (99_999, 2), (150_000, 10), (299_999, 1)] {
                let (got, error) = read(&*codec, &stored, first, len).await;
                assert!(error.is_none(), "{}: {error:?}", codec.name());
                assert_eq!(got, plain[first as usize..(first + len) as usize]);
            }
        }
    }

    #[tokio::test]
    async fn a_damaged_last_frame_withholds_the_last_bytes_and_fails() {
        let plain = plaintext();
        for codec in codecs() {
            let (mut stored, first_frame, last_frame) = stored(&*codec, &plain, 100_000);
            stored[checksum_byte(&*codec, last_frame)] ^= 0x01;

            // The whole object: every byte but the last window's comes, and
            // the download ends in an error instead of completing.
            let (got, error) = read(&*codec, &stored, 0, plain.len() as u64).await;
            let error =
                error.unwrap_or_else(|| panic!("{}: a damaged frame read back", codec.name()));
            assert!(error.to_string().contains("does not decode"), "{error}");
            assert!(got.len() < plain.len(), "{}", codec.name());
            assert_eq!(got, plain[..got.len()]);

            // A range that ends inside the damaged frame: the frame is
            // decoded to its end and checked before the range's last bytes go.
            let (got, error) = read(&*codec, &stored, 150_000, 10).await;
            assert!(
                error.is_some(),
                "{}: range in a damaged frame",
                codec.name()
            );
            assert!(got.is_empty());

            // A range inside the first, sound frame is not affected.
            let (got, error) = read(&*codec, &stored[..first_frame], 10, 90_000).await;
            assert!(error.is_none(), "{}: {error:?}", codec.name());
            assert_eq!(got, plain[10..90_010]);
        }
    }

    #[tokio::test]
    async fn damage_that_still_decodes_is_found_by_the_frame_checksum() {
        // Random bytes do not compress: both codecs store them as they are
        // (zstd's raw blocks, deflate's stored blocks), so a flipped byte
        // inside them decodes without complaint to a wrong byte, and only
        // the frame's checksum can tell.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let plain: Vec<u8> = (0..50_000)
            .map(|_| {
                // xorshift64 (fastrand is not in every feature set).
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 32) as u8
            })
            .collect();
        for codec in codecs() {
            let (mut stored, _, last_frame) = stored(&*codec, &plain, 20_000);
            stored[last_frame - 1_000] ^= 0x01;
            let (got, error) = read(&*codec, &stored, 0, plain.len() as u64).await;
            assert!(
                error.is_some(),
                "{}: a damaged frame read back",
                codec.name()
            );
            // What went out before the checksum was reached may hold the
            // damaged byte (a download streams), but the body stops short of
            // its length, so no client takes it for the object.
            assert!(got.len() < plain.len(), "{}", codec.name());
        }
    }

    #[tokio::test]
    async fn an_object_cut_inside_its_last_frame_is_truncated_not_complete() {
        let plain = plaintext();
        for codec in codecs() {
            let (stored, _, last_frame) = stored(&*codec, &plain, 100_000);
            // Everything but the last frame's checksum word and what follows.
            let cut = checksum_byte(&*codec, last_frame);
            let (got, error) = read(&*codec, &stored[..cut], 0, plain.len() as u64).await;
            let error = error.unwrap_or_else(|| panic!("{}: a cut object read back", codec.name()));
            assert!(error.to_string().contains("early"), "{error}");
            assert!(got.len() < plain.len());
        }
    }

    #[test]
    fn a_decode_call_stops_at_the_end_of_a_frame() {
        let plain = plaintext();
        for codec in codecs() {
            let (stored, first_frame, _) = stored(&*codec, &plain, 1_000);
            let mut decoder = codec.decoder().unwrap();
            assert!(
                decoder.frame_complete(),
                "{}: before any input",
                codec.name()
            );
            let mut window = vec![0u8; 1 << 20];
            let (read, written) = decoder.decode(&stored, &mut window).unwrap();
            assert_eq!((read, written), (first_frame, 1_000), "{}", codec.name());
            assert!(decoder.frame_complete(), "{}", codec.name());
            let (_, written) = decoder
                .decode(&stored[read..read + 20], &mut window)
                .unwrap();
            assert!(written < plain.len() - 1_000);
            assert!(
                !decoder.frame_complete(),
                "{}: inside the second frame",
                codec.name()
            );
        }
    }
}
