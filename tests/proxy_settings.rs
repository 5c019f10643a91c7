//! Settings of the `s3tap` binary the README names and no other test runs
//! through the binary: `S3TAP_LISTEN`/`S3TAP_ADMIN_LISTEN`, `AWS_REGION`,
//! overrides logged at info level, upstream errors as S3 XML naming the
//! upstream (`502 BadGateway`, `504 GatewayTimeout`), the request log line
//! carrying the request id the client got as `x-amz-request-id`,
//! `[notify] emit_on = "body_end"` (bytes sent, aborted downloads),
//! `[verify] payload_hashing = "defer"` and `max_chunk_size`.
#![cfg(feature = "proxy")]

mod signing;
mod support;

use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::SignableBody;
use bytes::Bytes;
use support::binary::S3tapCommand;
use support::clients::{boto3_script, Creds};
use support::{random_file, ObjectStore, Peers, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn listen_variables_aws_region_and_override_notes() {
    let Some(peers) = Peers::get() else { return };
    let (router, store) = ObjectStore::create();
    let upstream = TestServer::spawn(router).await;
    let dir = tempfile::tempdir().unwrap();
    let proxy = S3tapCommand::new()
        .env("S3TAP_LISTEN", "127.0.0.1:0")
        .env("S3TAP_ADMIN_LISTEN", "127.0.0.1:0")
        .env("AWS_S3_ENDPOINT", upstream.url())
        .env("AWS_REGION", "eu-west-9")
        .env("AWS_ACCESS_KEY_ID", "REGIONKEY")
        .env("AWS_SECRET_ACCESS_KEY", "region-secret")
        .start(dir.path());
    assert_eq!(proxy.admin_get("/healthz").await.0, 200);
    let (file, data) = random_file(dir.path(), "payload.bin", 2000, 6);
    let out = boto3_script(
        peers,
        "boto3_roundtrip.py",
        &[
            proxy.endpoint.as_ref(),
            "regional".as_ref(),
            "object.bin".as_ref(),
            file.as_os_str(),
        ],
        &Creds::new("REGIONKEY", "region-secret"),
    )
    .await;
    out.assert_success(&format!("boto3; log:\n{}", proxy.logs()));
    assert_eq!(store.get("regional", "object.bin").unwrap(), data);
    // The client signed for us-east-1; the upstream is signed for AWS_REGION.
    for request in store.requests() {
        let authorization = request.header("authorization").unwrap_or_default();
        assert!(
            authorization.contains("/eu-west-9/s3/aws4_request"),
            "{} {}: {authorization}",
            request.method,
            request.uri
        );
    }
    drop(proxy);

    // A flag over a variable: the flag wins, and the log says so.
    let again = S3tapCommand::new()
        .arg("--listen")
        .arg("127.0.0.1:0")
        .env("S3TAP_LISTEN", "127.0.0.1:1")
        .env("AWS_ACCESS_KEY_ID", "REGIONKEY")
        .env("AWS_SECRET_ACCESS_KEY", "region-secret")
        .start(dir.path());
    assert_ne!(again.addr.port(), 1);
    assert!(
        again.wait_log(
            "listen address: --listen overrides S3TAP_LISTEN",
            Duration::from_secs(5)
        ),
        "{}",
        again.logs()
    );
    assert!(again
        .logs()
        .lines()
        .any(|l| l.contains("INFO") && l.contains("overrides S3TAP_LISTEN")));
}

/// A signed `GET /` (ListBuckets) sent by hand: the answer's head and body.
async fn list_buckets(addr: std::net::SocketAddr) -> String {
    let mut request = http::Request::get(format!("http://{addr}/"))
        .header("host", addr.to_string())
        .body(Bytes::new())
        .unwrap();
    signing::sign_with(
        &mut request,
        SignableBody::Bytes(b""),
        &signing::SignOptions {
            access_key: "ERRORKEY",
            secret: "error-secret",
            time: SystemTime::now(),
            ..signing::SignOptions::default()
        },
    );
    let mut head = "GET / HTTP/1.1\r\n".to_owned();
    for (name, value) in request.headers() {
        head.push_str(&format!("{name}: {}\r\n", value.to_str().unwrap()));
    }
    head.push_str("connection: close\r\n\r\n");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_string(&mut answer))
        .await
        .expect("an answer, not a hang")
        .unwrap();
    answer
}

#[tokio::test]
async fn upstream_errors_are_s3_xml_naming_the_upstream_and_each_request_is_logged_with_its_id() {
    // An upstream that accepts connections and never answers, and a port
    // nobody listens on.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut connections = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            connections.push(stream);
        }
    });
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for (port, status, code) in [
        (silent_port, 504, "GatewayTimeout"),
        (closed, 502, "BadGateway"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let proxy = S3tapCommand::new()
            .config(
                dir.path(),
                &format!(
                    "[upstream]\nendpoint = \"http://127.0.0.1:{port}\"\n\
                     connect_timeout_secs = 2\nresponse_timeout_secs = 1\n\n\
                     [[clients]]\naccess_key_id = \"ERRORKEY\"\nsecret_access_key = \"error-secret\"\n"
                ),
            )
            .start(dir.path());
        let answer = list_buckets(proxy.addr).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{answer}\nlog:\n{}",
            proxy.logs()
        );
        assert!(answer.contains(&format!("<Code>{code}</Code>")), "{answer}");
        assert!(
            answer.contains(&format!("127.0.0.1:{port}")),
            "names the upstream: {answer}"
        );
        let request_id = answer
            .lines()
            .find_map(|l| l.strip_prefix("x-amz-request-id: "))
            .expect("x-amz-request-id on the answer")
            .trim()
            .to_owned();
        // One line for the request with its id, method, path, key, status
        // and duration.
        assert!(
            proxy.wait_log(&format!("status={status}"), Duration::from_secs(5)),
            "{}",
            proxy.logs()
        );
        let logs = proxy.logs();
        let line = logs
            .lines()
            .find(|l| l.contains(&format!("request_id={request_id}")) && l.contains("status="))
            .unwrap_or_else(|| panic!("no log line with request_id={request_id}:\n{logs}"));
        for field in [
            "method=GET",
            "path=/",
            "access_key_id=\"ERRORKEY\"",
            &format!("status={status}"),
            "duration_ms=",
        ] {
            assert!(line.contains(field), "{field} missing in {line}");
        }
    }
    held.abort();
}

/// Sends a request signed with `key` (hex payload hash) on a new
/// connection and returns the stream, the body written.
async fn send_signed(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    key: (&str, &str),
    payload: &[u8],
) -> tokio::net::TcpStream {
    let mut request = http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("host", addr.to_string())
        .header("content-length", payload.len())
        .body(Bytes::new())
        .unwrap();
    signing::sign_with(
        &mut request,
        SignableBody::Bytes(payload),
        &signing::SignOptions {
            access_key: key.0,
            secret: key.1,
            time: SystemTime::now(),
            ..signing::SignOptions::default()
        },
    );
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    for (name, value) in request.headers() {
        head.push_str(&format!("{name}: {}\r\n", value.to_str().unwrap()));
    }
    head.push_str("connection: close\r\n\r\n");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(payload).await.unwrap();
    stream
}

#[tokio::test]
async fn emit_on_body_end_reports_the_bytes_sent_and_aborted_downloads() {
    const KEY: (&str, &str) = ("BODYENDKEY", "body-end-secret");
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    let proxy = S3tapCommand::new()
        .env("AWS_ACCESS_KEY_ID", KEY.0)
        .env("AWS_SECRET_ACCESS_KEY", KEY.1)
        .config(
            dir.path(),
            &format!(
                "[notify]\nemit_on = \"body_end\"\n\n[[sinks]]\nname = \"file\"\ntype = \"jsonl\"\npath = \"{}\"\n",
                events.display()
            ),
        )
        .start(dir.path());
    let object = support::random_bytes(4 * 1024 * 1024, 12);
    for (path, payload) in [("/bodyend", &b""[..]), ("/bodyend/big.bin", &object[..])] {
        let mut stream = send_signed(proxy.addr, "PUT", path, KEY, payload).await;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    // A whole download, then one the client drops after 64 KiB.
    let mut whole = send_signed(proxy.addr, "GET", "/bodyend/big.bin", KEY, b"").await;
    let mut all = Vec::new();
    whole.read_to_end(&mut all).await.unwrap();
    assert!(all.len() > object.len());
    let mut dropped = send_signed(proxy.addr, "GET", "/bodyend/big.bin", KEY, b"").await;
    let mut some = vec![0u8; 64 * 1024];
    dropped.read_exact(&mut some).await.unwrap();
    drop(dropped);
    // The 64 KiB read hold the response head too: the body bytes the proxy
    // had sent by then are at least the rest.
    let head_len = some
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("the response head ends within 64 KiB")
        + 4;
    let body_read = (some.len() - head_len) as u64;

    let gets = |text: &str| -> Vec<serde_json::Value> {
        text.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|e| e["operation"] == "GetObject")
            .collect()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let found = loop {
        let found = gets(&std::fs::read_to_string(&events).unwrap_or_default());
        if found.len() == 2 {
            break found;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "expected two GetObject events, got {found:?}; log:\n{}",
            proxy.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let complete = found
        .iter()
        .find(|e| e["aborted"] == false)
        .expect("the whole download");
    assert_eq!(complete["bytes_sent"], object.len() as u64, "{complete}");
    let aborted = found
        .iter()
        .find(|e| e["aborted"] == true)
        .expect("the dropped download");
    let sent = aborted["bytes_sent"].as_u64().expect("bytes_sent");
    assert!(
        sent >= body_read && sent < object.len() as u64,
        "the client read {body_read} body bytes before it left: {aborted}"
    );
}

/// A PUT signed for `hello` that sends `jello`; the answer.
async fn put_with_a_wrong_payload(addr: std::net::SocketAddr, key: (&str, &str)) -> String {
    let mut request = http::Request::put(format!("http://{addr}/deferbucket/k"))
        .header("host", addr.to_string())
        .header("content-length", 5)
        .body(Bytes::new())
        .unwrap();
    signing::sign_with(
        &mut request,
        SignableBody::Bytes(b"hello"),
        &signing::SignOptions {
            access_key: key.0,
            secret: key.1,
            time: SystemTime::now(),
            ..signing::SignOptions::default()
        },
    );
    let mut head = "PUT /deferbucket/k HTTP/1.1\r\n".to_owned();
    for (name, value) in request.headers() {
        head.push_str(&format!("{name}: {}\r\n", value.to_str().unwrap()));
    }
    head.push_str("connection: close\r\n\r\n");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(b"jello").await.unwrap();
    let mut answer = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), stream.read_to_string(&mut answer)).await;
    answer
}

#[tokio::test]
async fn payload_hashing_defer_leaves_the_hash_check_to_the_upstream() {
    const KEY: (&str, &str) = ("DEFERKEY", "defer-secret");
    for mode in ["verify", "defer"] {
        let dir = tempfile::tempdir().unwrap();
        let proxy = S3tapCommand::new()
            .env("AWS_ACCESS_KEY_ID", KEY.0)
            .env("AWS_SECRET_ACCESS_KEY", KEY.1)
            .config(
                dir.path(),
                &format!("[verify]\npayload_hashing = \"{mode}\"\n"),
            )
            .start(dir.path());
        let mut stream = send_signed(proxy.addr, "PUT", "/deferbucket", KEY, b"").await;
        let mut created = String::new();
        stream.read_to_string(&mut created).await.unwrap();
        assert!(created.starts_with("HTTP/1.1 200"), "{created}");

        let answer = put_with_a_wrong_payload(proxy.addr, KEY).await;
        let (_, metrics) = proxy.admin_get("/metrics").await;
        let proxy_refused = metrics.contains(
            "s3tap_rejections_total{layer=\"verify\",reason=\"payload_hash_mismatch\"} 1",
        );
        assert!(!answer.starts_with("HTTP/1.1 200"), "{mode}: {answer}");
        assert!(
            !dir.path().join("data/buckets/deferbucket/k").exists(),
            "{mode}: nothing stored"
        );
        match mode {
            // The proxy hashes the body and refuses it itself.
            "verify" => {
                assert!(
                    answer.starts_with("HTTP/1.1 400")
                        && answer.contains("<Code>XAmzContentSHA256Mismatch</Code>"),
                    "{answer}"
                );
                assert!(proxy_refused, "{metrics}");
            }
            // The proxy passes it on; the upstream (the embedded s3s store,
            // which answers a hash mismatch with 500 InternalError) refuses.
            _ => {
                assert!(!proxy_refused, "the proxy checked the hash:\n{metrics}");
                assert!(answer.contains("<Error>"), "{answer}");
            }
        }
    }
}

/// Writes `request` (head and body) on a new connection; the answer.
async fn send_raw(addr: std::net::SocketAddr, request: &http::Request<Bytes>) -> String {
    let mut head = format!(
        "{} {} HTTP/1.1\r\n",
        request.method(),
        request.uri().path_and_query().unwrap()
    );
    for (name, value) in request.headers() {
        head.push_str(&format!("{name}: {}\r\n", value.to_str().unwrap()));
    }
    head.push_str("connection: close\r\n\r\n");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    // The proxy may refuse before reading the whole body.
    let _ = stream.write_all(request.body()).await;
    let mut answer = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), stream.read_to_string(&mut answer)).await;
    answer
}

#[tokio::test]
async fn max_chunk_size_refuses_larger_signed_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = S3tapCommand::new()
        .env("AWS_ACCESS_KEY_ID", signing::ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", signing::SECRET)
        .config(dir.path(), "[verify]\nmax_chunk_size = 16384\n")
        .start(dir.path());
    let mut stream = send_signed(
        proxy.addr,
        "PUT",
        "/chunks",
        (signing::ACCESS_KEY, signing::SECRET),
        b"",
    )
    .await;
    let mut created = String::new();
    stream.read_to_string(&mut created).await.unwrap();
    assert!(created.starts_with("HTTP/1.1 200"), "{created}");

    let payload = support::random_bytes(100_000, 3);
    let options = signing::SignOptions {
        time: SystemTime::now(),
        ..signing::SignOptions::default()
    };
    let small =
        signing::signed_chunked_upload_with("/chunks/small.bin", &payload, 16384, false, &options);
    let answer = send_raw(proxy.addr, &small.request_with_body()).await;
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "{answer}\n{}",
        proxy.logs()
    );
    assert_eq!(
        std::fs::read(dir.path().join("data/buckets/chunks/small.bin")).unwrap(),
        payload
    );

    let large =
        signing::signed_chunked_upload_with("/chunks/large.bin", &payload, 65536, false, &options);
    let answer = send_raw(proxy.addr, &large.request_with_body()).await;
    assert!(
        answer.starts_with("HTTP/1.1 4") && answer.contains("<Code>EntityTooLarge</Code>"),
        "a 64 KiB chunk over a 16 KiB limit: {answer}"
    );
    assert!(!dir.path().join("data/buckets/chunks/large.bin").exists());
    let (_, metrics) = proxy.admin_get("/metrics").await;
    assert!(
        metrics.contains("s3tap_rejections_total{layer=\"verify\""),
        "{metrics}"
    );
}
