//! Hostile clients against the proxy's limits and timeouts, and the
//! Prometheus metrics endpoint. Each refusal is an S3 error or a closed
//! connection, and comes in bounded time: never a hang.
#![cfg(feature = "proxy")]

mod signing;

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use aws_sigv4::http_request::SignableBody;
use bytes::Bytes;
use clap::Parser;
use s3tap::proxy::{Args, Config, Proxy};
use signing::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LIMITS: &str = r#"
[limits]
max_header_bytes = 16384
max_headers = 50
max_uri_bytes = 2048
header_read_timeout_secs = 2
body_idle_timeout_secs = 2
max_connections = 4
"#;

struct Running {
    s3: SocketAddr,
    admin: SocketAddr,
    _dir: tempfile::TempDir,
}

async fn start() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("s3tap.toml");
    std::fs::write(&config_path, LIMITS).unwrap();
    let data_dir = dir.path().join("data");
    let args = Args::parse_from([
        "s3tap",
        "--config",
        config_path.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--data-dir",
        data_dir.to_str().unwrap(),
    ]);
    // The embedded store takes its client key from the environment.
    let config = Config::load(&args, |name| match name {
        "AWS_ACCESS_KEY_ID" => Some(ACCESS_KEY.to_owned()),
        "AWS_SECRET_ACCESS_KEY" => Some(SECRET.to_owned()),
        _ => None,
    })
    .unwrap();
    let proxy = Proxy::bind(config).await.unwrap();
    let running = Running {
        s3: proxy.local_addr(),
        admin: proxy.admin_addr(),
        _dir: dir,
    };
    tokio::spawn(proxy.serve(std::future::pending()));
    running
}

/// Reads until the server closes or `limit` passes; returns what was read
/// and whether the connection was closed.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, bool) {
    let mut text = Vec::new();
    let deadline = Instant::now() + limit;
    let mut buffer = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&text).into_owned(), true),
            Ok(Ok(n)) => text.extend_from_slice(&buffer[..n]),
            Err(_) => return (String::from_utf8_lossy(&text).into_owned(), false),
        }
    }
}

fn signed_head(method: http::Method, path: &str, address: SocketAddr, payload: &[u8]) -> String {
    let mut request = http::Request::builder()
        .method(method.clone())
        .uri(format!("http://{address}{path}"))
        .header("host", address.to_string())
        .header("content-length", payload.len())
        .body(Bytes::copy_from_slice(payload))
        .unwrap();
    sign_with(
        &mut request,
        SignableBody::Bytes(payload),
        &SignOptions {
            time: SystemTime::now(),
            ..Default::default()
        },
    );
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    for (name, value) in request.headers() {
        head.push_str(&format!("{name}: {}\r\n", value.to_str().unwrap()));
    }
    head.push_str("\r\n");
    head
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_sending_its_head_a_byte_a_second_is_cut_off() {
    let proxy = start().await;
    let mut stream = TcpStream::connect(proxy.s3).await.unwrap();
    let started = Instant::now();
    let head = b"GET /bucket/key HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    let mut closed = false;
    for byte in head.iter().chain(b"aaaaaaaaaaaaaaaaaaaa".iter()) {
        if stream.write_all(&[*byte]).await.is_err() {
            closed = true;
            break;
        }
        let (_, gone) = read_until_closed(&mut stream, Duration::from_millis(300)).await;
        if gone {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    assert!(
        closed,
        "the connection must be closed by the header read timeout"
    );
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(8),
        "closed after {elapsed:?}, configured 2 s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_heads_and_too_many_headers_are_refused() {
    let proxy = start().await;
    for head in [
        format!(
            "GET /bucket/key HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
            "a".repeat(40_000)
        ),
        format!(
            "GET /bucket/key HTTP/1.1\r\nHost: x\r\n{}\r\n",
            (0..80)
                .map(|i| format!("x-h{i}: v\r\n"))
                .collect::<String>()
        ),
    ] {
        let mut stream = TcpStream::connect(proxy.s3).await.unwrap();
        let _ = stream.write_all(head.as_bytes()).await;
        let (answer, closed) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
        assert!(closed, "connection left open");
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
            "expected 431 or a closed connection, got {answer:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overlong_request_target_gets_an_s3_error() {
    let proxy = start().await;
    let path = format!("/bucket/{}", "k".repeat(3000));
    let mut stream = TcpStream::connect(proxy.s3).await.unwrap();
    stream
        .write_all(signed_head(http::Method::GET, &path, proxy.s3, b"").as_bytes())
        .await
        .unwrap();
    let mut buffer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&buffer[..n]);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("<Code>InvalidURI</Code>"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stalls_is_ended_with_an_error_not_a_hang() {
    let proxy = start().await;
    let mut stream = TcpStream::connect(proxy.s3).await.unwrap();
    let payload = vec![b'p'; 1000];
    stream
        .write_all(signed_head(http::Method::PUT, "/stallbucket", proxy.s3, b"").as_bytes())
        .await
        .unwrap();
    let _ = read_until_closed(&mut stream, Duration::from_millis(500)).await;
    let mut stream = TcpStream::connect(proxy.s3).await.unwrap();
    stream
        .write_all(
            signed_head(http::Method::PUT, "/stallbucket/key", proxy.s3, &payload).as_bytes(),
        )
        .await
        .unwrap();
    stream.write_all(&payload[..10]).await.unwrap();
    let started = Instant::now();
    let (answer, _) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(8),
        "answered after {elapsed:?}, configured 2 s"
    );
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 400"),
        "a stalled upload gets an S3 error or a closed connection: {answer:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_wait_for_a_free_slot() {
    let proxy = start().await;
    // Four idle connections take every slot (the header timeout would free
    // them after 2 s, so the check below happens well inside that).
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut stream = TcpStream::connect(proxy.s3).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHo")
            .await
            .unwrap();
        held.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut waiting = TcpStream::connect(proxy.s3).await.unwrap();
    waiting
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buffer = [0u8; 64];
    let early = tokio::time::timeout(Duration::from_millis(500), waiting.read(&mut buffer)).await;
    assert!(
        early.is_err(),
        "a fifth connection must wait while four are served"
    );
    drop(held);
    let n = tokio::time::timeout(Duration::from_secs(5), waiting.read(&mut buffer))
        .await
        .unwrap()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&buffer[..n]).starts_with("HTTP/1.1 403"),
        "served once a slot is free"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_scraped_from_the_admin_address() {
    let proxy = start().await;
    // One refused request (no signature), one bucket created, one object stored.
    for (head, body) in [
        ("PUT /metricsbucket/x HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned(), Vec::new()),
        (signed_head(http::Method::PUT, "/metricsbucket", proxy.s3, b""), Vec::new()),
        (signed_head(http::Method::PUT, "/metricsbucket/object.bin", proxy.s3, b"0123456789"), b"0123456789".to_vec()),
    ] {
        let mut stream = TcpStream::connect(proxy.s3).await.unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&body).await.unwrap();
        let mut buffer = vec![0u8; 4096];
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut admin = TcpStream::connect(proxy.admin).await.unwrap();
    admin
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let (text, _) = read_until_closed(&mut admin, Duration::from_secs(5)).await;
    for expected in [
        "s3tap_requests_total{operation=\"PutObject\",status=\"403\"} 1",
        "s3tap_requests_total{operation=\"CreateBucket\",status=\"200\"} 1",
        "s3tap_requests_total{operation=\"PutObject\",status=\"200\"} 1",
        "s3tap_rejections_total{layer=\"verify\",reason=\"missing_authentication\"} 1",
        "s3tap_upstream_latency_seconds_bucket",
        "s3tap_upstream_latency_seconds_count 2",
        "s3tap_request_body_bytes_total 10",
        "s3tap_response_body_bytes_total",
        "s3tap_events_spooled",
        "s3tap_sink_delivered_total{sink=\"stdout\"}",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

/// botocore sends `Expect: 100-continue` with empty uploads too and, answered
/// without a 100, misreads the next response on that connection (aws-cli
/// `s3 sync` of a tree with an empty file then hangs for its 60 s read
/// timeout, against s3s-fs directly as well). The proxy closes such a
/// connection after answering, so the next request starts clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_uploads_with_expect_continue_close_the_connection() {
    let proxy = start().await;
    let mut stream = TcpStream::connect(proxy.s3).await.unwrap();
    stream
        .write_all(signed_head(http::Method::PUT, "/expectbucket", proxy.s3, b"").as_bytes())
        .await
        .unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut [0u8; 4096])).await;
    let head = signed_head(http::Method::PUT, "/expectbucket/empty.txt", proxy.s3, b"")
        .replace("\r\n\r\n", "\r\nexpect: 100-continue\r\n\r\n");
    let mut stream = TcpStream::connect(proxy.s3).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let (answer, closed) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    assert!(closed, "the connection must be closed after the answer");
}
