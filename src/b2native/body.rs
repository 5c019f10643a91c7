//! [`UploadBody`]: the request body sent upstream, an upload checked
//! against its `X-Bz-Content-Sha1` while it streams (the final bytes held
//! back until the digest matches), or a JSON request passed on whole.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use sha1::{Digest, Sha1};

use super::error::B2Error;
use crate::body::BoxError;
use crate::crypto::constant_time_eq;

/// What `X-Bz-Content-Sha1` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sha1Claim {
    /// The digest, sent in the header.
    Header([u8; 20]),
    /// `hex_digits_at_end`: the last 40 bytes of the body are the hex
    /// digest of the bytes before them (and `Content-Length` counts them).
    AtEnd,
    /// `do_not_verify`: passed on unchecked (B2 then stores the file with
    /// an unverified checksum).
    DoNotVerify,
}

impl Sha1Claim {
    /// Parses the header's value.
    pub fn parse(value: &[u8]) -> Result<Sha1Claim, B2Error> {
        if value.eq_ignore_ascii_case(b"hex_digits_at_end") {
            return Ok(Sha1Claim::AtEnd);
        }
        if value.eq_ignore_ascii_case(b"do_not_verify") {
            return Ok(Sha1Claim::DoNotVerify);
        }
        let mut digest = [0u8; 20];
        if value.len() != 40 || hex::decode_to_slice(value, &mut digest).is_err() {
            return Err(B2Error::BadSha1Header);
        }
        Ok(Sha1Claim::Header(digest))
    }
}

/// The first refusal of a body, shared with the response future so that
/// the client gets the precise B2 error rather than the upstream's reaction
/// to an aborted request.
#[derive(Clone, Debug, Default)]
pub(crate) struct FailureSlot(Arc<Mutex<Option<B2Error>>>);

impl FailureSlot {
    fn set(&self, error: B2Error) {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        slot.get_or_insert(error);
    }

    pub(crate) fn take(&self) -> Option<B2Error> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// The SHA-1 that matched, for the event.
#[derive(Clone, Debug, Default)]
pub(crate) struct VerifiedSha1(Arc<Mutex<Option<[u8; 20]>>>);

impl VerifiedSha1 {
    pub(crate) fn get(&self) -> Option<[u8; 20]> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, digest: [u8; 20]) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(digest);
    }
}

pin_project! {
    /// Request body of [`B2Native`](super::B2Native) towards the upstream.
    ///
    /// An upload's bytes are passed on as the slices that arrived (no copy)
    /// and hashed once; the last frame is held until the SHA-1 and the
    /// length are checked at the end of the body. On a mismatch the body
    /// ends with an error instead, so the upstream sees an aborted request
    /// and never a complete payload that did not verify.
    pub struct UploadBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Checked { #[pin] inner: B, check: Box<Sha1Check> },
        Passthrough { #[pin] inner: B },
        Whole { bytes: Option<Bytes> },
    }
}

struct Sha1Check {
    claim: Sha1Claim,
    hasher: Sha1,
    declared: u64,
    received: u64,
    // The digits at the end, with hex_digits_at_end (at most 40 bytes).
    digits: Vec<u8>,
    held: VecDeque<Bytes>,
    finished: bool,
    failed: bool,
    failure: FailureSlot,
    verified: VerifiedSha1,
}

impl<B> UploadBody<B> {
    /// An upload of `declared` bytes checked against `claim`.
    pub(crate) fn checked(
        inner: B,
        claim: Sha1Claim,
        declared: u64,
        failure: FailureSlot,
        verified: VerifiedSha1,
    ) -> Self {
        if claim == Sha1Claim::DoNotVerify {
            return UploadBody::passthrough(inner);
        }
        UploadBody {
            kind: Kind::Checked {
                inner,
                check: Box::new(Sha1Check {
                    claim,
                    hasher: Sha1::new(),
                    declared,
                    received: 0,
                    digits: Vec::new(),
                    held: VecDeque::new(),
                    finished: false,
                    failed: false,
                    failure,
                    verified,
                }),
            },
        }
    }

    /// The client's body, unchanged (downloads, `do_not_verify`).
    pub(crate) fn passthrough(inner: B) -> Self {
        UploadBody {
            kind: Kind::Passthrough { inner },
        }
    }

    /// A body read whole (a JSON API request).
    pub(crate) fn whole(bytes: Bytes) -> Self {
        UploadBody {
            kind: Kind::Whole {
                bytes: (!bytes.is_empty()).then_some(bytes),
            },
        }
    }
}

impl Sha1Check {
    fn fail(&mut self, error: B2Error) -> BoxError {
        self.failed = true;
        self.held.clear();
        self.failure.set(error.clone());
        Box::new(error)
    }

    fn accept(&mut self, data: Bytes) -> Result<(), B2Error> {
        let start = self.received;
        self.received += data.len() as u64;
        if self.received > self.declared {
            return Err(B2Error::LengthMismatch {
                declared: self.declared,
                received: self.received,
            });
        }
        match self.claim {
            Sha1Claim::AtEnd => {
                // Bytes before `content_end` are content; the rest are the
                // digits, which are sent on but not hashed.
                let content_end = self.declared - 40;
                let split = content_end.saturating_sub(start).min(data.len() as u64) as usize;
                self.hasher.update(&data[..split]);
                self.digits.extend_from_slice(&data[split..]);
            }
            _ => self.hasher.update(&data),
        }
        if !data.is_empty() {
            self.held.push_back(data);
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), B2Error> {
        if self.received != self.declared {
            return Err(B2Error::LengthMismatch {
                declared: self.declared,
                received: self.received,
            });
        }
        let claimed = match self.claim {
            Sha1Claim::Header(digest) => digest,
            Sha1Claim::AtEnd => {
                let mut digest = [0u8; 20];
                hex::decode_to_slice(&self.digits, &mut digest)
                    .map_err(|_| B2Error::DigitsAtEndNotHex)?;
                digest
            }
            Sha1Claim::DoNotVerify => unreachable!("passed through, never checked"),
        };
        let computed: [u8; 20] = std::mem::take(&mut self.hasher).finalize().into();
        if !constant_time_eq(&computed, &claimed) {
            return Err(B2Error::Sha1Mismatch {
                claimed: hex::encode(claimed),
                computed: hex::encode(computed),
            });
        }
        self.verified.set(computed);
        self.finished = true;
        Ok(())
    }

    fn next_releasable(&mut self) -> Option<Bytes> {
        // Everything but the newest frame flows at once; that one waits
        // for the end of the body and the digest.
        if self.finished || self.held.len() > 1 {
            self.held.pop_front()
        } else {
            None
        }
    }
}

impl<B> Body for UploadBody<B>
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
            KindProj::Whole { bytes } => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            KindProj::Passthrough { inner } => inner.poll_frame(cx).map_err(Into::into),
            KindProj::Checked { mut inner, check } => loop {
                if check.failed {
                    return Poll::Ready(None);
                }
                if let Some(bytes) = check.next_releasable() {
                    return Poll::Ready(Some(Ok(Frame::data(bytes))));
                }
                if check.finished {
                    return Poll::Ready(None);
                }
                match inner.as_mut().poll_frame(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Some(Ok(frame))) => {
                        // B2 uploads carry no trailers; anything but data
                        // is dropped.
                        if let Ok(data) = frame.into_data() {
                            if let Err(error) = check.accept(data) {
                                return Poll::Ready(Some(Err(check.fail(error))));
                            }
                        }
                    }
                    Poll::Ready(Some(Err(error))) => {
                        check.failed = true;
                        check.held.clear();
                        return Poll::Ready(Some(Err(error.into())));
                    }
                    Poll::Ready(None) => {
                        if let Err(error) = check.finish() {
                            return Poll::Ready(Some(Err(check.fail(error))));
                        }
                    }
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Whole { bytes } => bytes.is_none(),
            Kind::Passthrough { inner } => inner.is_end_stream(),
            Kind::Checked { check, .. } => {
                check.failed || (check.finished && check.held.is_empty())
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Whole { bytes } => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            Kind::Passthrough { inner } => inner.size_hint(),
            Kind::Checked { check, .. } => SizeHint::with_exact(check.declared),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::testing::drain;
    use http_body_util::StreamBody;

    fn frames(parts: &[&[u8]]) -> impl Body<Data = Bytes, Error = BoxError> {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = parts
            .iter()
            .map(|p| Ok(Frame::data(Bytes::copy_from_slice(p))))
            .collect();
        StreamBody::new(futures_util::stream::iter(frames))
    }

    fn sha1_hex(data: &[u8]) -> String {
        hex::encode(Sha1::digest(data))
    }

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        futures_util::FutureExt::now_or_never(future).expect("ready streams")
    }

    #[test]
    fn a_matching_digest_passes_every_byte() {
        let claim = Sha1Claim::parse(sha1_hex(b"hello world").as_bytes()).unwrap();
        let verified = VerifiedSha1::default();
        let body = UploadBody::checked(
            frames(&[b"hello", b" ", b"world"]),
            claim,
            11,
            FailureSlot::default(),
            verified.clone(),
        );
        let (out, error) = block_on(drain(body));
        assert!(error.is_none());
        assert_eq!(out, b"hello world");
        assert_eq!(
            verified.get().map(hex::encode),
            Some(sha1_hex(b"hello world"))
        );
    }

    #[test]
    fn a_wrong_digest_holds_back_the_last_frame_and_fails() {
        let claim = Sha1Claim::parse(sha1_hex(b"other").as_bytes()).unwrap();
        let failure = FailureSlot::default();
        let body = UploadBody::checked(
            frames(&[b"hello", b" ", b"world"]),
            claim,
            11,
            failure.clone(),
            VerifiedSha1::default(),
        );
        let (out, error) = block_on(drain(body));
        assert_eq!(out, b"hello ", "the final frame must never be released");
        assert!(error.unwrap().to_string().contains("does not match"));
        assert!(matches!(failure.take(), Some(B2Error::Sha1Mismatch { .. })));
    }

    #[test]
    fn hex_digits_at_end_are_sent_on_and_checked() {
        let content = b"0123456789abcdef";
        let mut whole = content.to_vec();
        whole.extend_from_slice(sha1_hex(content).as_bytes());
        // Split so that the digits straddle frames.
        let (a, rest) = whole.split_at(10);
        let (b, c) = rest.split_at(20);
        let body = UploadBody::checked(
            frames(&[a, b, c]),
            Sha1Claim::AtEnd,
            whole.len() as u64,
            FailureSlot::default(),
            VerifiedSha1::default(),
        );
        let (out, error) = block_on(drain(body));
        assert!(error.is_none(), "{error:?}");
        assert_eq!(out, whole);

        let mut bad = content.to_vec();
        bad.extend_from_slice(sha1_hex(b"x").as_bytes());
        let body = UploadBody::checked(
            frames(&[&bad]),
            Sha1Claim::AtEnd,
            bad.len() as u64,
            FailureSlot::default(),
            VerifiedSha1::default(),
        );
        let (out, error) = block_on(drain(body));
        assert!(out.is_empty());
        assert!(error.is_some());
    }

    #[test]
    fn short_and_long_bodies_fail() {
        let claim = Sha1Claim::parse(sha1_hex(b"abc").as_bytes()).unwrap();
        for (parts, declared) in [
            (&[&b"abc"[..]][..], 4u64),
            (&[&b"ab"[..], &b"c"[..]][..], 2),
        ] {
            let body = UploadBody::checked(
                frames(parts),
                claim,
                declared,
                FailureSlot::default(),
                VerifiedSha1::default(),
            );
            let (_, error) = block_on(drain(body));
            assert!(error.unwrap().to_string().contains("Content-Length"));
        }
    }

    #[test]
    fn the_header_is_parsed_strictly() {
        assert_eq!(Sha1Claim::parse(b"hex_digits_at_end"), Ok(Sha1Claim::AtEnd));
        assert_eq!(
            Sha1Claim::parse(b"do_not_verify"),
            Ok(Sha1Claim::DoNotVerify)
        );
        assert!(Sha1Claim::parse(b"abc").is_err());
        assert!(Sha1Claim::parse(&[b'g'; 40]).is_err());
    }
}
