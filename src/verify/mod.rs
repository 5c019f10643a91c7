//! [`SigV4VerifyLayer`]: AWS Signature V4 verification as tower middleware.
//!
//! Every request must carry a valid SigV4 signature, in an `Authorization`
//! header or as a presigned URL. Everything that can be checked from the head
//! (algorithm, scope, region, service, clock skew, expiry, signed headers,
//! payload mode, lengths) is checked first, then the secret is looked up in a
//! [`CredentialStore`](crate::credentials::CredentialStore) and the signature
//! recomputed; all before the body is polled. Failures become S3 XML errors.
//!
//! On success the inner service gets:
//! - a [`Verified`] request extension: who signed, for which scope, how the
//!   payload is protected;
//! - a [`VerifyBody`] that checks the payload while it streams:
//!   `x-amz-content-sha256` digests, `x-amz-checksum-*` headers and trailers,
//!   aws-chunked chunk and trailer signatures. For aws-chunked requests the
//!   framing is removed, `content-length` is the decoded length, and the
//!   trailers (checksums) arrive as HTTP trailers.
//!
//! The headers the client signed are otherwise left as sent, so
//! `x-amz-content-sha256` still names the client's payload mode
//! ([`Verified::payload`] says the same).
//!
//! ```
//! use s3tap::credentials::StaticCredentials;
//! use s3tap::verify::{SigV4VerifyLayer, Verified, VerifyBody};
//! use tower::ServiceBuilder;
//!
//! # fn main() {
//! let store = StaticCredentials::new().with_key("AKIDEXAMPLE", "secret");
//! let service = ServiceBuilder::new()
//!     .layer(SigV4VerifyLayer::new(store).region("us-east-1"))
//!     .service_fn(|request: http::Request<VerifyBody<http_body_util::Full<bytes::Bytes>>>| async move {
//!         let who = &request.extensions().get::<Verified>().unwrap().identity;
//!         Ok::<_, std::convert::Infallible>(http::Response::new(format!("hello {who}")))
//!     });
//! # let _ = service;
//! # }
//! ```

mod body;
mod error;
mod future;
mod layer;
mod service;

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex};

pub use body::{BoxError, ResponseBody, VerifyBody};
pub use error::VerifyError;
pub use future::ResponseFuture;
pub use layer::{PayloadHashing, SigV4VerifyLayer};
pub use service::SigV4Verify;

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
}

/// The request extension set by [`SigV4VerifyLayer`] on every request that
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

/// Length and SHA-256 of one verified aws-chunked chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkDigest {
    /// Chunk length in bytes.
    pub len: u64,
    /// SHA-256 of the chunk data.
    pub sha256: [u8; 32],
}

/// The digests of verified chunks, in order, pushed before each chunk's bytes
/// are released to the inner service. A re-signing layer pops one per chunk
/// it frames, so it never hashes the payload a second time.
#[derive(Clone, Default)]
pub struct ChunkDigests(Arc<Mutex<VecDeque<ChunkDigest>>>);

impl ChunkDigests {
    pub(crate) fn push(&self, digest: ChunkDigest) {
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
