//! [`B2NativeLayer`]: a proxy for Backblaze B2's native API (feature
//! `b2-native`), beside or instead of the S3 one.
//!
//! Clients of the native API (`b2sdk`, the `b2` CLI) authorize with
//! `b2_authorize_account` and are then told where to send everything else:
//! the `apiUrl`, `downloadUrl` and `s3ApiUrl` in that answer, and the
//! `uploadUrl` of `b2_get_upload_url` / `b2_get_upload_part_url`. Copying
//! requests to another host is therefore not enough: a client would follow
//! those URLs straight to B2. This layer forwards the calls and
//!
//! - **rewrites those URLs to the proxy** (its `public_url`, or the
//!   request's `Host`), in both the v1/v2 answer (flat) and the v3+ answer
//!   (`apiInfo.storageApi`);
//! - keeps **bounded maps** from what it handed out to the upstream: each
//!   token to its account's upstream API and download URLs (the token itself
//!   passes through unchanged, and the map holds only its SHA-256), each
//!   upload URL (`/b2api/s3tap/upload/<id>`) to the upstream's. A client
//!   whose token or upload URL was forgotten (evicted, or a restart) gets
//!   B2's `401 expired_auth_token`, on which b2sdk authorizes again or asks
//!   for a new upload URL;
//! - **streams uploads** (`b2_upload_file`, `b2_upload_part`) and checks
//!   `X-Bz-Content-Sha1` (40 hex digits, or `hex_digits_at_end`) while they
//!   stream, holding back the final frame until the digest matches, as the
//!   SigV4 path does: on a mismatch the upstream sees an aborted body and
//!   the client gets B2's JSON `400 bad_request`. `do_not_verify` passes
//!   the bytes on unchecked;
//! - **emits events** in the crate's [`Event`](crate::notify::Event) model:
//!   `b2_upload_file` is a `PutObject` (`b2:ObjectCreated:Upload`),
//!   `b2_finish_large_file` a `CompleteMultipartUpload`
//!   (`b2:ObjectCreated:MultipartUpload`), `b2_copy_file` a `CopyObject`
//!   (`b2:ObjectCreated:Copy`), `b2_delete_file_version` a `DeleteObject`
//!   (`b2:ObjectDeleted:Delete`), `b2_hide_file` a delete marker
//!   (`b2:HideMarkerCreated:Hide`), downloads by id and by name `GetObject`
//!   or `HeadObject`. The names, rules and formats are the S3 side's.
//!
//! Which requests are native: a path under `/b2api/` or `/file/` without
//! S3 credentials ([`is_native_request`]). Every other request goes to the
//! inner service, so one listener serves both APIs; a path-style S3 bucket
//! named `file` or `b2api` stays reachable through S3 because its requests
//! are SigV4-signed.
//!
//! Never logged: tokens, keys, and the query of a download (it may carry
//! a token). The layer is runtime-agnostic; `upstream` is any tower service
//! that sends requests with absolute URIs, such as
//! [`UpstreamClient`](crate::upstream::UpstreamClient).
//!
//! ```
//! use std::convert::Infallible;
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Full;
//! use s3tap::b2native::{B2NativeLayer, UploadBody};
//! use tower_layer::Layer;
//!
//! // What is not native API gets a 404 here; in the s3tap proxy it is the
//! // S3 stack.
//! let not_native = tower::service_fn(|_: Request<Full<Bytes>>| async {
//!     let mut response = Response::new(Full::new(Bytes::new()));
//!     *response.status_mut() = StatusCode::NOT_FOUND;
//!     Ok::<_, Infallible>(response)
//! });
//! // The upstream: in the proxy an `UpstreamClient`.
//! let upstream = tower::service_fn(|_: Request<UploadBody<Full<Bytes>>>| async {
//!     Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"{}"))))
//! });
//! let service = B2NativeLayer::new("https://api.backblazeb2.com", upstream)
//!     .public_url("https://b2proxy.example.com")
//!     .layer(not_native);
//! # let _ = service;
//! ```

mod answer;
mod body;
mod error;
mod events;
mod layer;
mod service;
mod state;

pub use body::{Sha1Claim, UploadBody};
pub use error::B2Error;
pub use layer::{B2NativeLayer, DEFAULT_MAX_ENTRIES, DEFAULT_MAX_JSON_BYTES};
pub use service::{is_native_request, B2Native, NativeBody, ResponseFuture};
