//! [`PostObjectLayer`]: browser form uploads (S3's presigned `POST`).
//!
//! A web page uploads straight to S3 with an HTML form: `POST /bucket` as
//! `multipart/form-data` carrying `key`, a base64 `policy` document, its
//! signature (`x-amz-signature`, with `x-amz-credential`, `x-amz-date` and
//! `x-amz-algorithm`), any object headers and metadata, and the `file`
//! last. boto3's `generate_presigned_post` writes such forms.
//!
//! The layer reads the fields before the file (at most 20 KB, names in any
//! case; fields after the file are ignored, as S3 does), then, before any
//! byte of the file is read:
//!
//! - checks the policy's signature with the client's secret from the
//!   [`CredentialStore`](crate::credentials::CredentialStore) (the SigV4
//!   signing key of the credential's scope, over the base64 policy);
//! - checks the policy: `expiration`, every `eq` / `starts-with` / exact
//!   condition (`bucket`, `key` after `${filename}` is replaced by the
//!   file's name, `Content-Type`, `success_action_status`,
//!   `success_action_redirect`, `x-amz-meta-*`, ...), and that every field
//!   sent is named by a condition (except `x-amz-signature`, `policy`,
//!   `file` and `x-ignore-*`).
//!
//! Then it takes the file and checks `content-length-range` on it:
//!
//! - **spooled** (the usual case: browsers do not state a part's length): the
//!   file is written to an unlinked temporary file, never more than the
//!   policy's maximum (or [`PostObjectLayer::max_file_size`], 5 GiB by
//!   default), so memory stays at one chunk whatever the size; once the
//!   whole file is in and within range it is sent on with its length. A
//!   file over the range stops being read at the first byte past it, and
//!   nothing is sent upstream.
//! - **streamed** when the file part carries its own `Content-Length`: a
//!   stated length outside the range is refused at once; otherwise the
//!   bytes go on as they arrive, and a part whose bytes differ from the
//!   stated length aborts the upstream request (so nothing is stored) and
//!   the client gets the error.
//!
//! (The upstream needs the length up front: a `PUT` of unknown length is
//! not accepted by S3, even as aws-chunked, which still needs
//! `x-amz-decoded-content-length`.)
//!
//! The service behind the layer (`form`, typically the stack behind
//! `SigV4VerifyLayer`) gets a `PUT` of the key with the file as body, the
//! form's object headers (`Content-Type`, `Cache-Control`,
//! `Content-Disposition`, `Content-Encoding`, `Expires`, `x-amz-meta-*`,
//! `acl` as `x-amz-acl`, storage class and server-side encryption), and a
//! [`Verified`](crate::verified::Verified) extension with
//! [`AuthKind::PostPolicy`](crate::verified::AuthKind::PostPolicy) and an
//! `UNSIGNED-PAYLOAD` payload: `AuthorizeLayer` decides it as `s3:PutObject`
//! on the key, `ResignLayer` signs it for the upstream, and the notification
//! layer reports `s3:ObjectCreated:Post` with the key (through
//! [`Observed`](crate::verified::Observed)).
//!
//! The answer is S3's: `204 No Content` by default; `200` or `201` with a
//! `PostResponse` document (`Location`, `Bucket`, `Key`, `ETag`) when
//! `success_action_status` asks; `303 See Other` to
//! `success_action_redirect` with `bucket`, `key` and `etag` added to its
//! query. Refusals are S3 XML: `AccessDenied` "Invalid according to Policy:
//! ..." (a failed condition, an extra field, an expired policy),
//! `SignatureDoesNotMatch`, `InvalidAccessKeyId`, `EntityTooLarge` /
//! `EntityTooSmall` (`content-length-range`), `InvalidPolicyDocument`,
//! `InvalidArgument` (a missing field), `MalformedPOSTRequest`,
//! `MaxPostPreDataLengthExceeded`, `IncorrectNumberOfFilesInPostRequest`,
//! and `InvalidRequest` for SigV2 forms. Anonymous forms (no policy) are
//! refused with `AccessDenied`.
//!
//! Every other request goes to the wrapped service unchanged.
//!
//! ```
//! use s3tap::credentials::StaticCredentials;
//! use s3tap::post::{PostBody, PostObjectLayer};
//! use s3tap::verify::{SigV4VerifyLayer, VerifyBody};
//! use tower::{service_fn, ServiceBuilder};
//!
//! # fn main() {
//! let store = StaticCredentials::new().with_key("AKIDEXAMPLE", "secret");
//! // What a verified request or a verified form upload reaches.
//! let upload = service_fn(|request: http::Request<PostBody>| async move {
//!     Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Empty::<bytes::Bytes>::new()))
//! });
//! let verified = service_fn(|request: http::Request<VerifyBody<hyper::body::Incoming>>| async move {
//!     Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Empty::<bytes::Bytes>::new()))
//! });
//! let service = ServiceBuilder::new()
//!     .layer(PostObjectLayer::new(store.clone(), upload).max_file_size(100 << 20))
//!     .layer(SigV4VerifyLayer::new(store))
//!     .service(verified);
//! # let _ = service;
//! # }
//! ```

mod body;
mod error;
mod form;
mod future;
mod layer;
mod policy;
mod response;
mod service;

pub use body::PostBody;
pub use error::PostError;
pub use form::{form_boundary, read_form, FilePart, FormFields, MAX_PRE_DATA};
pub use future::ResponseFuture;
pub use layer::{PostObjectLayer, DEFAULT_MAX_FILE_SIZE};
pub use policy::{Condition, PolicyError, PolicyViolation, PostPolicy};
pub use response::PostResponseBody;
pub use service::PostObject;
