//! [`AuthorizeLayer`]: per-client IAM-style policies, decided before any
//! byte of a request goes further.
//!
//! Placed after [`SigV4VerifyLayer`](crate::verify::SigV4VerifyLayer), it
//! reads the [`Verified`](crate::verified::Verified) client, finds its
//! [`Policy`] through a [`PolicySource`] ([`StaticPolicies`] maps access key
//! ids to policies), classifies the request with
//! [`classify`](crate::notify::classify()) and checks the IAM actions the
//! operation needs, as "Actions defined by Amazon S3" names them:
//!
//! - object operations on `arn:aws:s3:::bucket/key` (`s3:GetObject` for
//!   GET and HEAD, `s3:PutObject` for PUT and every step of a multipart
//!   upload, `s3:AbortMultipartUpload`, `s3:ListMultipartUploadParts`,
//!   `s3:DeleteObject`, `s3:GetObjectTagging`, ...; the `...Version` actions
//!   when the request names a `versionId`);
//! - bucket operations on `arn:aws:s3:::bucket` (`s3:ListBucket` for
//!   ListObjects, ListObjectsV2 and HeadBucket, with the listing's `prefix`
//!   and `delimiter` as `s3:prefix` and `s3:delimiter`;
//!   `s3:ListBucketVersions`, also with `s3:prefix`;
//!   `s3:ListBucketMultipartUploads`, `s3:GetBucketVersioning`, ...);
//! - ListBuckets is `s3:ListAllMyBuckets` on `*`;
//! - CopyObject and UploadPartCopy need `s3:GetObject` on the source
//!   (`x-amz-copy-source`) and `s3:PutObject` on the target;
//! - DeleteObjects needs `s3:DeleteObject` on every key its body names: the
//!   key list (at most [`MAX_DELETE_KEYS`](crate::notify::MAX_DELETE_KEYS)
//!   keys in [`MAX_DELETE_REQUEST_BYTES`](crate::notify::MAX_DELETE_REQUEST_BYTES))
//!   is read and held until the decision, and **one denied key refuses the
//!   whole request** (the body then goes on unchanged, so its `Content-MD5`
//!   still holds; S3 would answer per-key errors instead).
//!
//! `aws:SourceIp` is the [`ClientAddr`](crate::verified::ClientAddr) request
//! extension (the s3tap proxy sets it), `aws:SecureTransport` what
//! [`AuthorizeLayer::secure_transport`] says, `aws:CurrentTime` the layer's
//! clock. See [`Policy`] for the supported subset of the policy language
//! and how it is evaluated.
//!
//! A refusal is S3's `AccessDenied` (403) with the request's id (the
//! [`RequestId`](crate::s3error::RequestId) extension, or a fresh one),
//! logged at info level with the client's key id and identity and the
//! action and resource, and carries a [`Denied`] response extension. A
//! request without a [`Verified`](crate::verified::Verified) extension is
//! refused; so is one whose operation has no IAM action here (`Other`, form
//! uploads: `post::PostObjectLayer` (feature `post`) in front turns
//! an accepted form into the `PUT` of its key, decided as `s3:PutObject`),
//! and a client without a policy unless
//! [`AuthorizeLayer::allow_without_policy`] says otherwise.
//!
//! ```
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use s3tap::authorize::{Access, AuthorizeBody, AuthorizeLayer, Policy, StaticPolicies};
//! use s3tap::credentials::StaticCredentials;
//! use s3tap::verify::{SigV4VerifyLayer, VerifyBody};
//! use tower::ServiceBuilder;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let reader = Policy::shorthand(Access::ReadOnly, ["photos"])?;
//! let uploads = Policy::from_json(
//!     r#"{
//!         "Version": "2012-10-17",
//!         "Statement": [
//!             {"Effect": "Allow", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::inbox/*"},
//!             {"Effect": "Deny", "Action": "s3:*", "Resource": "*",
//!              "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
//!         ]
//!     }"#,
//! )?;
//! let policies = StaticPolicies::new()
//!     .with_policy("READERKEY", reader)
//!     .with_policy("UPLOADERKEY", uploads);
//! let credentials = StaticCredentials::new()
//!     .with_key("READERKEY", "reader-secret")
//!     .with_key("UPLOADERKEY", "uploader-secret");
//! let service = ServiceBuilder::new()
//!     .layer(SigV4VerifyLayer::new(credentials))
//!     .layer(AuthorizeLayer::new(policies).secure_transport(true))
//!     .service_fn(|_request: http::Request<AuthorizeBody<VerifyBody<Full<Bytes>>>>| async {
//!         Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::new())))
//!     });
//! # let _ = service;
//! # Ok(())
//! # }
//! ```

mod actions;
mod body;
mod error;
mod future;
mod layer;
pub mod policy;
mod service;
mod source;

pub use body::AuthorizeBody;
pub use error::PolicyError;
pub use future::ResponseFuture;
pub use layer::AuthorizeLayer;
pub use policy::{Access, Decision, Policy, RequestContext};
pub use service::{Authorize, Denied};
pub use source::{PolicySource, StaticPolicies};
