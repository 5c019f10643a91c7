//! Inputs the fuzzers (`scripts/fuzz.sh`) once found to fail, replayed the
//! way each fuzz target reads them.
#![cfg(feature = "notify")]

use http::{HeaderMap, HeaderValue, Method, Uri};
use s3tap::notify::classify;

/// The `classify` target: first byte picks the method, the rest is
/// `target\nhost`.
fn replay_classify(data: &[u8]) {
    let method = [
        Method::GET,
        Method::PUT,
        Method::POST,
        Method::DELETE,
        Method::HEAD,
    ][usize::from(data[0]) % 5]
        .clone();
    let text = String::from_utf8_lossy(&data[1..]);
    let (target, host) = text.split_once('\n').unwrap_or((&text, "s3.example.com"));
    let Ok(uri) = target.parse::<Uri>() else {
        return;
    };
    let mut headers = HeaderMap::new();
    if let Ok(host) = HeaderValue::from_str(host) {
        headers.insert("host", host);
    }
    for suffix in [None, Some("s3.example.com")] {
        let _ = classify(&method, &uri, &headers, suffix);
    }
}

#[test]
fn a_query_name_with_non_ascii_near_x_amz_does_not_panic() {
    let data = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/fuzz-regressions/classify-char-boundary"
    ))
    .unwrap();
    replay_classify(&data);
    // The same shape written out: a query parameter name whose sixth byte is
    // inside a multi-byte character.
    let uri: Uri = "/b/k?ab\u{FFFD}cd=1"
        .parse()
        .unwrap_or_else(|_| "/b/k?x=1".parse().unwrap());
    let _ = classify(&Method::GET, &uri, &HeaderMap::new(), None);
}
