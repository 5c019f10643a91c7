//! AWS Signature Version 4, as S3 uses it: pure functions and small state
//! machines, with no tower and no HTTP server.
//!
//! - [`canonical`]: the canonical request (S3's encode-once paths, sorted
//!   query, trimmed headers);
//! - [`key`]: signing-key derivation and a per-day cache;
//! - [`sign`]: string to sign, signature, `Authorization` value;
//! - [`auth`]: parsing of the `Authorization` header, presigned query and
//!   `x-amz-content-sha256` payload modes;
//! - [`chunked`]: aws-chunked decoding and the chunk/trailer signature chain;
//! - [`checksum`]: CRC32, CRC32C, CRC64NVME, SHA1 and SHA256 checksums.
//!
//! ```
//! use s3tap::sigv4::{AmzDate, CanonicalRequest, SigningKey, UriEncoding, sign_request};
//!
//! let mut headers = http::HeaderMap::new();
//! headers.insert("host", "bucket.s3.amazonaws.com".parse().unwrap());
//! headers.insert("x-amz-date", "20130524T000000Z".parse().unwrap());
//! headers.insert("x-amz-content-sha256", "UNSIGNED-PAYLOAD".parse().unwrap());
//! let request = CanonicalRequest {
//!     method: "GET",
//!     path: "/photos/2024/a b.jpg",
//!     query: None,
//!     skip_query_param: None,
//!     headers: &headers,
//!     authority: None,
//!     signed_headers: &["host", "x-amz-content-sha256", "x-amz-date"],
//!     payload_hash: "UNSIGNED-PAYLOAD",
//!     uri_encoding: UriEncoding::S3,
//! };
//! let date = AmzDate::parse("20130524T000000Z").unwrap();
//! let key = SigningKey::derive("secret", &date.date_stamp(), "us-east-1", "s3");
//! let signed = sign_request(&request, &key, &date, "20130524/us-east-1/s3/aws4_request");
//! assert!(String::from_utf8(signed.canonical_request).unwrap().contains("/photos/2024/a%20b.jpg"));
//! ```

pub mod auth;
pub mod canonical;
pub mod checksum;
pub mod chunked;
pub mod key;
pub mod sign;
pub mod time;

pub use auth::{
    AuthParseError, AuthorizationHeader, CredentialScope, PayloadMode, PresignedQuery,
    SignedHeaders,
};
pub use canonical::{CanonicalRequest, UriEncoding};
pub use checksum::{ChecksumAlgorithm, Checksummer};
pub use chunked::{ChunkEvent, ChunkSigner, ChunkedDecoder, ChunkedError, ChunkedLimits};
pub use key::{SigningKey, SigningKeyCache};
pub use sign::{authorization_value, sign_post_policy, sign_request, string_to_sign, Signature};
pub use time::AmzDate;
