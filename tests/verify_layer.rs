//! SigV4VerifyLayer end to end through tower: requests signed by the
//! independent `aws-sigv4` signer are accepted, every failure is the S3
//! error MinIO and S3 answer with, and no unverified byte reaches the inner
//! service.

mod signing;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::SignableBody;
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use s3tap::credentials::{Credential, StaticCredentials};
use s3tap::sigv4::ChecksumAlgorithm;
use s3tap::verified::{AuthKind, Verified};
use s3tap::verify::{PayloadHashing, SigV4VerifyLayer, VerifyBody};
use signing::*;
use tower::{Layer, Service, ServiceExt};

/// What the inner service saw.
#[derive(Clone, Default)]
struct Seen {
    calls: Arc<AtomicUsize>,
    bytes: Arc<Mutex<Vec<u8>>>,
    trailers: Arc<Mutex<Option<HeaderMap>>>,
    body_error: Arc<Mutex<Option<String>>>,
    verified: Arc<Mutex<Option<Verified>>>,
    headers: Arc<Mutex<Option<HeaderMap>>>,
}

type TestBody =
    StreamBody<futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

fn frames(data: &[u8], split: usize) -> TestBody {
    let pieces: Vec<Result<Frame<Bytes>, Infallible>> = data
        .chunks(split.max(1))
        .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
        .collect();
    StreamBody::new(futures_util::stream::iter(pieces))
}

fn layer() -> SigV4VerifyLayer<StaticCredentials> {
    SigV4VerifyLayer::new(StaticCredentials::new().with_key(ACCESS_KEY, SECRET))
        .region(REGION)
        .clock(fixed_time)
}

fn inner(
    seen: Seen,
) -> impl Service<
    Request<VerifyBody<TestBody>>,
    Response = Response<http_body_util::Full<Bytes>>,
    Error = Infallible,
    Future = impl Send,
> + Clone
       + Send
       + 'static {
    tower::service_fn(move |request: Request<VerifyBody<TestBody>>| {
        let seen = seen.clone();
        async move {
            seen.calls.fetch_add(1, Ordering::SeqCst);
            *seen.verified.lock().unwrap() = request.extensions().get::<Verified>().cloned();
            *seen.headers.lock().unwrap() = Some(request.headers().clone());
            let mut body = request.into_body();
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(frame) => match frame.into_data() {
                        Ok(data) => seen.bytes.lock().unwrap().extend_from_slice(&data),
                        Err(frame) => *seen.trailers.lock().unwrap() = frame.into_trailers().ok(),
                    },
                    Err(error) => {
                        *seen.body_error.lock().unwrap() = Some(error.to_string());
                        return Ok(Response::builder()
                            .status(500)
                            .body(http_body_util::Full::new(Bytes::from("inner saw an error")))
                            .unwrap());
                    }
                }
            }
            Ok(Response::new(http_body_util::Full::new(Bytes::from(
                "stored",
            ))))
        }
    })
}

struct Outcome {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
    seen: Seen,
}

impl Outcome {
    fn code(&self) -> String {
        self.body
            .split("<Code>")
            .nth(1)
            .and_then(|rest| rest.split("</Code>").next())
            .unwrap_or("")
            .to_owned()
    }

    fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        assert_eq!(self.code(), code, "body: {}", self.body);
        assert!(self.headers.contains_key("x-amz-request-id"));
        let request_id = self.headers["x-amz-request-id"].to_str().unwrap();
        assert!(self
            .body
            .contains(&format!("<RequestId>{request_id}</RequestId>")));
    }

    fn received(&self) -> Vec<u8> {
        self.seen.bytes.lock().unwrap().clone()
    }
}

async fn run_with(
    layer: SigV4VerifyLayer<StaticCredentials>,
    request: Request<Bytes>,
    body: &[u8],
    split: usize,
) -> Outcome {
    let seen = Seen::default();
    let service = layer.layer(inner(seen.clone()));
    let (parts, _) = request.into_parts();
    let response = service
        .oneshot(Request::from_parts(parts, frames(body, split)))
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Outcome {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        seen,
    }
}

async fn run(request: Request<Bytes>) -> Outcome {
    let body = request.body().clone();
    run_with(layer(), request, &body, 7).await
}

#[tokio::test]
async fn a_correctly_signed_put_reaches_the_inner_service_with_its_identity() {
    let payload = b"hello, verified world".repeat(100);
    let outcome = run(signed_put("/bucket/dir/a%20b%2Bc.txt", &payload)).await;
    assert_eq!(outcome.status, StatusCode::OK, "{}", outcome.body);
    assert_eq!(outcome.received(), payload);
    let verified = outcome.seen.verified.lock().unwrap().clone().unwrap();
    assert_eq!(verified.access_key_id, ACCESS_KEY);
    assert_eq!(verified.identity.name(), ACCESS_KEY);
    assert_eq!(verified.region, REGION);
    assert_eq!(verified.auth, AuthKind::Header);
    assert_eq!(verified.content_length, Some(payload.len() as u64));
    assert!(verified.signed_headers.contains("host"));
    assert!(!format!("{verified:?}").contains(SECRET));
}

#[tokio::test]
async fn keys_with_reserved_characters_verify() {
    // Paths as the SDKs send them: every reserved character percent-encoded.
    for path in [
        "/b/a%2Bb",
        "/b//double//slash",
        "/b/./dot/../x",
        "/b/%E1%88%B4",
        "/b/%21%27%28%29%2A",
        "/b/sp%20ace",
        "/",
    ] {
        let outcome = run(signed_put(path, b"x")).await;
        assert_eq!(outcome.status, StatusCode::OK, "{path}: {}", outcome.body);
    }
}

#[tokio::test]
async fn a_wrong_secret_is_signature_does_not_match() {
    let mut request = http::Request::get("http://s3.example.com/bucket/key")
        .header("host", "s3.example.com")
        .body(Bytes::new())
        .unwrap();
    sign_with(
        &mut request,
        SignableBody::Bytes(b""),
        &SignOptions {
            secret: "not-the-secret",
            ..Default::default()
        },
    );
    let outcome = run(request).await;
    outcome.assert_error(403, "SignatureDoesNotMatch");
    assert!(outcome.body.contains("<StringToSign>AWS4-HMAC-SHA256"));
    assert!(!outcome.body.contains(SECRET));
    assert_eq!(outcome.seen.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn head_errors_have_no_body() {
    let mut request = http::Request::head("http://s3.example.com/bucket/key")
        .header("host", "s3.example.com")
        .body(Bytes::new())
        .unwrap();
    sign_with(
        &mut request,
        SignableBody::Bytes(b""),
        &SignOptions {
            secret: "wrong",
            ..Default::default()
        },
    );
    let outcome = run(request).await;
    assert_eq!(outcome.status, StatusCode::FORBIDDEN);
    assert!(outcome.body.is_empty());
    assert!(outcome.headers.contains_key("x-amz-request-id"));
}

#[tokio::test]
async fn head_failures_map_to_s3_codes() {
    let base = || {
        http::Request::get("http://s3.example.com/bucket/key")
            .header("host", "s3.example.com")
            .body(Bytes::new())
            .unwrap()
    };
    let signed = |options: SignOptions<'_>| {
        let mut request = base();
        sign_with(&mut request, SignableBody::Bytes(b""), &options);
        request
    };

    run(base()).await.assert_error(403, "AccessDenied");

    let unknown = run(signed(SignOptions {
        access_key: "AKIDUNKNOWN",
        ..Default::default()
    }))
    .await;
    unknown.assert_error(403, "InvalidAccessKeyId");

    let skewed = run(signed(SignOptions {
        time: fixed_time() + Duration::from_secs(16 * 60),
        ..Default::default()
    }))
    .await;
    skewed.assert_error(403, "RequestTimeTooSkewed");
    let within = run(signed(SignOptions {
        time: fixed_time() - Duration::from_secs(14 * 60),
        ..Default::default()
    }))
    .await;
    assert_eq!(within.status, StatusCode::OK, "{}", within.body);

    run(signed(SignOptions {
        region: "eu-west-1",
        ..Default::default()
    }))
    .await
    .assert_error(400, "AuthorizationHeaderMalformed");

    let mut mismatched_date = signed(SignOptions::default());
    let auth = mismatched_date.headers()["authorization"]
        .to_str()
        .unwrap()
        .replace("/20231114/", "/20231113/");
    mismatched_date
        .headers_mut()
        .insert("authorization", auth.parse().unwrap());
    run(mismatched_date)
        .await
        .assert_error(400, "AuthorizationHeaderMalformed");

    let mut no_date = signed(SignOptions::default());
    no_date.headers_mut().remove("x-amz-date");
    run(no_date).await.assert_error(403, "AccessDenied");

    let mut unsigned_header = signed(SignOptions::default());
    unsigned_header
        .headers_mut()
        .insert("x-amz-meta-sneaky", "1".parse().unwrap());
    let outcome = run(unsigned_header).await;
    outcome.assert_error(403, "AccessDenied");
    assert!(outcome.body.contains("x-amz-meta-sneaky"));

    let mut no_hash = signed(SignOptions::default());
    no_hash.headers_mut().remove("x-amz-content-sha256");
    run(no_hash).await.assert_error(400, "InvalidRequest");

    let mut v2 = base();
    v2.headers_mut().insert(
        "authorization",
        "AWS AKIDEXAMPLE:c2lnbmF0dXJl".parse().unwrap(),
    );
    run(v2).await.assert_error(400, "InvalidRequest");

    let mut malformed = signed(SignOptions::default());
    let auth = malformed.headers()["authorization"]
        .to_str()
        .unwrap()
        .replace("SignedHeaders=", "SignedHeadrs=");
    malformed
        .headers_mut()
        .insert("authorization", auth.parse().unwrap());
    run(malformed)
        .await
        .assert_error(400, "AuthorizationHeaderMalformed");
}

#[tokio::test]
async fn session_tokens_are_checked_when_the_store_has_one() {
    let store = StaticCredentials::new().with_credential(
        ACCESS_KEY,
        Credential::new(ACCESS_KEY, SECRET).session_token("the-token"),
    );
    let verifier = SigV4VerifyLayer::new(store).clock(fixed_time);
    for (token, expected) in [
        (Some("the-token"), 200),
        (Some("other-token"), 400),
        (None, 400),
    ] {
        let mut request = http::Request::get("http://s3.example.com/b/k")
            .header("host", "s3.example.com")
            .body(Bytes::new())
            .unwrap();
        sign_with(
            &mut request,
            SignableBody::Bytes(b""),
            &SignOptions {
                session_token: token,
                ..Default::default()
            },
        );
        let outcome = run_with(verifier.clone(), request, b"", 1).await;
        assert_eq!(
            outcome.status.as_u16(),
            expected,
            "{token:?}: {}",
            outcome.body
        );
        if expected == 400 {
            assert_eq!(outcome.code(), "InvalidToken");
        }
    }
}

fn presigned(method: http::Method, expires: Duration, time: SystemTime) -> Request<Bytes> {
    let mut request = Request::builder()
        .method(method)
        .uri("http://s3.example.com/bucket/photo%20one.jpg")
        .header("host", "s3.example.com")
        .body(Bytes::new())
        .unwrap();
    sign_with(
        &mut request,
        SignableBody::UnsignedPayload,
        &SignOptions {
            presign_for: Some(expires),
            time,
            ..Default::default()
        },
    );
    request
}

#[tokio::test]
async fn presigned_urls_verify_and_expire() {
    let ok = run(presigned(
        http::Method::GET,
        Duration::from_secs(3600),
        fixed_time() - Duration::from_secs(3000),
    ))
    .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    let verified = ok.seen.verified.lock().unwrap().clone().unwrap();
    assert_eq!(verified.auth, AuthKind::Presigned { expires_secs: 3600 });

    let put = presigned(http::Method::PUT, Duration::from_secs(60), fixed_time());
    let outcome = run_with(layer(), put, b"presigned payload", 4).await;
    assert_eq!(outcome.status, StatusCode::OK, "{}", outcome.body);
    assert_eq!(outcome.received(), b"presigned payload");

    let expired = run(presigned(
        http::Method::GET,
        Duration::from_secs(60),
        fixed_time() - Duration::from_secs(61),
    ))
    .await;
    expired.assert_error(403, "AccessDenied");
    assert!(expired.body.contains("Request has expired"));

    let future = run(presigned(
        http::Method::GET,
        Duration::from_secs(60),
        fixed_time() + Duration::from_secs(3600),
    ))
    .await;
    future.assert_error(403, "AccessDenied");
    assert!(future.body.contains("not valid yet"));

    let mut too_long = presigned(http::Method::GET, Duration::from_secs(3600), fixed_time());
    let uri = too_long
        .uri()
        .to_string()
        .replace("X-Amz-Expires=3600", "X-Amz-Expires=604801");
    *too_long.uri_mut() = uri.parse().unwrap();
    run(too_long)
        .await
        .assert_error(400, "AuthorizationQueryParametersError");

    let mut tampered = presigned(http::Method::GET, Duration::from_secs(3600), fixed_time());
    let uri = tampered
        .uri()
        .to_string()
        .replace("photo%20one", "photo%20two");
    *tampered.uri_mut() = uri.parse().unwrap();
    run(tampered)
        .await
        .assert_error(403, "SignatureDoesNotMatch");
}

#[tokio::test]
async fn a_wrong_payload_hash_never_delivers_a_complete_body() {
    let payload = vec![b'a'; 100_000];
    let mut request = signed_put("/bucket/key", &payload);
    let mut tampered = payload.clone();
    tampered[99_999] = b'b';
    *request.body_mut() = Bytes::from(tampered.clone());
    let outcome = run_with(layer(), request, &tampered, 8192).await;
    outcome.assert_error(400, "XAmzContentSHA256Mismatch");
    assert!(
        outcome.received().len() < payload.len(),
        "the inner service must not see a complete body"
    );
    assert!(outcome.seen.body_error.lock().unwrap().is_some());
}

#[tokio::test]
async fn deferred_hashing_passes_hex_payloads_through_untouched() {
    let payload = vec![b'a'; 10_000];
    let mut tampered = payload.clone();
    tampered[0] = b'b';
    let request = signed_put("/bucket/key", &payload);
    let outcome = run_with(
        layer().payload_hashing(PayloadHashing::DeferToUpstream),
        request,
        &tampered,
        1000,
    )
    .await;
    assert_eq!(outcome.status, StatusCode::OK);
    assert_eq!(
        outcome.received(),
        tampered,
        "deferred mode leaves the check to the upstream"
    );
}

#[tokio::test]
async fn checksum_headers_are_verified() {
    let payload = b"checksummed payload".repeat(50);
    for algorithm in ChecksumAlgorithm::ALL {
        for (value, expect_ok) in [
            (algorithm.checksum_base64(&payload), true),
            (algorithm.checksum_base64(b"other"), false),
        ] {
            let mut request = http::Request::put("http://s3.example.com/bucket/key")
                .header("host", "s3.example.com")
                .header(algorithm.header_name(), value)
                .body(Bytes::from(payload.clone()))
                .unwrap();
            sign_with(
                &mut request,
                SignableBody::UnsignedPayload,
                &SignOptions::default(),
            );
            let outcome = run_with(layer(), request, &payload, 100).await;
            if expect_ok {
                assert_eq!(
                    outcome.status,
                    StatusCode::OK,
                    "{algorithm}: {}",
                    outcome.body
                );
                assert_eq!(outcome.received(), payload);
            } else {
                outcome.assert_error(400, "BadDigest");
                assert!(outcome.received().len() < payload.len());
            }
        }
    }
}

#[tokio::test]
async fn signed_chunks_verify_in_any_frame_split_and_arrive_decoded() {
    let payload: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    for trailer in [false, true] {
        for split in [1, 7, 8192, 65_536, 1 << 20] {
            let upload = signed_chunked_upload("/bucket/chunked.bin", &payload, 16_384, trailer);
            let outcome = run_with(layer(), upload.request, &upload.body, split).await;
            assert_eq!(
                outcome.status,
                StatusCode::OK,
                "trailer={trailer} split={split}: {}",
                outcome.body
            );
            assert_eq!(outcome.received(), payload);
            let headers = outcome.seen.headers.lock().unwrap().clone().unwrap();
            assert_eq!(
                headers["content-length"],
                payload.len().to_string().as_str()
            );
            assert!(!headers.contains_key("content-encoding"));
            let trailers = outcome.seen.trailers.lock().unwrap().clone();
            if trailer {
                let trailers = trailers.expect("trailers are delivered as HTTP trailers");
                assert_eq!(
                    trailers["x-amz-checksum-crc32c"],
                    ChecksumAlgorithm::Crc32c.checksum_base64(&payload).as_str()
                );
                assert!(!trailers.contains_key("x-amz-trailer-signature"));
            } else {
                assert!(trailers.is_none());
            }
        }
    }
}

#[tokio::test]
async fn a_forged_chunk_lets_zero_bytes_of_it_through() {
    let payload = vec![b'z'; 5 * 16_384];
    let upload = signed_chunked_upload("/bucket/forged.bin", &payload, 16_384, false);
    let mut body = upload.body.clone();
    // Change one data byte of the third chunk: its signature no longer matches.
    body[upload.data_offsets[2] + 100] = b'!';
    let outcome = run_with(layer(), upload.request, &body, 4096).await;
    outcome.assert_error(403, "SignatureDoesNotMatch");
    // Chunks 1 and 2 are verified; of chunk 2 the last slice is still held
    // back, and of chunk 3 nothing at all may have been released.
    let received = outcome.received();
    assert!(
        received.len() <= 2 * 16_384,
        "received {} bytes",
        received.len()
    );
    assert!(received.iter().all(|&b| b == b'z'));
}

#[tokio::test]
async fn framing_errors_give_the_documented_codes() {
    let payload = vec![b'q'; 3 * 1000];
    let upload = signed_chunked_upload("/bucket/f.bin", &payload, 1000, false);
    let body = upload.body.clone();
    let request = || {
        let mut r = Request::new(Bytes::new());
        *r.method_mut() = upload.request.method().clone();
        *r.uri_mut() = upload.request.uri().clone();
        *r.headers_mut() = upload.request.headers().clone();
        r
    };
    let final_chunk_at = body.len() - (1 + 17 + 64 + 2) - 2;

    // Truncated mid-chunk.
    run_with(
        layer(),
        request(),
        &body[..upload.data_offsets[1] + 10],
        100,
    )
    .await
    .assert_error(400, "IncompleteBody");
    // Missing final chunk.
    run_with(layer(), request(), &body[..final_chunk_at], 100)
        .await
        .assert_error(400, "IncompleteBody");
    // Bytes after the final chunk.
    let mut extra = body.clone();
    extra.extend_from_slice(b"garbage");
    run_with(layer(), request(), &extra, 100)
        .await
        .assert_error(400, "InvalidRequest");
    // A bad hex size.
    let mut bad_hex = body.clone();
    bad_hex[0] = b'x';
    run_with(layer(), request(), &bad_hex, 100)
        .await
        .assert_error(400, "InvalidRequest");
    // A chunk over the cap.
    let outcome = run_with(layer().max_chunk_size(999), request(), &body, 100).await;
    outcome.assert_error(400, "EntityTooLarge");
    assert!(outcome.received().is_empty());
    // Missing x-amz-decoded-content-length: decided before any byte is read.
    let mut no_length = request();
    no_length
        .headers_mut()
        .remove("x-amz-decoded-content-length");
    let outcome = run_with(layer(), no_length, &body, 100).await;
    assert_eq!(outcome.status.as_u16(), 411);
}

#[tokio::test]
async fn a_tampered_trailer_is_rejected() {
    let payload = vec![b't'; 4000];
    let upload = signed_chunked_upload("/bucket/t.bin", &payload, 1000, true);
    let text = String::from_utf8_lossy(&upload.body).into_owned();
    let crc = ChecksumAlgorithm::Crc32c.checksum_base64(&payload);
    let forged = text.replace(&crc, &ChecksumAlgorithm::Crc32c.checksum_base64(b"nope"));
    let outcome = run_with(layer(), upload.request, forged.as_bytes(), 512).await;
    outcome.assert_error(403, "SignatureDoesNotMatch");
    assert!(outcome.received().len() < payload.len());
}

fn unsigned_trailer_upload(payload: &[u8], checksum: &str) -> (Request<Bytes>, Vec<u8>) {
    let mut request = http::Request::put("http://s3.example.com/bucket/u.bin")
        .header("host", "s3.example.com")
        .header("content-encoding", "aws-chunked")
        .header("transfer-encoding", "chunked")
        .header("x-amz-decoded-content-length", payload.len())
        .header("x-amz-trailer", "x-amz-checksum-crc32")
        .header("x-amz-content-sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER")
        .body(Bytes::new())
        .unwrap();
    sign_with(
        &mut request,
        SignableBody::StreamingUnsignedPayloadTrailer,
        &SignOptions::default(),
    );
    let mut body = Vec::new();
    for chunk in payload.chunks(3000) {
        body.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        body.extend_from_slice(chunk);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("0\r\nx-amz-checksum-crc32:{checksum}\r\n\r\n").as_bytes());
    (request, body)
}

#[tokio::test]
async fn unsigned_trailer_uploads_check_the_checksum() {
    let payload: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let good = ChecksumAlgorithm::Crc32.checksum_base64(&payload);
    let (request, body) = unsigned_trailer_upload(&payload, &good);
    let outcome = run_with(layer(), request, &body, 999).await;
    assert_eq!(outcome.status, StatusCode::OK, "{}", outcome.body);
    assert_eq!(outcome.received(), payload);

    let (request, body) =
        unsigned_trailer_upload(&payload, &ChecksumAlgorithm::Crc32.checksum_base64(b"x"));
    let outcome = run_with(layer(), request, &body, 999).await;
    outcome.assert_error(400, "BadDigest");
    assert!(outcome.received().len() < payload.len());
}

#[tokio::test]
async fn put_with_chunked_transfer_and_no_length_is_missing_content_length() {
    let mut request = http::Request::put("http://s3.example.com/bucket/k")
        .header("host", "s3.example.com")
        .header("transfer-encoding", "chunked")
        .body(Bytes::new())
        .unwrap();
    sign_with(
        &mut request,
        SignableBody::UnsignedPayload,
        &SignOptions::default(),
    );
    run_with(layer(), request, b"abc", 1)
        .await
        .assert_error(411, "MissingContentLength");
}

/// Serves the layer on a real hyper HTTP/1.1 connection and checks, byte by
/// byte on the socket, that a rejected `Expect: 100-continue` upload gets its
/// error without a `100 Continue` (so the client never sends the payload).
#[tokio::test]
async fn expect_100_continue_clients_get_the_error_instead_of_continue() {
    use hyper_util::rt::TokioIo;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let counted = counted.clone();
            let service = layer().layer(tower::service_fn(
                move |request: Request<VerifyBody<hyper::body::Incoming>>| {
                    let counted = counted.clone();
                    async move {
                        counted.fetch_add(1, Ordering::SeqCst);
                        let _ = request.into_body().collect().await;
                        Ok::<_, Infallible>(Response::new(http_body_util::Full::new(Bytes::from(
                            "stored",
                        ))))
                    }
                },
            ));
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(
                        TokioIo::new(stream),
                        hyper_util::service::TowerToHyperService::new(service),
                    )
                    .await;
            });
        }
    });

    for (secret, expected_status) in [("wrong-secret", "403"), (SECRET, "100")] {
        let payload = b"payload that must not be sent before the go-ahead";
        let mut request = http::Request::put(format!("http://{address}/bucket/key"))
            .header("host", address.to_string())
            .header("content-length", payload.len())
            .body(Bytes::new())
            .unwrap();
        sign_with(
            &mut request,
            SignableBody::Bytes(payload),
            &SignOptions {
                secret,
                ..Default::default()
            },
        );
        let mut head = String::from("PUT /bucket/key HTTP/1.1\r\n");
        for (name, value) in request.headers() {
            head.push_str(&format!("{name}: {}\r\n", value.to_str().unwrap()));
        }
        head.push_str("expect: 100-continue\r\nconnection: close\r\n\r\n");
        let mut socket = tokio::net::TcpStream::connect(address).await.unwrap();
        socket.write_all(head.as_bytes()).await.unwrap();
        let mut first = vec![0u8; 12];
        socket.read_exact(&mut first).await.unwrap();
        let status_line = String::from_utf8_lossy(&first).into_owned();
        assert_eq!(&status_line[9..12], expected_status, "{status_line}");
        if expected_status == "100" {
            socket.write_all(payload).await.unwrap();
            let mut rest = Vec::new();
            socket.read_to_end(&mut rest).await.unwrap();
            assert!(String::from_utf8_lossy(&rest).contains("200 OK"));
        } else {
            let mut rest = Vec::new();
            socket.read_to_end(&mut rest).await.unwrap();
            assert!(String::from_utf8_lossy(&rest).contains("<Code>SignatureDoesNotMatch</Code>"));
        }
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "only the valid upload reaches the inner service"
    );
}

#[tokio::test]
async fn an_oversized_trailer_section_is_refused() {
    let payload = vec![b'x'; 100];
    let checksum = ChecksumAlgorithm::Crc32.checksum_base64(&payload);
    let (request, mut body) = unsigned_trailer_upload(&payload, &checksum);
    // A flood of extra trailer lines before the final CRLF.
    body.truncate(body.len() - 2);
    for i in 0..200 {
        body.extend_from_slice(format!("x-pad-{i}:{}\r\n", "p".repeat(100)).as_bytes());
    }
    body.extend_from_slice(b"\r\n");
    let outcome = run_with(layer().max_trailer_size(4096), request, &body, 512).await;
    outcome.assert_error(400, "InvalidRequest");
    assert!(outcome.body.contains("trailer"), "{}", outcome.body);
    assert!(
        outcome.received().len() < payload.len(),
        "no complete payload"
    );
}

/// `X-Amz-Expires` at its bounds, each URL signed by aws-sigv4: 0 is never
/// valid (AWS and s3s answer "Request has expired"), 1 and a week are, a
/// week and a second is malformed.
#[tokio::test]
async fn presigned_expiry_bounds() {
    let zero = run(presigned(http::Method::GET, Duration::ZERO, fixed_time())).await;
    zero.assert_error(403, "AccessDenied");
    assert!(zero.body.contains("Request has expired"), "{}", zero.body);
    for secs in [1, 604_800] {
        let ok = run(presigned(
            http::Method::GET,
            Duration::from_secs(secs),
            fixed_time(),
        ))
        .await;
        assert_eq!(
            ok.status,
            StatusCode::OK,
            "X-Amz-Expires={secs}: {}",
            ok.body
        );
    }
    run(presigned(
        http::Method::GET,
        Duration::from_secs(604_801),
        fixed_time(),
    ))
    .await
    .assert_error(400, "AuthorizationQueryParametersError");
}

/// SigV2, in a header or presigned, gets AWS's answer for a SigV4-only
/// bucket (400 InvalidRequest naming AWS4-HMAC-SHA256), not "unauthenticated".
#[tokio::test]
async fn sigv2_is_refused_as_an_unsupported_mechanism() {
    let header = Request::get("http://s3.example.com/bucket/key")
        .header("host", "s3.example.com")
        .header("date", "Tue, 01 Dec 2026 20:00:00 GMT")
        .header(
            "authorization",
            "AWS AKIDEXAMPLE:frJIUN8DYpKDtOLCwo//yllqDzg=",
        )
        .body(Bytes::new())
        .unwrap();
    let presigned = Request::get(
        "http://s3.example.com/bucket/key?AWSAccessKeyId=AKIDEXAMPLE&Signature=frJIUN8DYpKDtOLCwo%2F%2FyllqDzg%3D&Expires=1796169600",
    )
    .header("host", "s3.example.com")
    .body(Bytes::new())
    .unwrap();
    for request in [header, presigned] {
        let outcome = run(request).await;
        outcome.assert_error(400, "InvalidRequest");
        assert!(
            outcome.body.contains("Please use AWS4-HMAC-SHA256."),
            "{}",
            outcome.body
        );
    }
}
