//! What a verified request carries in its extensions: [`Verified`], set by
//! [`SigV4VerifyLayer`](crate::verify::SigV4VerifyLayer), and the per-chunk
//! digest channel. Other layers (re-signing, notifications) read these
//! without depending on the verifier itself.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex};

use crate::credentials::{Credential, Identity};
use crate::sigv4::{AmzDate, PayloadMode, SignedHeaders};

/// How the client authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthKind {
    /// An `Authorization` header.
    Header,
    /// A presigned URL valid for `expires_secs` from its date.
    Presigned {
        /// `X-Amz-Expires`.
        expires_secs: u64,
    },
    /// A browser form upload (presigned POST) whose policy was signed; the
    /// request the inner service sees is the `PUT` of the form's file.
    PostPolicy,
}

/// The request extension set by [`SigV4VerifyLayer`](crate::verify::SigV4VerifyLayer) on every request that
/// passed verification of its head.
#[derive(Clone)]
pub struct Verified {
    /// The client's access key id.
    pub access_key_id: String,
    /// Who the credential store says the client is.
    pub identity: Identity,
    /// The signing region.
    pub region: String,
    /// The signing service.
    pub service: String,
    /// The signing time (`x-amz-date` or `X-Amz-Date`).
    pub signing_time: AmzDate,
    /// The headers the client signed.
    pub signed_headers: SignedHeaders,
    /// How the payload is protected.
    pub payload: PayloadMode,
    /// Header or presigned authentication.
    pub auth: AuthKind,
    /// `Content-Length` as the client sent it (the encoded length for
    /// aws-chunked).
    pub content_length: Option<u64>,
    /// `x-amz-decoded-content-length`, for aws-chunked payloads.
    pub decoded_content_length: Option<u64>,
    /// The request signature, which seeds an aws-chunked signature chain.
    pub seed_signature: [u8; 32],
    /// Per-chunk digests, when the layer publishes them.
    pub chunk_digests: Option<ChunkDigests>,
    /// `Content-Encoding` as the client sent it: for aws-chunked payloads the
    /// layer removes `aws-chunked` from the header the inner service sees.
    pub original_content_encoding: Option<http::HeaderValue>,
    /// The credential that verified (secret included: redacted in Debug).
    pub credential: Arc<Credential>,
}

impl fmt::Debug for Verified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verified")
            .field("access_key_id", &self.access_key_id)
            .field("identity", &self.identity)
            .field("region", &self.region)
            .field("service", &self.service)
            .field("signing_time", &self.signing_time)
            .field("signed_headers", &self.signed_headers)
            .field("payload", &self.payload)
            .field("auth", &self.auth)
            .field("content_length", &self.content_length)
            .field("decoded_content_length", &self.decoded_content_length)
            .finish_non_exhaustive()
    }
}

/// Length and, for signed chunks, SHA-256 of one aws-chunked chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkDigest {
    /// Chunk length in bytes.
    pub len: u64,
    /// SHA-256 of the chunk data; `None` for unsigned chunks, which are not
    /// hashed (their boundaries are still published so that re-framing keeps
    /// the client's length).
    pub sha256: Option<[u8; 32]>,
}

/// The boundaries and digests of verified chunks, in order, pushed before
/// each chunk's bytes are released to the inner service. A re-signing layer pops one per chunk
/// it frames, so it never hashes the payload a second time.
#[derive(Clone, Default)]
pub struct ChunkDigests(Arc<Mutex<VecDeque<ChunkDigest>>>);

impl ChunkDigests {
    /// Publishes the next chunk's boundary and digest (the verifier does this).
    pub fn push(&self, digest: ChunkDigest) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(digest);
    }

    /// The next chunk's digest, if it has been verified.
    pub fn pop(&self) -> Option<ChunkDigest> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).pop_front()
    }
}

impl fmt::Debug for ChunkDigests {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pending = self.0.lock().map(|q| q.len()).unwrap_or(0);
        f.debug_struct("ChunkDigests")
            .field("pending", &pending)
            .finish()
    }
}

/// Facts inner layers learn about a request, for an outer observer such as
/// the notification layer: it puts an empty `Observed` into the request
/// extensions, the verifier and the re-signer fill it in, and the observer
/// reads it when the response comes back. Cheap to clone (shared).
#[derive(Clone, Default)]
pub struct Observed(Arc<Mutex<ObservedFacts>>);

/// What [`Observed`] holds.
#[derive(Clone, Debug, Default)]
pub struct ObservedFacts {
    /// The verified client's access key id.
    pub access_key_id: Option<String>,
    /// The verified client's identity name.
    pub identity: Option<String>,
    /// The client's signing time (`x-amz-date`).
    pub signature_timestamp: Option<String>,
    /// The decoded payload length of an aws-chunked upload.
    pub decoded_content_length: Option<u64>,
    /// The URL the request was sent to upstream, query included.
    pub upstream_url: Option<String>,
    /// The payload's SHA-256, recorded by the verifier once it hashed the
    /// whole payload and the digest matched the signed
    /// `x-amz-content-sha256`. Never set when the payload was not hashed
    /// (`payload_hashing = "defer"`, unsigned or chunked payloads) or did not
    /// match.
    pub payload_sha256: Option<[u8; 32]>,
    /// The `x-amz-checksum-*` header or trailer the verifier computed over
    /// the payload and found matching (algorithm, raw digest).
    pub payload_checksum: Option<(crate::sigv4::ChecksumAlgorithm, Vec<u8>)>,
    /// The object key of a request whose key is not in its URL: a form
    /// upload names it in a form field (set by `PostObjectLayer`).
    pub object_key: Option<String>,
    /// The object's `Content-Type` when the request's own is not it (a form
    /// upload's request is `multipart/form-data`).
    pub object_content_type: Option<String>,
}

impl Observed {
    /// Records facts (called by inner layers).
    pub fn record(&self, update: impl FnOnce(&mut ObservedFacts)) {
        update(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// A copy of what has been recorded so far.
    pub fn facts(&self) -> ObservedFacts {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl fmt::Debug for Observed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.facts().fmt(f)
    }
}

/// The client's network address, inserted into request extensions by the
/// server that accepted the connection (the s3tap proxy does).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddr(pub std::net::SocketAddr);

/// Set on the responses a layer produced itself to refuse a request, with a
/// short stable reason (for metrics and logs; see
/// [`VerifyError::reason`](crate::verify::VerifyError::reason)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// Which layer refused: `verify`, `resign`, ...
    pub layer: &'static str,
    /// Why, as a label (`signature_mismatch`, `clock_skew`, ...).
    pub reason: &'static str,
}
