//! UpstreamClient against real loopback servers: streamed answers, and S3
//! errors (never a hang) when the upstream is away, silent, or untrusted.
#![cfg(feature = "upstream")]

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use s3tap::s3error::RequestId;
use s3tap::upstream::UpstreamClient;
use support::{random_bytes, TestServer};
use tower::ServiceExt;

fn get(url: &str) -> Request<Full<Bytes>> {
    Request::get(url).body(Full::new(Bytes::new())).unwrap()
}

/// Answers GET with `payload`, and PUT with the SHA-256-free echo of the
/// request body, so both directions are checked byte for byte.
async fn payload_server(payload: Bytes) -> TestServer {
    TestServer::spawn(tower::service_fn(move |req: Request<Incoming>| {
        let payload = payload.clone();
        async move {
            let response = if req.method() == http::Method::PUT {
                let body = req.into_body().collect().await?.to_bytes();
                Response::new(Full::new(body))
            } else {
                Response::builder()
                    .header("etag", "\"abc\"")
                    .header("x-amz-request-id", "UPSTREAMID")
                    .header("connection", "x-private-hop")
                    .header("x-private-hop", "1")
                    .body(Full::new(payload))
                    .unwrap()
            };
            Ok::<_, hyper::Error>(response)
        }
    }))
    .await
}

#[tokio::test]
async fn streams_large_bodies_back_unchanged() {
    let payload = Bytes::from(random_bytes(8 * 1024 * 1024 + 17, 7));
    let server = payload_server(payload.clone()).await;
    let client = UpstreamClient::new();

    let response = client
        .clone()
        .oneshot(get(&format!("{}/bucket/key", server.url())))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["etag"], "\"abc\"");
    assert_eq!(response.headers()["x-amz-request-id"], "UPSTREAMID");
    assert!(!response.headers().contains_key("x-private-hop"));
    assert!(!response.headers().contains_key("connection"));
    assert!(!response.into_body().is_gateway_error());

    let response = client
        .clone()
        .oneshot(get(&format!("{}/bucket/key", server.url())))
        .await
        .unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(
        body == payload,
        "GET body differs from what the upstream sent"
    );

    let upload = Bytes::from(random_bytes(3 * 1024 * 1024 + 5, 8));
    let request = Request::put(format!("{}/bucket/up", server.url()))
        .body(Full::new(upload.clone()))
        .unwrap();
    let response = client.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let echoed = response.into_body().collect().await.unwrap().to_bytes();
    assert!(echoed == upload, "PUT body arrived changed");
}

async fn body_text(response: Response<s3tap::upstream::UpstreamBody>) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn nothing_listening_is_502_bad_gateway() {
    // Bind then drop: the port was free a moment ago and nothing listens now.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let mut request = get(&format!(
        "http://127.0.0.1:{port}/bucket/key?X-Amz-Signature=deadbeef"
    ));
    let id = RequestId::generate();
    request.extensions_mut().insert(id.clone());
    let started = Instant::now();
    let response = UpstreamClient::new().oneshot(request).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(response.headers()["content-type"], "application/xml");
    assert_eq!(response.headers()["x-amz-request-id"], id.as_str());
    assert!(response.body().is_gateway_error());
    let xml = body_text(response).await;
    assert!(xml.contains("<Code>BadGateway</Code>"), "{xml}");
    assert!(
        xml.contains(&format!(
            "The upstream 127.0.0.1:{port} could not be reached"
        )),
        "{xml}"
    );
    assert!(
        xml.contains(&format!("<RequestId>{id}</RequestId>")),
        "{xml}"
    );
    assert!(
        !xml.contains("deadbeef"),
        "the query leaked into the error: {xml}"
    );
}

#[tokio::test]
async fn silent_upstream_is_504_within_the_response_timeout() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Accepts, reads, never answers; holds the sockets so none is closed.
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });

    let client = UpstreamClient::builder()
        .response_timeout(Duration::from_millis(700))
        .build()
        .unwrap();
    let started = Instant::now();
    let response = client
        .oneshot(get(&format!("http://{addr}/bucket/key")))
        .await
        .unwrap();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(700) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    let xml = body_text(response).await;
    assert!(xml.contains("<Code>GatewayTimeout</Code>"), "{xml}");
    assert!(
        xml.contains(&format!("The upstream {addr} did not answer")),
        "{xml}"
    );
    silent.abort();
}

#[tokio::test]
async fn head_errors_have_no_body() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let request = Request::head(format!("http://127.0.0.1:{port}/b/k"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = UpstreamClient::new().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    assert!(body_text(response).await.is_empty());
}

#[tokio::test]
async fn tls_upstream_with_a_private_ca() {
    let payload = Bytes::from(random_bytes(1024 * 1024, 9));
    let server = TestServer::spawn_tls(tower::service_fn(move |_req: Request<Incoming>| {
        let payload = payload.clone();
        async move { Ok::<_, hyper::Error>(Response::new(Full::new(payload))) }
    }))
    .await;
    let url = format!("{}/bucket/key", server.url());

    // Without the CA the certificate is refused: the upstream is unreachable.
    let response = UpstreamClient::new().oneshot(get(&url)).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let xml = body_text(response).await;
    assert!(xml.contains("could not be reached"), "{xml}");

    let ca = std::fs::read(server.ca_pem().unwrap()).unwrap();
    let client = UpstreamClient::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let response = client.clone().oneshot(get(&url)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // The test server offers h2 by ALPN, so the pool speaks HTTP/2.
    assert_eq!(response.version(), http::Version::HTTP_2);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body.len(), 1024 * 1024);

    let h1_only = UpstreamClient::builder()
        .add_root_certificate(std::fs::read(server.ca_pem().unwrap()).unwrap())
        .http2(false)
        .build()
        .unwrap();
    let response = h1_only.oneshot(get(&url)).await.unwrap();
    assert_eq!(response.version(), http::Version::HTTP_11);
}

#[tokio::test]
async fn relative_uris_are_an_internal_error() {
    let response = UpstreamClient::new()
        .oneshot(get("/bucket/key"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
}

/// A listener whose accept queue is full: the kernel drops further SYNs, so
/// a connect neither succeeds nor fails (on loopback, as a black-holed
/// address would elsewhere). The connect timeout must end it.
#[tokio::test]
async fn an_upstream_that_never_accepts_is_504_within_the_connect_timeout() {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    // Never accepted: fill the queue so the next SYN is dropped.
    let mut fillers = Vec::new();
    for _ in 0..8 {
        match tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            Ok(Ok(stream)) => fillers.push(stream),
            _ => break,
        }
    }
    let probe = tokio::time::timeout(
        Duration::from_millis(300),
        tokio::net::TcpStream::connect(addr),
    )
    .await;
    assert!(
        probe.is_err(),
        "the accept queue should be full, so a further connect hangs"
    );

    let client = UpstreamClient::builder()
        .connect_timeout(Duration::from_millis(800))
        .response_timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let started = Instant::now();
    let response = client
        .oneshot(get(&format!("http://{addr}/bucket/key")))
        .await
        .unwrap();
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(5), "answered after {waited:?}");
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    let xml = body_text(response).await;
    assert!(xml.contains("<Code>GatewayTimeout</Code>"), "{xml}");
    drop(listener);
    drop(fillers);
}
