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
//! - a [`Verified`](crate::verified::Verified) request extension: who signed, for which scope, how the
//!   payload is protected;
//! - a [`VerifyBody`] that checks the payload while it streams:
//!   `x-amz-content-sha256` digests, `x-amz-checksum-*` headers and trailers,
//!   aws-chunked chunk and trailer signatures. For aws-chunked requests the
//!   framing is removed, `content-length` is the decoded length, and the
//!   trailers (checksums) arrive as HTTP trailers.
//!
//! The headers the client signed are otherwise left as sent, so
//! `x-amz-content-sha256` still names the client's payload mode
//! ([`Verified::payload`](crate::verified::Verified::payload) says the same).
//!
//! ```
//! use s3tap::credentials::StaticCredentials;
//! use s3tap::verified::Verified;
//! use s3tap::verify::{SigV4VerifyLayer, VerifyBody};
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
mod checks;
mod error;
mod future;
mod layer;
mod service;

pub use body::VerifyBody;
pub use error::VerifyError;
pub use future::ResponseFuture;
pub use layer::{PayloadHashing, SigV4VerifyLayer};
pub use service::SigV4Verify;
