//! The `s3tap` binary end to end: the embedded store with boto3, the admin
//! endpoints, secrets kept out of the logs, and a graceful SIGTERM.
#![cfg(feature = "proxy")]

mod signing;
mod support;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use aws_sigv4::http_request::SignableBody;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use support::{random_file, Peers};

const CLIENT_KEY: &str = "S3TAPTESTCLIENTKEY01";
const CLIENT_SECRET: &str = "test-client-secret-do-not-log-4f9a1c";
const WRONG_SECRET: &str = "wrong-secret-must-not-be-logged-77b2e0";

/// A running binary; killed on drop unless it has exited.
struct RunningProxy {
    child: Child,
    endpoint: String,
    admin: String,
    access_key_id: String,
    secret: String,
    stderr: Arc<Mutex<String>>,
}

impl RunningProxy {
    fn start(data_dir: &Path, env: &[(&str, &str)]) -> RunningProxy {
        let mut child = Command::new(env!("CARGO_BIN_EXE_s3tap"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(env.iter().copied())
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(data_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start s3tap");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut banner = std::collections::HashMap::new();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        for line in lines.by_ref() {
            let line = line.expect("read s3tap stdout");
            if let Some((name, value)) = line.trim().split_once(':') {
                banner.insert(name.trim().to_owned(), value.trim().to_owned());
            }
            if line.contains("aws --endpoint-url") {
                break;
            }
        }
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let field = |name: &str| {
            banner.get(name).cloned().unwrap_or_else(|| {
                panic!(
                    "no {name:?} in the startup banner; stderr:\n{}",
                    stderr.lock().unwrap()
                )
            })
        };
        let admin = field("admin");
        RunningProxy {
            endpoint: field("endpoint"),
            admin: admin
                .split(',')
                .next()
                .unwrap()
                .trim_end_matches("/healthz")
                .to_owned(),
            access_key_id: field("access key id"),
            secret: field("secret access key"),
            stderr: stderr.clone(),
            child,
        }
    }

    fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                started.elapsed() < limit,
                "s3tap did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn logs(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for RunningProxy {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
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
    let proxy = RunningProxy::start(&data, &[]);
    assert!(proxy.access_key_id.starts_with("S3TAP"));

    let (file, _) = random_file(dir.path(), "payload.bin", 3 * 1024 * 1024 + 11, 5);
    let output = python(peers, dir.path(), &proxy.access_key_id, &proxy.secret)
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
    let health = reqwest_like_get(&format!("{}/healthz", proxy.admin)).await;
    assert_eq!(health.0, 200);
    let ready = reqwest_like_get(&format!("{}/readyz", proxy.admin)).await;
    assert_eq!(ready.0, 200, "{}", ready.1);
    let shadow = reqwest_like_get(&format!("{}/healthz", proxy.endpoint)).await;
    assert_eq!(
        shadow.0, 403,
        "/healthz on the S3 port is a bucket: {}",
        shadow.1
    );

    let key = proxy.access_key_id.clone();
    drop(proxy);
    let again = RunningProxy::start(&data, &[]);
    assert_eq!(
        again.access_key_id, key,
        "a restart must keep the client key"
    );
    let output = python(peers, dir.path(), &again.access_key_id, &again.secret)
        .arg(script("boto3_list_buckets.py"))
        .arg(&again.endpoint)
        .output()
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "photos");
}

async fn reqwest_like_get(url: &str) -> (u16, String) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let response = client
        .get(url.parse().unwrap())
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn secrets_never_reach_the_logs() {
    let Some(peers) = Peers::get() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut proxy = RunningProxy::start(
        &dir.path().join("data"),
        &[
            ("AWS_ACCESS_KEY_ID", CLIENT_KEY),
            ("AWS_SECRET_ACCESS_KEY", CLIENT_SECRET),
            ("RUST_LOG", "trace"),
        ],
    );
    assert_eq!(proxy.access_key_id, CLIENT_KEY);

    let output = python(peers, dir.path(), CLIENT_KEY, WRONG_SECRET)
        .arg(script("boto3_list_buckets.py"))
        .arg(&proxy.endpoint)
        .output()
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "ERROR SignatureDoesNotMatch"
    );
    let output = python(peers, dir.path(), CLIENT_KEY, CLIENT_SECRET)
        .arg(script("boto3_list_buckets.py"))
        .arg(&proxy.endpoint)
        .output()
        .await
        .unwrap();
    assert!(output.status.success());

    proxy.terminate();
    assert!(proxy.wait_exit(Duration::from_secs(20)).success());
    std::thread::sleep(Duration::from_millis(100));
    let logs = proxy.logs();
    assert!(
        logs.contains("status=403"),
        "the refused request is logged:\n{logs}"
    );
    assert!(logs.contains("status=200"), "{logs}");
    assert!(
        !logs.contains(CLIENT_SECRET),
        "the client secret was logged"
    );
    assert!(!logs.contains(WRONG_SECRET), "the wrong secret was logged");
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
    let mut proxy = RunningProxy::start(
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
    proxy.terminate();
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
    let proxy = RunningProxy::start(&dir.path().join("data"), &[]);
    let (file, _) = random_file(dir.path(), "payload.bin", 1000, 9);
    let key = "odd names/a+b c%20d.txt";
    let output = python(peers, dir.path(), &proxy.access_key_id, &proxy.secret)
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

    let creds = support::clients::Creds::new(&proxy.access_key_id, &proxy.secret);
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
