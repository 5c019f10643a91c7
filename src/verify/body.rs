//! [`VerifyBody`], the request body the inner service reads: payload checked
//! while it streams, aws-chunked framing removed, trailers delivered as HTTP
//! trailers; and [`ResponseBody`], the inner response or an S3 error.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use sha2::{Digest, Sha256};

use super::error::VerifyError;
use crate::crypto::constant_time_eq;
use crate::sigv4::chunked::empty_sha256;
use crate::sigv4::{
    ChecksumAlgorithm, Checksummer, ChunkEvent, ChunkSigner, ChunkedDecoder, ChunkedLimits,
    PayloadMode,
};
use crate::verified::{ChunkDigest, ChunkDigests};

use crate::body::BoxError;

/// Shared between a body and its response future: the first verification
/// failure, so the response can carry the precise S3 error.
#[derive(Clone, Default)]
pub(crate) struct FailureSlot(Arc<Mutex<Option<VerifyError>>>);

impl FailureSlot {
    fn set(&self, error: VerifyError) {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        slot.get_or_insert(error);
    }

    pub(crate) fn take(&self) -> Option<VerifyError> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// How the payload is checked, decided from the request head.
pub(crate) enum PayloadPlan {
    Passthrough,
    Whole {
        sha256: Option<[u8; 32]>,
        checksum: Option<(ChecksumAlgorithm, Vec<u8>)>,
        expected_len: Option<u64>,
    },
    Chunked {
        mode: PayloadMode,
        signer: Option<ChunkSigner>,
        limits: ChunkedLimits,
        decoded_len: u64,
        checksum_header: Option<(ChecksumAlgorithm, Vec<u8>)>,
        trailer_checksum: Option<ChecksumAlgorithm>,
        declared_trailers: Vec<String>,
        digests: Option<ChunkDigests>,
    },
}

pin_project! {
    /// The request body behind [`SigV4VerifyLayer`](super::SigV4VerifyLayer).
    ///
    /// Payload bytes are passed on as slices of the frames that arrived (no
    /// copy). Verified bytes flow at once, except the last piece, which is
    /// held until every end-of-payload check (digest, checksum, final chunk
    /// and trailer signatures, length) has passed; on failure the body ends
    /// with an error instead, so the inner service never reads a complete
    /// payload that did not verify.
    pub struct VerifyBody<B> {
        #[pin]
        inner: B,
        check: Option<Box<PayloadCheck>>,
    }
}

impl<B> VerifyBody<B> {
    pub(crate) fn new(
        inner: B,
        plan: PayloadPlan,
        failure: FailureSlot,
        observed: Option<crate::verified::Observed>,
    ) -> Self {
        let mode = match plan {
            PayloadPlan::Passthrough => return VerifyBody { inner, check: None },
            PayloadPlan::Whole {
                sha256,
                checksum,
                expected_len,
            } => CheckMode::Whole {
                sha256: sha256.map(|claimed| (Sha256::new(), claimed)),
                checksum: checksum.map(|(algorithm, claimed)| (algorithm.hasher(), claimed)),
                expected_len,
            },
            PayloadPlan::Chunked {
                mode,
                signer,
                limits,
                decoded_len,
                checksum_header,
                trailer_checksum,
                declared_trailers,
                digests,
            } => {
                let checksum_algorithm =
                    trailer_checksum.or(checksum_header.as_ref().map(|(a, _)| *a));
                CheckMode::Chunked(Box::new(ChunkedCheck {
                    decoder: ChunkedDecoder::new(
                        mode.has_chunk_signatures(),
                        mode.has_trailer(),
                        limits,
                    ),
                    signed_trailer: mode == PayloadMode::StreamingSignedTrailer,
                    signer,
                    events: Vec::new(),
                    claimed_chunk_signature: None,
                    chunk_hasher: Sha256::new(),
                    chunk_len: 0,
                    chunk: Vec::new(),
                    checksum: checksum_algorithm.map(|a| a.hasher()),
                    checksum_header: checksum_header.map(|(_, claimed)| claimed),
                    trailer_checksum,
                    declared_trailers,
                    trailers: HeaderMap::new(),
                    trailer_lines: Vec::new(),
                    trailer_signature_checked: false,
                    decoded_len,
                    digests,
                }))
            }
        };
        VerifyBody {
            inner,
            check: Some(Box::new(PayloadCheck {
                mode,
                verified: VecDeque::new(),
                finished: false,
                failed: false,
                trailers: None,
                received: 0,
                failure,
                observed,
            })),
        }
    }

    /// Whether this body checks anything (false for passthrough).
    pub fn is_checked(&self) -> bool {
        self.check.is_some()
    }
}

struct PayloadCheck {
    mode: CheckMode,
    verified: VecDeque<Bytes>,
    finished: bool,
    failed: bool,
    trailers: Option<HeaderMap>,
    received: u64,
    failure: FailureSlot,
    // Where to record the digests that matched, for an outer observer.
    observed: Option<crate::verified::Observed>,
}

// The whole check is boxed once per request, so the size of the larger
// variant costs nothing extra.
#[allow(clippy::large_enum_variant)]
enum CheckMode {
    Whole {
        sha256: Option<(Sha256, [u8; 32])>,
        checksum: Option<(Checksummer, Vec<u8>)>,
        expected_len: Option<u64>,
    },
    Chunked(Box<ChunkedCheck>),
}

struct ChunkedCheck {
    decoder: ChunkedDecoder,
    signed_trailer: bool,
    signer: Option<ChunkSigner>,
    events: Vec<ChunkEvent>,
    claimed_chunk_signature: Option<[u8; 32]>,
    chunk_hasher: Sha256,
    chunk_len: u64,
    // Slices of the signed chunk in progress, held until its signature is
    // checked: at most one chunk, capped by the chunk-size limit.
    chunk: Vec<Bytes>,
    checksum: Option<Checksummer>,
    checksum_header: Option<Vec<u8>>,
    trailer_checksum: Option<ChecksumAlgorithm>,
    declared_trailers: Vec<String>,
    trailers: HeaderMap,
    // (name, value) as received; signed sorted by name, as the SDKs sign.
    trailer_lines: Vec<(String, String)>,
    trailer_signature_checked: bool,
    decoded_len: u64,
    digests: Option<ChunkDigests>,
}

impl PayloadCheck {
    /// Records what the payload was verified against, once it all matched.
    fn record_verified(
        &self,
        sha256: Option<[u8; 32]>,
        checksum: Option<(ChecksumAlgorithm, Vec<u8>)>,
    ) {
        if let Some(observed) = &self.observed {
            observed.record(|facts| {
                facts.payload_sha256 = sha256;
                facts.payload_checksum = checksum;
            });
        }
    }

    fn next_releasable(&mut self) -> Option<Bytes> {
        if self.finished || self.verified.len() > 1 {
            self.verified.pop_front()
        } else {
            None
        }
    }

    fn fail(&mut self, error: VerifyError) -> BoxError {
        self.failed = true;
        self.verified.clear();
        if let CheckMode::Chunked(chunked) = &mut self.mode {
            chunked.chunk.clear();
        }
        self.failure.set(error.clone());
        Box::new(error)
    }

    fn accept_data(&mut self, data: Bytes) -> Result<(), VerifyError> {
        match &mut self.mode {
            CheckMode::Whole {
                sha256,
                checksum,
                expected_len,
            } => {
                self.received += data.len() as u64;
                if let Some(declared) = *expected_len {
                    if self.received > declared {
                        return Err(VerifyError::LengthMismatch {
                            declared,
                            received: self.received,
                        });
                    }
                }
                if let Some((hasher, _)) = sha256 {
                    hasher.update(&data);
                }
                if let Some((hasher, _)) = checksum {
                    hasher.update(&data);
                }
                if !data.is_empty() {
                    self.verified.push_back(data);
                }
                Ok(())
            }
            CheckMode::Chunked(chunked) => {
                chunked
                    .decoder
                    .decode(data, &mut chunked.events)
                    .map_err(VerifyError::Framing)?;
                let events = std::mem::take(&mut chunked.events);
                let mut result = Ok(());
                for event in events.iter().cloned() {
                    result = chunked.apply(event, &mut self.verified, &mut self.received);
                    if result.is_err() {
                        break;
                    }
                }
                // Keep the allocation for the next frame.
                chunked.events = events;
                chunked.events.clear();
                if chunked.decoder.is_done() && result.is_ok() {
                    let (trailers, checksum) = chunked.finish(self.received)?;
                    self.trailers = trailers;
                    self.finished = true;
                    self.record_verified(None, checksum);
                }
                result
            }
        }
    }

    fn finish(&mut self) -> Result<(), VerifyError> {
        match &mut self.mode {
            CheckMode::Whole {
                sha256,
                checksum,
                expected_len,
            } => {
                if let Some(declared) = *expected_len {
                    if self.received != declared {
                        return Err(VerifyError::LengthMismatch {
                            declared,
                            received: self.received,
                        });
                    }
                }
                let mut verified_sha256 = None;
                if let Some((hasher, claimed)) = sha256.take() {
                    let computed: [u8; 32] = hasher.finalize().into();
                    if !constant_time_eq(&computed, &claimed) {
                        return Err(VerifyError::PayloadHashMismatch {
                            claimed: hex::encode(claimed),
                            computed: hex::encode(computed),
                        });
                    }
                    verified_sha256 = Some(computed);
                }
                let mut verified_checksum = None;
                if let Some((hasher, claimed)) = checksum.take() {
                    let algorithm = hasher.algorithm();
                    if !constant_time_eq(&hasher.finalize(), &claimed) {
                        return Err(VerifyError::ChecksumMismatch(algorithm));
                    }
                    verified_checksum = Some((algorithm, claimed));
                }
                self.record_verified(verified_sha256, verified_checksum);
            }
            CheckMode::Chunked(chunked) => {
                chunked.decoder.finish().map_err(VerifyError::Framing)?;
            }
        }
        self.finished = true;
        Ok(())
    }
}

impl ChunkedCheck {
    fn apply(
        &mut self,
        event: ChunkEvent,
        verified: &mut VecDeque<Bytes>,
        received: &mut u64,
    ) -> Result<(), VerifyError> {
        match event {
            ChunkEvent::ChunkStart { size, signature } => {
                self.claimed_chunk_signature = signature;
                self.chunk_len = size;
                if self.signer.is_none() {
                    // Unsigned chunks flow at once: publish the boundary now,
                    // before any of the chunk's bytes.
                    if let Some(digests) = &self.digests {
                        digests.push(ChunkDigest {
                            len: size,
                            sha256: None,
                        });
                    }
                }
            }
            ChunkEvent::Data(data) => {
                *received += data.len() as u64;
                if *received > self.decoded_len {
                    return Err(VerifyError::LengthMismatch {
                        declared: self.decoded_len,
                        received: *received,
                    });
                }
                if let Some(checksum) = &mut self.checksum {
                    checksum.update(&data);
                }
                if self.signer.is_some() {
                    self.chunk_hasher.update(&data);
                    self.chunk.push(data);
                } else {
                    verified.push_back(data);
                }
            }
            ChunkEvent::ChunkEnd => {
                if let Some(signer) = &mut self.signer {
                    let digest: [u8; 32] = self.chunk_hasher.finalize_reset().into();
                    let expected = signer.next_chunk(&digest);
                    let claimed = self.claimed_chunk_signature.take().unwrap_or_default();
                    if !constant_time_eq(&expected, &claimed) {
                        return Err(VerifyError::ChunkSignatureMismatch);
                    }
                    if let Some(digests) = &self.digests {
                        digests.push(ChunkDigest {
                            len: self.chunk_len,
                            sha256: Some(digest),
                        });
                    }
                    verified.extend(self.chunk.drain(..));
                }
            }
            ChunkEvent::FinalChunk { signature } => {
                if let Some(signer) = &mut self.signer {
                    let expected = signer.next_chunk(&empty_sha256());
                    if !constant_time_eq(&expected, &signature.unwrap_or_default()) {
                        return Err(VerifyError::ChunkSignatureMismatch);
                    }
                }
            }
            ChunkEvent::Trailer { name, value } => {
                if let (Ok(header_name), Ok(header_value)) = (
                    HeaderName::try_from(name.as_str()),
                    HeaderValue::try_from(value.as_str()),
                ) {
                    self.trailers.append(header_name, header_value);
                }
                self.trailer_lines.push((name, value));
            }
            ChunkEvent::TrailerSignature(claimed) => {
                let signer = self
                    .signer
                    .as_mut()
                    .ok_or(VerifyError::TrailerSignatureMismatch)?;
                let mut lines = self.trailer_lines.clone();
                lines.sort();
                let mut canonical = Vec::with_capacity(64);
                for (name, value) in &lines {
                    canonical.extend_from_slice(name.as_bytes());
                    canonical.push(b':');
                    canonical.extend_from_slice(value.as_bytes());
                    canonical.push(b'\n');
                }
                let expected = signer.trailer(&canonical);
                if !constant_time_eq(&expected, &claimed) {
                    return Err(VerifyError::TrailerSignatureMismatch);
                }
                self.trailer_signature_checked = true;
            }
            ChunkEvent::End => {}
        }
        Ok(())
    }

    /// End-of-stream checks once the decoder has seen the final CRLF; gives
    /// the trailers to deliver and the checksum that matched, if any.
    #[allow(clippy::type_complexity)]
    fn finish(
        &mut self,
        received: u64,
    ) -> Result<(Option<HeaderMap>, Option<(ChecksumAlgorithm, Vec<u8>)>), VerifyError> {
        if received != self.decoded_len {
            return Err(VerifyError::LengthMismatch {
                declared: self.decoded_len,
                received,
            });
        }
        if self.signed_trailer && !self.trailer_signature_checked {
            return Err(VerifyError::TrailerSignatureMismatch);
        }
        for declared in &self.declared_trailers {
            if !self.trailers.contains_key(declared.as_str()) {
                return Err(VerifyError::MissingTrailer(declared.clone()));
            }
        }
        let mut verified = None;
        if let Some(hasher) = self.checksum.take() {
            let algorithm = hasher.algorithm();
            let claimed = match (self.trailer_checksum, &self.checksum_header) {
                (Some(trailer), _) => self
                    .trailers
                    .get(trailer.header_name())
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| trailer.decode_value(v))
                    .ok_or(VerifyError::InvalidChecksumHeader(trailer.header_name()))?,
                (None, Some(header)) => header.clone(),
                (None, None) => unreachable!("a checksum is computed only when one is claimed"),
            };
            if !constant_time_eq(&hasher.finalize(), &claimed) {
                return Err(VerifyError::ChecksumMismatch(algorithm));
            }
            verified = Some((algorithm, claimed));
        }
        let trailers = (!self.trailers.is_empty()).then(|| std::mem::take(&mut self.trailers));
        Ok((trailers, verified))
    }
}

impl<B> Body for VerifyBody<B>
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
        let Some(check) = this.check.as_mut() else {
            return this.inner.poll_frame(cx).map_err(Into::into);
        };
        loop {
            if let Some(data) = check.next_releasable() {
                return Poll::Ready(Some(Ok(Frame::data(data))));
            }
            if check.failed {
                return Poll::Ready(None);
            }
            if check.finished {
                return Poll::Ready(check.trailers.take().map(|t| Ok(Frame::trailers(t))));
            }
            match ready!(this.inner.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        if let Err(error) = check.accept_data(data) {
                            return Poll::Ready(Some(Err(check.fail(error))));
                        }
                    }
                    Err(frame) => {
                        // HTTP trailers on a non-chunked payload are passed on.
                        if let Ok(trailers) = frame.into_trailers() {
                            check
                                .trailers
                                .get_or_insert_with(HeaderMap::new)
                                .extend(trailers);
                        }
                    }
                },
                Some(Err(error)) => {
                    let error: BoxError = error.into();
                    check.fail(VerifyError::BodyAborted(error.to_string()));
                    return Poll::Ready(Some(Err(error)));
                }
                None => {
                    if !check.finished {
                        if let Err(error) = check.finish() {
                            return Poll::Ready(Some(Err(check.fail(error))));
                        }
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.check {
            None => self.inner.is_end_stream(),
            Some(check) => {
                check.failed
                    || (check.finished && check.verified.is_empty() && check.trailers.is_none())
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.check {
            None => self.inner.size_hint(),
            Some(check) => match &check.mode {
                CheckMode::Chunked(chunked) => SizeHint::with_exact(
                    chunked.decoded_len - check.received.min(chunked.decoded_len)
                        + check.verified.iter().map(|b| b.len() as u64).sum::<u64>()
                        + chunked.chunk.iter().map(|b| b.len() as u64).sum::<u64>(),
                ),
                CheckMode::Whole { .. } => self.inner.size_hint(),
            },
        }
    }
}

impl<B> std::fmt::Debug for VerifyBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyBody")
            .field("checked", &self.check.is_some())
            .finish_non_exhaustive()
    }
}
