//! The `s3tap` binary end to end: the embedded store with boto3, the admin
//! endpoints, and a graceful SIGTERM. Secrets in the logs are checked in
//! `tests/proxy_secrets.rs`, the other signals in `tests/proxy_signals.rs`.
#![cfg(feature = "proxy")]

mod signing;
mod support;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::SignableBody;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use support::binary::{http_get, S3tap, S3tapCommand};
use support::{random_file, Peers};

const CLIENT_KEY: &str = "S3TAPTESTCLIENTKEY01";
const CLIENT_SECRET: &str = "test-client-secret-do-not-log-4f9a1c";

/// The binary with the embedded store in `data_dir` and only `env` set.
fn start(dir: &Path, data_dir: &Path, env: &[(&str, &str)]) -> S3tap {
    let mut command = S3tapCommand::new().arg("--data-dir").arg(data_dir);
    for (name, value) in env {
        command = command.env(name, value);
    }
    command.start(dir)
}

fn python(peers: &Peers, home: &Path, key: &str, secret: &str) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(peers.python());
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("AWS_ACCESS_KEY_ID", key)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", home.join("aws-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.join("aws-credentials"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .kill_on_drop(true);
    cmd
}

fn script(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(name)
}

#[tokio::test]
async fn embedded_store_with_boto3_and_a_kept_client_key() {
    let Some(peers) = Peers::get() else { return };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let proxy = start(dir.path(), &data, &[]);
    let access_key_id = proxy.banner("access key id");
    let secret = proxy.banner("secret access key");
    assert!(access_key_id.starts_with("S3TAP"));
    assert_eq!(proxy.banner("endpoint"), proxy.endpoint);
    assert_eq!(
        proxy.banner("admin"),
        format!("http://{}/healthz, /readyz", proxy.admin)
    );

    let (file, _) = random_file(dir.path(), "payload.bin", 3 * 1024 * 1024 + 11, 5);
    let output = python(peers, dir.path(), &access_key_id, &secret)
        .arg(script("boto3_roundtrip.py"))
        .args([proxy.endpoint.as_str(), "photos", "2026/cat.bin"])
        .arg(&file)
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "boto3 roundtrip failed:\n{}\n{}\nproxy log:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        proxy.logs()
    );

    // The admin endpoints answer on their own address only.
    let health = proxy.admin_get("/healthz").await;
    assert_eq!(health.0, 200);
    let ready = proxy.admin_get("/readyz").await;
    assert_eq!(ready.0, 200, "{}", ready.1);
    let shadow = http_get(proxy.addr, "/healthz").await;
    assert_eq!(
        shadow.0, 403,
        "/healthz on the S3 port is a bucket: {}",
        shadow.1
    );

    drop(proxy);
    let again = start(dir.path(), &data, &[]);
    assert_eq!(
        again.banner("access key id"),
        access_key_id,
        "a restart must keep the client key"
    );
    let output = python(peers, dir.path(), &access_key_id, &secret)
        .arg(script("boto3_list_buckets.py"))
        .arg(&again.endpoint)
        .output()
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "photos");
}

/// Signs a request for the proxy with the test client key (UNSIGNED-PAYLOAD
/// for the streamed upload).
fn signed(method: &str, url: &str, length: usize, unsigned: bool) -> http::Request<Bytes> {
    let uri: http::Uri = url.parse().unwrap();
    let mut request = http::Request::builder()
        .method(method)
        .uri(&uri)
        .header("host", uri.authority().unwrap().as_str())
        .header("content-length", length)
        .body(Bytes::new())
        .unwrap();
    let body = if unsigned {
        SignableBody::UnsignedPayload
    } else {
        SignableBody::Bytes(b"")
    };
    signing::sign_with(
        &mut request,
        body,
        &signing::SignOptions {
            access_key: CLIENT_KEY,
            secret: CLIENT_SECRET,
            time: SystemTime::now(),
            ..signing::SignOptions::default()
        },
    );
    request
}

#[tokio::test]
async fn sigterm_lets_an_upload_in_flight_finish_then_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut proxy = start(
        dir.path(),
        &data,
        &[
            ("AWS_ACCESS_KEY_ID", CLIENT_KEY),
            ("AWS_SECRET_ACCESS_KEY", CLIENT_SECRET),
        ],
    );
    let client: Client<_, http_body_util::combinators::BoxBody<Bytes, std::io::Error>> =
        Client::builder(TokioExecutor::new()).build_http();

    let create = signed("PUT", &format!("{}/slow", proxy.endpoint), 0, false)
        .map(|_| Full::new(Bytes::new()).map_err(|e| match e {}).boxed());
    let response = client.request(create).await.unwrap();
    assert_eq!(response.status(), 200);

    // Four pieces of 64 KiB, 400 ms apart: SIGTERM lands in the middle.
    const PIECE: usize = 64 * 1024;
    let (sent_first, first_sent) = tokio::sync::oneshot::channel::<()>();
    let sent_first = Arc::new(Mutex::new(Some(sent_first)));
    let pieces = futures_util::stream::unfold(0usize, move |i| {
        let sent_first = sent_first.clone();
        async move {
            if i == 4 {
                return None;
            }
            if i > 0 {
                tokio::time::sleep(Duration::from_millis(400)).await;
            }
            if i == 1 {
                if let Some(tx) = sent_first.lock().unwrap().take() {
                    let _ = tx.send(());
                }
            }
            let piece = Bytes::from(vec![b'a' + i as u8; PIECE]);
            Some((Ok::<_, std::io::Error>(Frame::data(piece)), i + 1))
        }
    });
    let upload = signed(
        "PUT",
        &format!("{}/slow/object.bin", proxy.endpoint),
        4 * PIECE,
        true,
    )
    .map(|_| StreamBody::new(pieces).boxed());
    let in_flight = tokio::spawn(async move { client.request(upload).await });

    first_sent.await.unwrap();
    proxy.signal("TERM");
    let response = in_flight.await.unwrap().expect("the upload got an answer");
    assert_eq!(response.status(), 200, "{}", proxy.logs());
    let status = proxy.wait_exit(Duration::from_secs(20));
    assert!(
        status.success(),
        "exit status {status}; log:\n{}",
        proxy.logs()
    );

    let stored = std::fs::read(data.join("buckets/slow/object.bin")).unwrap();
    assert_eq!(stored.len(), 4 * PIECE);
    assert!(stored[3 * PIECE..].iter().all(|&b| b == b'd'));
    let logs = proxy.logs();
    assert!(logs.contains("SIGTERM received"), "{logs}");
    assert!(logs.contains("all requests finished"), "{logs}");
}

/// The embedded store answers listings as AWS does: a key with `+`, a space
/// and `%` lists as itself for boto3 (which asks for `encoding-type=url`),
/// and rclone's recursive listing (which sends an empty `delimiter=`) sees
/// every object. s3s-fs alone fails both.
#[tokio::test]
async fn embedded_store_lists_odd_keys_and_recursive_listings_as_aws_does() {
    let Some(peers) = Peers::get() else { return };
    let dir = tempfile::tempdir().unwrap();
    let proxy = start(dir.path(), &dir.path().join("data"), &[]);
    let access_key_id = proxy.banner("access key id");
    let secret = proxy.banner("secret access key");
    let (file, _) = random_file(dir.path(), "payload.bin", 1000, 9);
    let key = "odd names/a+b c%20d.txt";
    let output = python(peers, dir.path(), &access_key_id, &secret)
        .arg(script("boto3_roundtrip.py"))
        .args([proxy.endpoint.as_str(), "listing", key])
        .arg(&file)
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "boto3 must list {key:?} as itself:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );

    let creds = support::clients::Creds::new(&access_key_id, &secret);
    let listed = support::clients::rclone(
        peers,
        &proxy.endpoint,
        &creds,
        &["lsf".as_ref(), "-R".as_ref(), "e2e:listing".as_ref()],
    )
    .await;
    listed.assert_success("rclone lsf -R");
    let names: Vec<&str> = listed.stdout.lines().collect();
    assert!(
        names.contains(&key),
        "rclone's recursive listing must see {key:?}: {names:?}"
    );
}

/// `[listen] shared_threads`: the shared runtime (admin, dispatcher,
/// sinks) runs on that many threads, one by default. Its blocking-pool
/// threads carry the same name and come and go, so the test compares two
/// proxies started alike: three threads configured are two more than the
/// default's one.
#[test]
fn the_shared_runtime_has_as_many_threads_as_configured() {
    let shared_threads = |pid: u32| {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .filter(|task| {
                let comm = task.as_ref().unwrap().path().join("comm");
                std::fs::read_to_string(comm).unwrap_or_default().trim() == "s3tap-shared"
            })
            .count()
    };
    let (first, second) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let by_default = S3tapCommand::new().start(first.path());
    let three = S3tapCommand::new()
        .config(second.path(), "[listen]\nshared_threads = 3\n")
        .start(second.path());
    // The ready line comes before every thread has started and named
    // itself: the counts settle within moments.
    let mut counts = (0, 0);
    for _ in 0..100 {
        counts = (
            shared_threads(by_default.pid()),
            shared_threads(three.pid()),
        );
        if counts.0 >= 1 && counts.1 == counts.0 + 2 {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "s3tap-shared threads: {} by default, {} with three configured",
        counts.0, counts.1
    );
}

/// The threads named `s3tap-worker-N` of process `pid`, with the CPU ticks
/// (user + system) each has used so far.
fn worker_threads(pid: u32) -> Vec<(String, u64)> {
    let mut threads = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let task = task.unwrap().path();
        let name = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
        let name = name.trim();
        if !name.starts_with("s3tap-worker-") {
            continue;
        }
        let stat = std::fs::read_to_string(task.join("stat")).unwrap();
        // Fields after the parenthesised name: state is field 3, utime 14, stime 15.
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        let ticks = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        threads.push((name.to_owned(), ticks));
    }
    threads.sort();
    threads
}

/// `[listen] workers`: that many threads serve the S3 address, each its
/// share of the connections, and a second process cannot take the port.
#[tokio::test]
async fn each_worker_thread_serves_its_share_of_the_connections() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = S3tapCommand::new()
        .config(dir.path(), "[listen]\nworkers = 3\n")
        .start(dir.path());
    // The ready line comes once the sockets are bound; the threads start
    // right after it.
    let mut before = worker_threads(proxy.pid());
    for _ in 0..100 {
        if before.len() == 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        before = worker_threads(proxy.pid());
    }
    let names: Vec<&str> = before.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        ["s3tap-worker-0", "s3tap-worker-1", "s3tap-worker-2"]
    );

    // 48 connections of 150 requests each; an unsigned request is refused
    // by the verifier with S3 XML, which is work enough to show on a thread.
    let addr = proxy.addr;
    let mut clients = Vec::new();
    for _ in 0..48 {
        clients.push(tokio::spawn(async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                    .await
                    .unwrap();
            tokio::spawn(connection);
            for _ in 0..150 {
                let request = http::Request::get(format!("http://{addr}/photos/cat.jpg"))
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                let response = sender.send_request(request).await.unwrap();
                assert_eq!(response.status(), 403);
                let body = response.into_body().collect().await.unwrap().to_bytes();
                assert!(body.starts_with(b"<?xml"), "{body:?}");
            }
        }));
    }
    for client in clients {
        client.await.unwrap();
    }
    let after = worker_threads(proxy.pid());
    let busy = before
        .iter()
        .zip(&after)
        .filter(|((_, was), (_, is))| is > was)
        .count();
    assert!(
        busy >= 2,
        "the connections should be spread over the workers: {before:?} -> {after:?}"
    );

    let other = tempfile::tempdir().unwrap();
    let (code, stderr) = S3tapCommand::new()
        .arg("--listen")
        .arg(addr.to_string())
        .refused(other.path());
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot bind the listen address {addr}")),
        "{stderr}"
    );
}
