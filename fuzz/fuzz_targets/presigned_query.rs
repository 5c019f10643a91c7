//! Any query string as presigned-URL parameters: never panics, and what
//! parses respects S3's limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use s3tap::sigv4::{auth::MAX_PRESIGNED_EXPIRY_SECS, PresignedQuery};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = PresignedQuery::is_presigned(Some(text));
    if let Ok(parsed) = PresignedQuery::parse(text) {
        assert!(parsed.expires_secs <= MAX_PRESIGNED_EXPIRY_SECS);
        assert!(!parsed.signed_headers.names().is_empty());
    }
});
