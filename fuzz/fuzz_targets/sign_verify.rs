//! Sign-then-verify: a request built from arbitrary path, query and header
//! values, signed with the crate's signer, is accepted by the crate's own
//! verifier (`SigV4VerifyLayer`), and any one-byte change of a signed part
//! (path, query, a signed header's value, the date, the signature) is
//! refused.
#![no_main]

use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, Uri};
use http_body_util::Empty;
use libfuzzer_sys::fuzz_target;
use s3tap::credentials::StaticCredentials;
use s3tap::sigv4::{authorization_value, sign_request, AmzDate, CanonicalRequest, SigningKey, UriEncoding};
use s3tap::verify::SigV4VerifyLayer;
use tower::{Layer, Service};

const SECRET: &str = "fuzz-secret";
const DATE: &str = "20240101T000000Z";
const SCOPE: &str = "20240101/us-east-1/s3/aws4_request";
const SIGNED: [&str; 4] = ["host", "x-amz-content-sha256", "x-amz-date", "x-amz-meta-fuzz"];

/// The parts of one request that the signature covers.
#[derive(Clone)]
struct Parts {
    path_and_query: String,
    value: String,
    date: String,
    signature: Option<String>,
}

/// Picks one signed part out of [`Parts`].
type Field = fn(&mut Parts) -> &mut String;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut fields = text.split('\u{0}');
    let path = fields.next().unwrap_or("/");
    let query = fields.next();
    let value = fields.next().unwrap_or("");
    let path = if path.starts_with('/') { path.to_owned() } else { format!("/{path}") };
    // A presigned query next to an Authorization header is refused by
    // design; that is not what this target checks.
    if query.is_some_and(|q| q.to_ascii_lowercase().contains("x-amz-")) {
        return;
    }
    // A fragment never leaves the client: changes to it change nothing.
    if path.contains('#') || query.is_some_and(|q| q.contains('#')) {
        return;
    }
    let path_and_query = match query {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    let parts = Parts { path_and_query, value: value.to_owned(), date: DATE.to_owned(), signature: None };
    let Some(signed) = sign(&parts) else { return };
    assert!(verify(&signed), "a correctly signed request was refused: {:?} {:?}", signed.path_and_query, signed.value);

    let seed = data.iter().fold(0usize, |acc, &b| acc.wrapping_mul(31).wrapping_add(b as usize));
    let signature = signed.signature.clone().unwrap();
    let changes: [(&str, Field); 4] = [
        ("path or query", |p| &mut p.path_and_query),
        ("x-amz-meta-fuzz", |p| &mut p.value),
        ("x-amz-date", |p| &mut p.date),
        ("signature", |p| p.signature.as_mut().unwrap()),
    ];
    for (what, field) in changes {
        let mut changed = signed.clone();
        if !change_one_byte(field(&mut changed), seed) {
            continue;
        }
        if Uri::try_from(format!("http://bucket.s3.example.com{}", changed.path_and_query)).is_err() {
            continue;
        }
        assert_eq!(changed.signature.as_deref().map(str::len), Some(signature.len()));
        assert!(!verify(&changed), "a change of one byte of the {what} was accepted: {:?} -> {:?}", signed.path_and_query, changed.path_and_query);
    }
});

/// Replaces the first ASCII letter or digit at or after `seed % len`
/// (wrapping) with a different one of the same kind: a change no
/// canonicalisation (case of percent escapes aside, which letters rotate
/// within their case to avoid) can undo.
fn change_one_byte(text: &mut String, seed: usize) -> bool {
    let bytes = text.as_bytes();
    if bytes.is_empty() {
        return false;
    }
    let start = seed % bytes.len();
    let Some(i) = (0..bytes.len()).map(|k| (start + k) % bytes.len()).find(|&i| bytes[i].is_ascii_alphanumeric()) else {
        return false;
    };
    let b = bytes[i];
    let new = match b {
        b'0'..=b'8' | b'a'..=b'y' | b'A'..=b'Y' => b + 1,
        b'9' => b'0',
        b'z' => b'a',
        _ => b'A',
    };
    let mut owned = std::mem::take(text).into_bytes();
    owned[i] = new;
    *text = String::from_utf8(owned).expect("ASCII for ASCII");
    true
}

fn headers(parts: &Parts) -> Option<HeaderMap> {
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("bucket.s3.example.com"));
    headers.insert("x-amz-content-sha256", HeaderValue::from_static("UNSIGNED-PAYLOAD"));
    headers.insert("x-amz-date", HeaderValue::from_str(&parts.date).ok()?);
    headers.insert("x-amz-meta-fuzz", HeaderValue::from_str(&parts.value).ok()?);
    Some(headers)
}

/// Signs `parts` with the crate's signer; `None` when they make no request.
fn sign(parts: &Parts) -> Option<Parts> {
    let uri: Uri = format!("http://bucket.s3.example.com{}", parts.path_and_query).parse().ok()?;
    let headers = headers(parts)?;
    let date = AmzDate::parse(&parts.date)?;
    let key = SigningKey::derive(SECRET, "20240101", "us-east-1", "s3");
    let canonical = CanonicalRequest {
        method: "GET",
        path: uri.path(),
        query: uri.query(),
        skip_query_param: None,
        headers: &headers,
        authority: None,
        signed_headers: &SIGNED,
        payload_hash: "UNSIGNED-PAYLOAD",
        uri_encoding: UriEncoding::S3,
    };
    let signature = sign_request(&canonical, &key, &date, SCOPE).signature;
    let hex = signature.iter().map(|b| format!("{b:02x}")).collect();
    Some(Parts { signature: Some(hex), ..parts.clone() })
}

/// Whether the crate's verifier lets the request through to the service.
fn verify(parts: &Parts) -> bool {
    let Ok(uri) = Uri::try_from(format!("http://bucket.s3.example.com{}", parts.path_and_query)) else {
        return false;
    };
    let Some(headers) = headers(parts) else { return false };
    // The crate formats the header; the signature is put in as the (maybe
    // changed) hex text.
    let formatted = authorization_value("AKIDFUZZ", SCOPE, &SIGNED.join(";"), &[0; 32]);
    let (head, _) = formatted.rsplit_once("Signature=").expect("a Signature field");
    let authorization = format!("{head}Signature={}", parts.signature.as_deref().unwrap());
    let mut request = Request::get(uri).body(Empty::<Bytes>::new()).unwrap();
    *request.headers_mut() = headers;
    request.headers_mut().insert("authorization", HeaderValue::from_str(&authorization).unwrap());

    let clock = UNIX_EPOCH + Duration::from_secs(1_704_067_200); // 2024-01-01T00:00:00Z
    let layer = SigV4VerifyLayer::new(StaticCredentials::new().with_key("AKIDFUZZ", SECRET))
        .region("us-east-1")
        .clock(move || -> SystemTime { clock });
    let mut service = layer.layer(tower::service_fn(|_request| async {
        Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new()))
    }));
    let response = block_on(service.call(request)).unwrap();
    response.status().is_success()
}

/// Runs a future that needs no runtime (the verifier with a static store
/// and an inner service that answers at once) to completion.
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut context = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        match future.as_mut().poll(&mut context) {
            Poll::Ready(output) => return output,
            Poll::Pending => std::thread::park(),
        }
    }
}
