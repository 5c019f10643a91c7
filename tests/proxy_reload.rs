//! `clients_file` through three `s3tap` binaries sharing one file, in front
//! of s3s-fs: an edit (written to a temp file and renamed, as operators and
//! config tools do) is picked up by every proxy without a restart — the
//! removed key gets `InvalidAccessKeyId`, the added one works with the
//! policy the file gives it; SIGHUP reloads too; a broken file keeps the
//! keys in use and logs one error line that shows no secret.

#![cfg(feature = "proxy")]

mod signing;
mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use signing::signed_now;
use support::binary::{S3tap, S3tapCommand};
use support::upstreams::{S3sFs, UpstreamPeer};
use support::Creds;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const OLD: (&str, &str) = ("OLDKEY", "old-secret-4e1f");
const NEW: (&str, &str) = ("NEWKEY", "new-secret-8b2c");
/// In the broken file: must never reach a log.
const LEAKY: &str = "leaky-secret-value-77aa";

/// "Did not block": far above the second the reload takes.
const LIMIT: Duration = Duration::from_secs(5);

/// A request signed now with `key`, over a fresh connection: (status, body).
async fn send(
    addr: SocketAddr,
    method: http::Method,
    path: &str,
    (id, secret): (&str, &str),
    payload: &[u8],
) -> (u16, String) {
    let request = signed_now(
        method.clone(),
        &addr.to_string(),
        path,
        payload,
        (id, secret),
    );
    let mut head = format!("{method} {path} HTTP/1.1\r\nconnection: close\r\n");
    for (name, value) in request.headers() {
        head.push_str(&format!("{name}: {}\r\n", value.to_str().unwrap()));
    }
    head.push_str("\r\n");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(payload).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut answer))
        .await
        .expect("an answer within 20 s")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer[9..12].parse().unwrap();
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// ListObjects of `bkt` as `key`.
async fn list(proxy: &S3tap, key: (&str, &str)) -> (u16, String) {
    send(proxy.addr, http::Method::GET, "/bkt", key, b"").await
}

/// Replaces the file the way operators do: write a temp file, rename it.
fn write_atomically(path: &Path, text: &str) {
    let temp = path.with_extension("toml.tmp");
    std::fs::write(&temp, text).unwrap();
    std::fs::rename(&temp, path).unwrap();
}

fn client(key: (&str, &str), extra: &str) -> String {
    format!(
        "[[clients]]\naccess_key_id = \"{}\"\nsecret_access_key = \"{}\"\n{extra}\n",
        key.0, key.1
    )
}

#[tokio::test]
async fn three_proxies_pick_up_an_edited_clients_file_without_a_restart() {
    let upstream = Creds::new("UPSTREAMKEY", "upstream-secret-3c9d");
    let Some(s3s) = S3sFs::start(&upstream).await else {
        return;
    };
    std::fs::create_dir(s3s.data_dir().join("bkt")).unwrap();
    let shared = tempfile::tempdir().unwrap();
    let clients_file = shared.path().join("clients.toml");
    write_atomically(&clients_file, &client(OLD, ""));

    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let proxies: Vec<S3tap> = dirs
        .iter()
        .map(|dir| {
            S3tapCommand::new()
                .config(
                    dir.path(),
                    &format!(
                        "clients_file = \"{file}\"\n\n\
                         [upstream]\nendpoint = \"{endpoint}\"\ncredentials = \"fixed\"\n\
                         access_key_id = \"{up_key}\"\nsecret_access_key = \"{up_secret}\"\n",
                        file = clients_file.display(),
                        endpoint = s3s.endpoint(),
                        up_key = upstream.access_key,
                        up_secret = upstream.secret_key,
                    ),
                )
                .start(dir.path())
        })
        .collect();

    for proxy in &proxies {
        let (status, body) = list(proxy, OLD).await;
        assert_eq!(status, 200, "{body}\n{}", proxy.logs());
        let (status, body) = list(proxy, NEW).await;
        assert_eq!(status, 403, "{body}");
        assert!(body.contains("<Code>InvalidAccessKeyId</Code>"), "{body}");
    }

    // OLD removed, NEW added with a read-only policy on `bkt`.
    write_atomically(&clients_file, &client(NEW, "readonly = [\"bkt\"]"));
    let edited = Instant::now();
    for (n, proxy) in proxies.iter().enumerate() {
        loop {
            let (old_status, old_body) = list(proxy, OLD).await;
            let (new_status, _) = list(proxy, NEW).await;
            if old_body.contains("<Code>InvalidAccessKeyId</Code>") && new_status == 200 {
                assert_eq!(old_status, 403);
                break;
            }
            assert!(
                edited.elapsed() < LIMIT,
                "proxy {n} still serves the old keys after {LIMIT:?}; log:\n{}",
                proxy.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        eprintln!(
            "proxy {n}: the edit took effect {:?} after the rename",
            edited.elapsed()
        );
        assert!(
            proxy.wait_log("reloaded (file changed): 1 clients", LIMIT),
            "{}",
            proxy.logs()
        );
    }
    // The policy came with the key: NEW reads but may not write.
    for proxy in &proxies {
        let (status, body) = send(
            proxy.addr,
            http::Method::PUT,
            "/bkt/object.txt",
            NEW,
            b"hello",
        )
        .await;
        assert_eq!(status, 403, "{body}");
        assert!(body.contains("<Code>AccessDenied</Code>"), "{body}");
    }

    // SIGHUP reloads without any change to the file.
    proxies[1].signal("HUP");
    assert!(
        proxies[1].wait_log("reloaded (SIGHUP): 1 clients", LIMIT),
        "{}",
        proxies[1].logs()
    );
    assert_eq!(list(&proxies[1], NEW).await.0, 200);

    // A broken file (an unterminated string) keeps the keys in use.
    write_atomically(
        &clients_file,
        &format!(
            "[[clients]]\naccess_key_id = \"{}\"\nsecret_access_key = \"{LEAKY}\n",
            OLD.0
        ),
    );
    for (n, proxy) in proxies.iter().enumerate() {
        assert!(
            proxy.wait_log("not reloaded (file changed)", LIMIT),
            "proxy {n}: {}",
            proxy.logs()
        );
        let (status, body) = list(proxy, NEW).await;
        assert_eq!(status, 200, "{body}");
        let (_, body) = list(proxy, OLD).await;
        assert!(body.contains("<Code>InvalidAccessKeyId</Code>"), "{body}");
        let logs = proxy.logs();
        let error = logs
            .lines()
            .find(|line| line.contains("not reloaded"))
            .unwrap();
        assert!(error.contains("line 3"), "{error}");
        assert!(!logs.contains(LEAKY), "a secret reached the log:\n{logs}");
        assert!(!logs.contains(NEW.1), "a secret reached the log:\n{logs}");
    }
}
