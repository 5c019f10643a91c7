//! [`ResignLayer`]: re-signs requests for a real S3 upstream.
//!
//! The request target is rewritten for the upstream (scheme, host, port;
//! path-style or virtual-hosted buckets on either side), hop-by-hop headers
//! are dropped, and a new SigV4 signature is made with one of:
//! - the verified client's own key (default; the proxy is transparent),
//! - one fixed upstream key ([`ResignLayer::sign_with`]; also how requests of
//!   unsigned internal clients get signed when the layer is used alone),
//! - a per-client upstream key from the credential store
//!   ([`ResignLayer::sign_with_mapped_credentials`]), so client keys never
//!   work upstream.
//!
//! The upstream receives the payload mode the client chose: hex and
//! `UNSIGNED-PAYLOAD` keep their hash; aws-chunked payloads are framed again
//! with the client's chunk boundaries and new chunk and trailer signatures,
//! using the digests [`SigV4VerifyLayer`](crate::verify::SigV4VerifyLayer)
//! computed (enable
//! [`publish_chunk_digests`](crate::verify::SigV4VerifyLayer::publish_chunk_digests)),
//! so no payload byte is hashed twice and `Content-Length` stays the client's.
//! A presigned client request is forwarded with header authentication.
//!
//! Headers the client signed are signed again; headers it did not sign travel
//! unsigned (S3 accepts them, so the upstream sees what the client sent),
//! and `host`, `x-amz-date`, `x-amz-content-sha256` and every `x-amz-*`
//! header are always signed. `Expect`, hop-by-hop headers, `accept-encoding`
//! and `user-agent` are never signed.
//!
//! ```
//! use s3tap::resign::{ResignLayer, Upstream};
//!
//! let layer = ResignLayer::new(Upstream::parse("https://s3.us-west-004.backblazeb2.com").unwrap())
//!     .client_virtual_host_suffix("s3tap.example.com")
//!     .sign_with_mapped_credentials();
//! # let _ = layer;
//! ```

mod body;
mod future;
mod layer;
mod service;
mod upstream;

pub use body::{ReframeError, ResignBody};
pub use future::ResponseFuture;
pub use layer::ResignLayer;
#[cfg(feature = "proxy")]
pub(crate) use layer::{Addressing, CredentialsSource};
pub use service::{strip_hop_by_hop, Resign};
pub use upstream::{InvalidUpstream, Upstream};
