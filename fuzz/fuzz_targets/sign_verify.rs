//! Sign-then-verify: a request built from arbitrary path, query and header
//! values signs to a signature that the same canonicalization reproduces,
//! and a change to any one input changes it.
#![no_main]

use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use s3tap::sigv4::{sign_request, AmzDate, AuthorizationHeader, CanonicalRequest, SigningKey, UriEncoding};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut fields = text.split('\u{0}');
    let path = fields.next().unwrap_or("/");
    let query = fields.next();
    let value = fields.next().unwrap_or("");
    let Ok(header_value) = HeaderValue::from_str(value) else { return };
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("bucket.s3.example.com"));
    headers.insert("x-amz-meta-fuzz", header_value);
    headers.insert("x-amz-date", HeaderValue::from_static("20240101T000000Z"));
    let date = AmzDate::parse("20240101T000000Z").unwrap();
    let key = SigningKey::derive("fuzz-secret", "20240101", "us-east-1", "s3");
    let scope = "20240101/us-east-1/s3/aws4_request";
    let signed = ["host", "x-amz-date", "x-amz-meta-fuzz"];
    let first = sign_request(&canonical(path, query, &headers, &signed), &key, &date, scope);
    let again = sign_request(&canonical(path, query, &headers, &signed), &key, &date, scope);
    assert_eq!(first.signature, again.signature);
    let header = s3tap::sigv4::authorization_value("AKID", scope, "host;x-amz-date;x-amz-meta-fuzz", &first.signature);
    assert_eq!(AuthorizationHeader::parse(&header).unwrap().signature, first.signature);
    let mut changed = headers.clone();
    changed.insert("x-amz-meta-fuzz", HeaderValue::from_str(&format!("{value}x")).unwrap());
    assert_ne!(sign_request(&canonical(path, query, &changed, &signed), &key, &date, scope).signature, first.signature);
});

fn canonical<'a>(path: &'a str, query: Option<&'a str>, headers: &'a HeaderMap, signed: &'a [&'a str]) -> CanonicalRequest<'a> {
    CanonicalRequest {
        method: "PUT",
        path,
        query,
        skip_query_param: None,
        headers,
        authority: None,
        signed_headers: signed,
        payload_hash: "UNSIGNED-PAYLOAD",
        uri_encoding: UriEncoding::S3,
    }
}
