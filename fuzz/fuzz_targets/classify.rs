//! S3 operation classification of arbitrary request targets and hosts.
#![no_main]

use http::{HeaderMap, HeaderValue, Method, Uri};
use libfuzzer_sys::fuzz_target;
use s3tap::notify::classify;

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let method = [Method::GET, Method::PUT, Method::POST, Method::DELETE, Method::HEAD][usize::from(data[0]) % 5].clone();
    let text = String::from_utf8_lossy(&data[1..]);
    let (target, host) = text.split_once('\n').unwrap_or((&text, "s3.example.com"));
    let Ok(uri) = target.parse::<Uri>() else { return };
    let mut headers = HeaderMap::new();
    if let Ok(host) = HeaderValue::from_str(host) {
        headers.insert("host", host);
    }
    for suffix in [None, Some("s3.example.com")] {
        let classified = classify(&method, &uri, &headers, suffix);
        if let Some(bucket) = &classified.bucket {
            assert!(!bucket.is_empty());
        }
    }
});
