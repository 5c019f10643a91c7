//! Stopping the `s3tap` binary: SIGINT drains like SIGTERM, new connections
//! are refused while in-flight requests drain, and an upload stuck past the
//! drain timeout is cut off so the process still exits 0 in bounded time.
#![cfg(feature = "proxy")]

mod signing;
mod support;

use std::time::{Duration, Instant, SystemTime};

use aws_sigv4::http_request::SignableBody;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use support::binary::{S3tap, S3tapCommand};

const CLIENT_KEY: &str = "SIGNALSCLIENTKEY";
const CLIENT_SECRET: &str = "signals-client-secret";
const PIECE: usize = 64 * 1024;

type Body = BoxBody<Bytes, std::io::Error>;

fn start(dir: &std::path::Path, toml: &str) -> S3tap {
    S3tapCommand::new()
        .env("AWS_ACCESS_KEY_ID", CLIENT_KEY)
        .env("AWS_SECRET_ACCESS_KEY", CLIENT_SECRET)
        .config(dir, toml)
        .start(dir)
}

/// A request signed with the test key (UNSIGNED-PAYLOAD when streamed).
fn signed(method: &str, url: &str, length: usize, body: Body) -> http::Request<Body> {
    let uri: http::Uri = url.parse().unwrap();
    let mut request = http::Request::builder()
        .method(method)
        .uri(&uri)
        .header("host", uri.authority().unwrap().as_str())
        .header("content-length", length)
        .body(Bytes::new())
        .unwrap();
    signing::sign_with(
        &mut request,
        if length == 0 {
            SignableBody::Bytes(b"")
        } else {
            SignableBody::UnsignedPayload
        },
        &signing::SignOptions {
            access_key: CLIENT_KEY,
            secret: CLIENT_SECRET,
            time: SystemTime::now(),
            ..signing::SignOptions::default()
        },
    );
    request.map(|_| body)
}

fn empty() -> Body {
    Full::new(Bytes::new()).map_err(|e| match e {}).boxed()
}

/// A body whose pieces the test sends one by one; it stays open until the
/// sender is dropped.
fn fed_body() -> (tokio::sync::mpsc::Sender<Bytes>, Body) {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        let piece = rx.recv().await?;
        Some((Ok::<_, std::io::Error>(Frame::data(piece)), rx))
    });
    (tx, StreamBody::new(stream).boxed())
}

async fn create_bucket(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Body>,
    proxy: &S3tap,
    bucket: &str,
) {
    let response = client
        .request(signed(
            "PUT",
            &format!("{}/{bucket}", proxy.endpoint),
            0,
            empty(),
        ))
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", proxy.logs());
}

/// Waits until the proxy has read `bytes` of request bodies (its
/// `s3tap_request_body_bytes_total`): the upload is then in flight, past
/// the accept and the request head.
async fn wait_body_bytes(proxy: &S3tap, bytes: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, text) = proxy.admin_get("/metrics").await;
        let read: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("s3tap_request_body_bytes_total "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0);
        if read >= bytes as f64 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the upload never got under way:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn sigint_drains_like_sigterm_and_refuses_new_connections_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let mut proxy = start(dir.path(), "[listen]\ndrain_timeout_secs = 30\n");
    let client: Client<_, Body> = Client::builder(TokioExecutor::new()).build_http();
    create_bucket(&client, &proxy, "sigint").await;

    let (feed, body) = fed_body();
    let upload = signed(
        "PUT",
        &format!("{}/sigint/object.bin", proxy.endpoint),
        2 * PIECE,
        body,
    );
    let in_flight = tokio::spawn({
        let client = client.clone();
        async move { client.request(upload).await }
    });
    feed.send(Bytes::from(vec![b'a'; PIECE])).await.unwrap();
    let partial = dir.path().join("data");
    wait_body_bytes(&proxy, PIECE).await;

    proxy.signal("INT");
    assert!(
        proxy.wait_log("shutting down: no new connections", Duration::from_secs(10)),
        "{}",
        proxy.logs()
    );
    assert!(proxy.logs().contains("SIGINT received"), "{}", proxy.logs());
    // Draining: the listener is closed, the upload still open.
    let refused = tokio::net::TcpStream::connect(proxy.addr).await;
    assert!(
        matches!(&refused, Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused),
        "a new connection while draining: {refused:?}"
    );
    assert!(proxy.alive(), "still draining the upload");

    feed.send(Bytes::from(vec![b'b'; PIECE])).await.unwrap();
    drop(feed);
    let response = in_flight.await.unwrap().expect("the upload got an answer");
    assert_eq!(response.status(), 200, "{}", proxy.logs());
    let status = proxy.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "exit {status}; log:\n{}", proxy.logs());
    let stored = std::fs::read(partial.join("buckets/sigint/object.bin")).unwrap();
    assert_eq!(stored.len(), 2 * PIECE);
    assert!(
        proxy.logs().contains("all requests finished"),
        "{}",
        proxy.logs()
    );
}

#[tokio::test]
async fn an_upload_stuck_past_the_drain_timeout_is_cut_off_and_the_process_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let mut proxy = start(dir.path(), "[listen]\ndrain_timeout_secs = 1\n");
    let client: Client<_, Body> = Client::builder(TokioExecutor::new()).build_http();
    create_bucket(&client, &proxy, "stuck").await;

    let (feed, body) = fed_body();
    let upload = signed(
        "PUT",
        &format!("{}/stuck/never-finished.bin", proxy.endpoint),
        4 * PIECE,
        body,
    );
    let in_flight = tokio::spawn({
        let client = client.clone();
        async move { client.request(upload).await }
    });
    feed.send(Bytes::from(vec![b'a'; PIECE])).await.unwrap();
    wait_body_bytes(&proxy, PIECE).await;

    let signalled = Instant::now();
    proxy.signal("TERM");
    // The client never sends the rest (the body idle timeout is 30 s): the
    // drain timeout of 1 s ends it.
    let status = proxy.wait_exit(Duration::from_secs(20));
    let took = signalled.elapsed();
    assert!(status.success(), "exit {status}; log:\n{}", proxy.logs());
    let logs = proxy.logs();
    assert!(logs.contains("SIGTERM received"), "{logs}");
    assert!(
        logs.contains("drain timeout reached; closing the remaining connections"),
        "{logs}"
    );
    assert!(!logs.contains("all requests finished"), "{logs}");
    // Generous: the drain timeout is 1 s, the idle timeout 30 s; this only
    // says the stuck upload did not hold the exit until the idle timeout.
    assert!(
        took < Duration::from_secs(15),
        "exited {took:?} after SIGTERM"
    );
    let answer = tokio::time::timeout(Duration::from_secs(10), in_flight)
        .await
        .expect("the client learns the connection is gone")
        .unwrap();
    assert!(
        answer.is_err() || answer.as_ref().is_ok_and(|r| !r.status().is_success()),
        "the stuck upload did not succeed: {answer:?}"
    );
    drop(feed);
    assert!(
        !dir.path()
            .join("data/buckets/stuck/never-finished.bin")
            .exists(),
        "an unfinished upload is not stored"
    );
}
