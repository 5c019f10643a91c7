//! ResignLayer: requests verified for the client are re-signed for an
//! upstream with other credentials, in the payload mode the client chose.
//!
//! Two upstreams check the result: a second `SigV4VerifyLayer` holding only
//! the upstream key (which also proves the chunk boundaries and lengths are
//! the client's), and s3s-fs, an independent S3 server that verifies SigV4
//! itself and stores objects on disk.

mod signing;
mod support;

use std::convert::Infallible;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sigv4::http_request::SignableBody;
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use s3tap::body::BoxError;
use s3tap::credentials::{Credential, StaticCredentials, UpstreamCredentials};
use s3tap::resign::ResignLayer;
use s3tap::resign::Upstream as UpstreamEndpoint;
use s3tap::sigv4::{ChecksumAlgorithm, PayloadMode};
use s3tap::verified::Verified;
use s3tap::verify::SigV4VerifyLayer;
use signing::*;
use tower::util::BoxCloneService;
use tower::{ServiceBuilder, ServiceExt};

const UPSTREAM_KEY: &str = "UPSTREAMKEY";
const UPSTREAM_SECRET: &str = "upstream/secret+value";

type Captured = Arc<
    Mutex<
        Vec<(
            HeaderMap,
            http::Uri,
            Vec<u8>,
            Option<HeaderMap>,
            Option<Verified>,
        )>,
    >,
>;

/// What the upstream receives on the wire from the re-signing layer.
type WireBody = s3tap::resign::ResignBody<s3tap::verify::VerifyBody<Full<Bytes>>>;
type Upstream = BoxCloneService<Request<WireBody>, Response<Full<Bytes>>, Infallible>;
type ProxyResponse = Response<s3tap::body::ResponseBody<s3tap::body::ResponseBody<Full<Bytes>>>>;

/// An "upstream" that verifies with the upstream key only and records what
/// it received.
fn verifying_upstream(captured: Captured) -> Upstream {
    let upstream_store = StaticCredentials::new().with_key(UPSTREAM_KEY, UPSTREAM_SECRET);
    let service = ServiceBuilder::new()
        .layer(
            SigV4VerifyLayer::new(upstream_store)
                .region("us-west-004")
                .clock(fixed_time),
        )
        .service_fn(
            move |request: Request<s3tap::verify::VerifyBody<WireBody>>| {
                let captured = captured.clone();
                async move {
                    let headers = request.headers().clone();
                    let uri = request.uri().clone();
                    let verified = request.extensions().get::<Verified>().cloned();
                    match request.into_body().collect().await {
                        Ok(collected) => {
                            let trailers = collected.trailers().cloned();
                            let bytes = collected.to_bytes().to_vec();
                            captured
                                .lock()
                                .unwrap()
                                .push((headers, uri, bytes, trailers, verified));
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                                b"stored upstream",
                            ))))
                        }
                        Err(_) => Ok(Response::builder()
                            .status(500)
                            .body(Full::new(Bytes::new()))
                            .unwrap()),
                    }
                }
            },
        )
        .and_then(
            |response: Response<s3tap::body::ResponseBody<Full<Bytes>>>| async move {
                let (parts, body) = response.into_parts();
                let bytes = body
                    .collect()
                    .await
                    .map(|c| c.to_bytes())
                    .unwrap_or_default();
                Ok(Response::from_parts(parts, Full::new(bytes)))
            },
        );
    BoxCloneService::new(service)
}

fn proxy_over(
    captured: Captured,
    resign: ResignLayer,
) -> impl tower::Service<
    Request<Full<Bytes>>,
    Response = Response<s3tap::body::ResponseBody<s3tap::body::ResponseBody<Full<Bytes>>>>,
    Error = Infallible,
> + Clone {
    let client_store = StaticCredentials::new()
        .with_key(ACCESS_KEY, SECRET)
        .with_credential(
            "MAPPEDCLIENT",
            Credential::new("MAPPEDCLIENT", "mapped-client-secret")
                .upstream(UpstreamCredentials::new(UPSTREAM_KEY, UPSTREAM_SECRET)),
        );
    ServiceBuilder::new()
        .layer(
            SigV4VerifyLayer::new(client_store)
                .clock(fixed_time)
                .publish_chunk_digests(true),
        )
        .layer(resign.clock(fixed_time))
        .service(verifying_upstream(captured))
}

fn resign_to_verifier() -> ResignLayer {
    ResignLayer::new(UpstreamEndpoint::parse("https://s3.us-west-004.backblazeb2.com").unwrap())
        .sign_with(UpstreamCredentials::new(UPSTREAM_KEY, UPSTREAM_SECRET))
}

async fn send(
    service: impl tower::Service<Request<Full<Bytes>>, Response = ProxyResponse, Error = Infallible>,
    request: Request<Bytes>,
    body: Vec<u8>,
) -> (StatusCode, String) {
    let (parts, _) = request.into_parts();
    let response = service
        .oneshot(Request::from_parts(parts, Full::new(Bytes::from(body))))
        .await
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn hex_payloads_are_resigned_for_the_upstream_host_and_key() {
    let captured = Captured::default();
    let payload = b"hex signed payload".repeat(1000);
    let mut request = signed_put(
        "/bucket/dir/key%20with%20space.txt?x-id=PutObject",
        &payload,
    );
    request
        .headers_mut()
        .insert("user-agent", "test-client/1.0".parse().unwrap());
    let (status, body) = send(
        proxy_over(captured.clone(), resign_to_verifier()),
        request,
        payload.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let seen = captured.lock().unwrap();
    let (headers, uri, received, _, verified) = &seen[0];
    assert_eq!(received, &payload);
    assert_eq!(
        uri.to_string(),
        "https://s3.us-west-004.backblazeb2.com/bucket/dir/key%20with%20space.txt?x-id=PutObject"
    );
    assert_eq!(headers["host"], "s3.us-west-004.backblazeb2.com");
    let verified = verified.as_ref().unwrap();
    assert_eq!(verified.access_key_id, UPSTREAM_KEY);
    assert!(
        matches!(verified.payload, PayloadMode::Hex(_)),
        "hex mode kept"
    );
    assert!(!verified.signed_headers.contains("user-agent"));
    assert_eq!(
        headers["user-agent"], "test-client/1.0",
        "unsigned headers travel unsigned"
    );
    assert!(!headers["authorization"]
        .to_str()
        .unwrap()
        .contains(ACCESS_KEY));
}

#[tokio::test]
async fn signed_chunks_are_reframed_with_the_same_length_and_new_signatures() {
    let payload: Vec<u8> = (0..150_000u32).map(|i| (i % 241) as u8).collect();
    for trailer in [false, true] {
        let captured = Captured::default();
        let upload = signed_chunked_upload("/bucket/chunked.bin", &payload, 65_536, trailer);
        let client_length = upload.body.len();
        let (status, body) = send(
            proxy_over(captured.clone(), resign_to_verifier()),
            upload.request,
            upload.body,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "trailer={trailer}: {body}");
        let seen = captured.lock().unwrap();
        let (_, _, received, trailers, verified) = &seen[0];
        assert_eq!(
            received, &payload,
            "the upstream verifier decoded the client's bytes"
        );
        let verified = verified.as_ref().unwrap();
        let expected_mode = if trailer {
            PayloadMode::StreamingSignedTrailer
        } else {
            PayloadMode::StreamingSigned
        };
        assert_eq!(verified.payload, expected_mode);
        assert_eq!(
            verified.content_length,
            Some(client_length as u64),
            "same Content-Length as the client"
        );
        if trailer {
            let trailers = trailers.as_ref().unwrap();
            assert_eq!(
                trailers["x-amz-checksum-crc32c"],
                ChecksumAlgorithm::Crc32c.checksum_base64(&payload).as_str()
            );
        }
    }
}

#[tokio::test]
async fn unsigned_trailer_uploads_keep_their_framing() {
    let captured = Captured::default();
    let payload: Vec<u8> = (0..40_000u32).map(|i| (i * 13 % 256) as u8).collect();
    let checksum = ChecksumAlgorithm::Crc32.checksum_base64(&payload);
    let mut request = http::Request::put("http://s3.example.com/bucket/u.bin")
        .header("host", "s3.example.com")
        .header("content-encoding", "aws-chunked")
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
    for chunk in payload.chunks(8192) {
        body.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        body.extend_from_slice(chunk);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("0\r\nx-amz-checksum-crc32:{checksum}\r\n\r\n").as_bytes());
    request
        .headers_mut()
        .insert("content-length", body.len().into());
    let client_length = body.len() as u64;
    let (status, text) = send(
        proxy_over(captured.clone(), resign_to_verifier()),
        request,
        body,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let seen = captured.lock().unwrap();
    let (_, _, received, trailers, verified) = &seen[0];
    assert_eq!(received, &payload);
    assert_eq!(
        verified.as_ref().unwrap().payload,
        PayloadMode::StreamingUnsignedTrailer
    );
    assert_eq!(
        verified.as_ref().unwrap().content_length,
        Some(client_length)
    );
    assert_eq!(
        trailers.as_ref().unwrap()["x-amz-checksum-crc32"],
        checksum.as_str()
    );
}

#[tokio::test]
async fn presigned_requests_are_forwarded_with_header_auth() {
    let captured = Captured::default();
    let mut request = http::Request::get(
        "http://s3.example.com/bucket/photo.jpg?response-content-type=image%2Fjpeg",
    )
    .header("host", "s3.example.com")
    .body(Bytes::new())
    .unwrap();
    sign_with(
        &mut request,
        SignableBody::UnsignedPayload,
        &SignOptions {
            presign_for: Some(Duration::from_secs(600)),
            ..Default::default()
        },
    );
    let (status, body) = send(
        proxy_over(captured.clone(), resign_to_verifier()),
        request,
        Vec::new(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let seen = captured.lock().unwrap();
    let (headers, uri, _, _, verified) = &seen[0];
    assert_eq!(uri.query(), Some("response-content-type=image%2Fjpeg"));
    assert!(headers.contains_key("authorization"));
    assert_eq!(
        verified.as_ref().unwrap().auth,
        s3tap::verified::AuthKind::Header
    );
}

#[tokio::test]
async fn virtual_hosted_clients_and_upstreams_are_translated() {
    let captured = Captured::default();
    let resign = resign_to_verifier()
        .client_virtual_host_suffix("proxy.example")
        .virtual_hosted_style();
    let mut request = http::Request::put("http://photos.proxy.example/2024/a.jpg")
        .header("host", "photos.proxy.example")
        .header("content-length", 3)
        .body(Bytes::from_static(b"abc"))
        .unwrap();
    sign_with(
        &mut request,
        SignableBody::Bytes(b"abc"),
        &SignOptions::default(),
    );
    let (status, body) = send(
        proxy_over(captured.clone(), resign),
        request,
        b"abc".to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let seen = captured.lock().unwrap();
    assert_eq!(
        seen[0].1.to_string(),
        "https://photos.s3.us-west-004.backblazeb2.com/2024/a.jpg"
    );
}

#[tokio::test]
async fn mapped_keys_never_reach_the_upstream_and_unmapped_clients_are_refused() {
    let captured = Captured::default();
    let resign = ResignLayer::new(
        UpstreamEndpoint::parse("https://s3.us-west-004.backblazeb2.com").unwrap(),
    )
    .sign_with_mapped_credentials();
    let mut request = http::Request::get("http://s3.example.com/bucket/k")
        .header("host", "s3.example.com")
        .body(Bytes::new())
        .unwrap();
    sign_with(
        &mut request,
        SignableBody::Bytes(b""),
        &SignOptions {
            access_key: "MAPPEDCLIENT",
            secret: "mapped-client-secret",
            ..Default::default()
        },
    );
    let (status, body) = send(
        proxy_over(captured.clone(), resign.clone()),
        request,
        Vec::new(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    {
        let seen = captured.lock().unwrap();
        let authorization = seen[0].0["authorization"].to_str().unwrap().to_owned();
        assert!(authorization.contains(UPSTREAM_KEY) && !authorization.contains("MAPPEDCLIENT"));
    }
    let mut unmapped = http::Request::get("http://s3.example.com/bucket/k")
        .header("host", "s3.example.com")
        .body(Bytes::new())
        .unwrap();
    sign_with(
        &mut unmapped,
        SignableBody::Bytes(b""),
        &SignOptions::default(),
    );
    let (status, body) = send(proxy_over(captured.clone(), resign), unmapped, Vec::new()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("<Code>AccessDenied</Code>"));
    assert_eq!(
        captured.lock().unwrap().len(),
        1,
        "the unmapped request never left"
    );
}

// ---------------------------------------------------------------------------
// Against s3s-fs, a real S3 server with its own SigV4 check.

struct S3sFs {
    child: std::process::Child,
    endpoint: String,
    _dir: tempfile::TempDir,
}

impl Drop for S3sFs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_s3s_fs() -> Option<S3sFs> {
    let peers = support::Peers::get()?;
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = std::process::Command::new(peers.s3s_fs())
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--access-key",
            UPSTREAM_KEY,
            "--secret-key",
            UPSTREAM_SECRET,
        ])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("s3s-fs starts");
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Some(S3sFs {
                child,
                endpoint: format!("http://127.0.0.1:{port}"),
                _dir: dir,
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("s3s-fs did not start listening on {port}");
}

type ProxyService = BoxCloneService<Request<Full<Bytes>>, Response<Bytes>, BoxError>;

/// The proxy stack in process, in front of `endpoint`, with the real clock.
fn proxy_to(endpoint: &str) -> ProxyService {
    let client = Client::builder(TokioExecutor::new()).build_http();
    let service = ServiceBuilder::new()
        .layer(
            SigV4VerifyLayer::new(StaticCredentials::new().with_key(ACCESS_KEY, SECRET))
                .publish_chunk_digests(true),
        )
        .layer(
            ResignLayer::new(UpstreamEndpoint::parse(endpoint).unwrap())
                .sign_with(UpstreamCredentials::new(UPSTREAM_KEY, UPSTREAM_SECRET)),
        )
        .service(client.map_err(BoxError::from));
    let service = service.and_then(
        |response: Response<
            s3tap::body::ResponseBody<s3tap::body::ResponseBody<hyper::body::Incoming>>,
        >| async move {
            let (parts, body) = response.into_parts();
            let bytes = body.collect().await.map_err(BoxError::from)?.to_bytes();
            Ok(Response::from_parts(parts, bytes))
        },
    );
    BoxCloneService::new(service)
}

fn now_options() -> SignOptions<'static> {
    SignOptions {
        time: std::time::SystemTime::now(),
        ..Default::default()
    }
}

async fn call(proxy: &ProxyService, request: Request<Bytes>) -> Response<Bytes> {
    let (parts, body) = request.into_parts();
    proxy
        .clone()
        .oneshot(Request::from_parts(parts, Full::new(body)))
        .await
        .unwrap()
}

fn signed_now(method: http::Method, endpoint_path: &str, payload: &[u8]) -> Request<Bytes> {
    let mut request = Request::builder()
        .method(method)
        .uri(format!("http://proxy.local{endpoint_path}"))
        .header("host", "proxy.local")
        .header("content-length", payload.len())
        .body(Bytes::copy_from_slice(payload))
        .unwrap();
    sign_with(&mut request, SignableBody::Bytes(payload), &now_options());
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3s_fs_stores_what_clients_send_through_the_proxy_in_every_payload_mode() {
    let Some(upstream) = start_s3s_fs().await else {
        return;
    };
    let proxy = proxy_to(&upstream.endpoint);
    let created = call(&proxy, signed_now(http::Method::PUT, "/tapbucket", b"")).await;
    assert_eq!(created.status(), StatusCode::OK, "{:?}", created.body());

    let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    // Hex payload hash.
    let put = call(
        &proxy,
        signed_now(http::Method::PUT, "/tapbucket/hex%20key.bin", &payload),
    )
    .await;
    assert_eq!(put.status(), StatusCode::OK, "{:?}", put.body());
    // Signed aws-chunked, with and without trailer, re-signed chunk by chunk.
    for (key, trailer) in [("chunked.bin", false), ("chunked-trailer.bin", true)] {
        // Signed with the real clock: s3s-fs checks the skew too.
        let upload = signed_chunked_upload_at(
            &format!("/tapbucket/{key}"),
            &payload,
            65_536,
            trailer,
            std::time::SystemTime::now(),
        );
        let put = call(&proxy, upload.request_with_body()).await;
        assert_eq!(put.status(), StatusCode::OK, "{key}: {:?}", put.body());
    }
    for key in ["hex%20key.bin", "chunked.bin", "chunked-trailer.bin"] {
        let got = call(
            &proxy,
            signed_now(http::Method::GET, &format!("/tapbucket/{key}"), b""),
        )
        .await;
        assert_eq!(got.status(), StatusCode::OK, "{key}");
        assert!(
            got.body()[..] == payload[..],
            "{key}: stored bytes differ from the source"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3s_fs_never_stores_a_forged_upload() {
    let Some(upstream) = start_s3s_fs().await else {
        return;
    };
    let proxy = proxy_to(&upstream.endpoint);
    assert_eq!(
        call(&proxy, signed_now(http::Method::PUT, "/tapbucket", b""))
            .await
            .status(),
        StatusCode::OK
    );
    let payload = vec![b'f'; 200_000];

    let mut forged = signed_chunked_upload_at(
        "/tapbucket/forged.bin",
        &payload,
        65_536,
        false,
        std::time::SystemTime::now(),
    );
    let offset = forged.data_offsets[2] + 10;
    forged.body[offset] ^= 1;
    let response = call(&proxy, forged.request_with_body()).await;
    assert_eq!(
        response.status(),
        StatusCode::FORBIDDEN,
        "{:?}",
        response.body()
    );

    let mut wrong_hash = signed_now(http::Method::PUT, "/tapbucket/wrong-hash.bin", &payload);
    let mut tampered = payload.clone();
    tampered[150_000] = b'X';
    *wrong_hash.body_mut() = Bytes::from(tampered);
    let response = call(&proxy, wrong_hash).await;
    assert_eq!(
        response.status(),
        StatusCode::BAD_REQUEST,
        "{:?}",
        response.body()
    );
    assert!(String::from_utf8_lossy(response.body()).contains("XAmzContentSHA256Mismatch"));

    for key in ["forged.bin", "wrong-hash.bin"] {
        let got = call(
            &proxy,
            signed_now(http::Method::GET, &format!("/tapbucket/{key}"), b""),
        )
        .await;
        assert_eq!(
            got.status(),
            StatusCode::NOT_FOUND,
            "{key} must not exist upstream: {:?}",
            got.body()
        );
    }
}
