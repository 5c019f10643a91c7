//! The `s3tap` binary in front of real upstreams, configured the ways the
//! README promises: the original Worker's environment (`AWS_S3_ENDPOINT`,
//! the client's own key, `WEBHOOK_URL`, `WEBHOOK_SECRET`), `credentials =
//! "mapped"` with `[log] format = "json"`, an HTTPS upstream trusted through
//! `ca_file`, and `/readyz` following the upstream's reachability.
#![cfg(feature = "proxy")]

mod notify_support;
mod support;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use notify_support::{Reply, Seen};
use support::binary::S3tapCommand;
use support::clients::{aws_cli_cp, boto3_script, boto3_script_env, Creds};
use support::upstreams::{S3sFs, UpstreamPeer};
use support::{random_file, ObjectStore, Peers, TestServer};

/// HMAC-SHA256 hex of `body` under `secret`, computed by Python's own
/// `hmac` and `hashlib`: an implementation independent of the crate's.
async fn python_hmac_hex(peers: &Peers, secret: &str, body: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("body");
    std::fs::write(&path, body).unwrap();
    let out = tokio::process::Command::new(peers.python())
        .env_clear()
        .env("SECRET", secret)
        .arg("-c")
        .arg(
            "import hashlib, hmac, os, sys\n\
             body = open(sys.argv[1], 'rb').read()\n\
             print(hmac.new(os.environ['SECRET'].encode(), body, hashlib.sha256).hexdigest())",
        )
        .arg(&path)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[tokio::test]
async fn the_workers_environment_with_aws_cli_and_a_signed_seed_webhook() {
    let Some(peers) = Peers::get() else { return };
    // Client mode: the client holds the upstream's own key.
    let key = Creds::new("WORKERUPSTREAMKEY", "worker-upstream-secret-0d1e");
    let Some(s3s) = S3sFs::start(&key).await else {
        return;
    };
    std::fs::create_dir(s3s.data_dir().join("workerbucket")).unwrap();
    let hook = notify_support::Receiver::start(
        notify_support::free(),
        Arc::new(|_: &Seen| Reply::Status(200)),
    )
    .await;
    const WEBHOOK_SECRET: &str = "worker-webhook-secret-7c2a";

    let dir = tempfile::tempdir().unwrap();
    let proxy = S3tapCommand::new()
        .env("AWS_S3_ENDPOINT", s3s.endpoint())
        .env("AWS_ACCESS_KEY_ID", &key.access_key)
        .env("AWS_SECRET_ACCESS_KEY", &key.secret_key)
        .env("WEBHOOK_URL", hook.url())
        .env("WEBHOOK_SECRET", WEBHOOK_SECRET)
        .start(dir.path());

    let (file, data) = random_file(dir.path(), "notes.txt", 12_345, 3);
    let before = SystemTime::now();
    let out = aws_cli_cp(
        peers,
        &proxy.endpoint,
        &file,
        "s3://workerbucket/docs/notes.txt",
        &key,
    )
    .await;
    out.assert_success(&format!("aws s3 cp; proxy log:\n{}", proxy.logs()));
    assert_eq!(
        std::fs::read(s3s.data_dir().join("workerbucket/docs/notes.txt")).unwrap(),
        data
    );
    // A wrong secret for the same key is refused by the proxy itself.
    let refused = boto3_script(
        peers,
        "boto3_list_buckets.py",
        &[proxy.endpoint.as_ref()],
        &Creds::new(&key.access_key, "not-the-secret"),
    )
    .await;
    assert_eq!(refused.stdout.trim(), "ERROR SignatureDoesNotMatch");

    let url = format!("{}/workerbucket/docs/notes.txt", s3s.endpoint());
    let put = wait_for(Duration::from_secs(20), || {
        hook.log
            .records()
            .into_iter()
            .find(|r| String::from_utf8_lossy(&r.seen.body).contains(&url))
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "no webhook for the PUT; got {:?}; log:\n{}",
            hook.log.records(),
            proxy.logs()
        )
    });
    let body = put.seen.body.clone();
    let event: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let object = event
        .as_object()
        .expect("one JSON object per POST, as the Worker sent");
    let mut names: Vec<&str> = object.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "contentLength",
            "contentType",
            "method",
            "signatureTimestamp",
            "status",
            "url"
        ],
        "{event}"
    );
    assert_eq!(event["method"], "PUT");
    assert_eq!(event["status"], 200);
    assert_eq!(event["url"], url.as_str());
    assert_eq!(
        event["contentType"], "text/plain",
        "aws-cli guesses it from .txt"
    );
    // contentLength: a JSON number, as the Worker's parseInt of the header
    // gives it (a receiver doing arithmetic on it must not get a string).
    assert_eq!(event["contentLength"], serde_json::json!(12_345));
    // x-amz-date of the client's request: within the minutes around the run.
    let stamp = event["signatureTimestamp"]
        .as_str()
        .expect("signatureTimestamp");
    assert_eq!(stamp.len(), 16, "{stamp}");
    let date = s3tap::sigv4::AmzDate::parse(stamp).expect("an x-amz-date");
    let signed_at = date.to_system_time();
    let skew = |a: SystemTime, b: SystemTime| a.duration_since(b).unwrap_or_default();
    assert!(
        skew(before, signed_at) < Duration::from_secs(120)
            && skew(signed_at, SystemTime::now()) < Duration::from_secs(120),
        "{stamp}"
    );

    let signature = put
        .seen
        .headers
        .get("x-bz-event-notification-signature")
        .expect("WEBHOOK_SECRET signs the webhook")
        .to_str()
        .unwrap()
        .to_owned();
    let expected = python_hmac_hex(peers, WEBHOOK_SECRET, &body).await;
    assert_eq!(signature, format!("v1={expected}"));
    // Every status is reported, the refused request too.
    assert!(
        wait_for(Duration::from_secs(20), || hook
            .log
            .records()
            .iter()
            .any(|r| String::from_utf8_lossy(&r.seen.body).contains("\"status\":403"))
            .then_some(()))
        .await
        .is_some(),
        "the 403 is reported as well"
    );
}

async fn wait_for<T>(limit: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(found) = probe() {
            return Some(found);
        }
        if tokio::time::Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn mapped_credentials_with_json_logs() {
    let Some(peers) = Peers::get() else { return };
    let upstream = Creds::new("MAPPEDUPSTREAMKEY", "mapped-upstream-secret");
    let Some(s3s) = S3sFs::start(&upstream).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let proxy = S3tapCommand::new()
        .config(
            dir.path(),
            &format!(
                r#"
[upstream]
endpoint = "{endpoint}"
credentials = "mapped"

[log]
format = "json"

[[clients]]
access_key_id = "ALICEKEY"
secret_access_key = "alice-secret"
identity = "alice"
upstream_access_key_id = "{up_key}"
upstream_secret_access_key = "{up_secret}"

[[clients]]
access_key_id = "BOBKEY"
secret_access_key = "bob-secret"
upstream_access_key_id = "SOMEOTHERKEY"
upstream_secret_access_key = "some-other-secret"
"#,
                endpoint = s3s.endpoint(),
                up_key = upstream.access_key,
                up_secret = upstream.secret_key,
            ),
        )
        .start(dir.path());
    let (file, data) = random_file(dir.path(), "payload.bin", 70_000, 9);
    let out = boto3_script(
        peers,
        "boto3_roundtrip.py",
        &[
            proxy.endpoint.as_ref(),
            "mapped".as_ref(),
            "alice.bin".as_ref(),
            file.as_os_str(),
        ],
        &Creds::new("ALICEKEY", "alice-secret"),
    )
    .await;
    out.assert_success(&format!("boto3 as alice; log:\n{}", proxy.logs()));
    assert_eq!(
        std::fs::read(s3s.data_dir().join("mapped/alice.bin")).unwrap(),
        data
    );
    // Bob's mapped key is not the upstream's: the upstream refuses it, so the
    // mapping, not the client's key or a fixed one, decides what is signed.
    let bob = boto3_script(
        peers,
        "boto3_list_buckets.py",
        &[proxy.endpoint.as_ref()],
        &Creds::new("BOBKEY", "bob-secret"),
    )
    .await;
    assert!(!bob.success(), "{}", bob.stdout);
    assert!(bob.stdout.starts_with("ERROR "), "{}", bob.stdout);
    assert_ne!(
        bob.stdout.trim(),
        "ERROR SignatureDoesNotMatch",
        "the proxy accepted bob"
    );

    // Every line on stderr is one JSON object.
    let logs = proxy.logs();
    let mut requests = 0;
    for line in logs.lines() {
        let value: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}"));
        assert!(value.is_object(), "{line}");
        assert!(
            value["level"].is_string() && value["timestamp"].is_string(),
            "{line}"
        );
        if value["fields"]["message"] == "response" {
            requests += 1;
            assert!(value["span"]["request_id"].is_string(), "{line}");
        }
    }
    assert!(requests >= 5, "one response line per request:\n{logs}");
    assert!(logs.contains("\"access_key_id\":\"ALICEKEY\""), "{logs}");
}

#[tokio::test]
async fn an_https_upstream_trusted_through_ca_file() {
    let Some(peers) = Peers::get() else { return };
    let (router, store) = ObjectStore::create();
    let upstream = TestServer::spawn_tls(router).await;
    let dir = tempfile::tempdir().unwrap();
    let config = |ca_line: &str| {
        format!(
            r#"
[upstream]
endpoint = "{endpoint}"
region = "us-east-1"
credentials = "fixed"
access_key_id = "STOREKEY"
secret_access_key = "store-secret"
{ca_line}

[[clients]]
access_key_id = "CAFILECLIENT"
secret_access_key = "ca-file-client-secret"
"#,
            endpoint = upstream.url()
        )
    };
    let creds = Creds::new("CAFILECLIENT", "ca-file-client-secret");
    let (file, data) = random_file(dir.path(), "payload.bin", 40_000, 4);
    let roundtrip = |endpoint: String| {
        let creds = creds.clone();
        let file = file.clone();
        async move {
            boto3_script_env(
                peers,
                "boto3_roundtrip.py",
                &[
                    endpoint.as_ref(),
                    "cabucket".as_ref(),
                    "over-tls.bin".as_ref(),
                    file.as_os_str(),
                ],
                &creds,
                &[],
            )
            .await
        }
    };

    // Without ca_file the test CA is unknown: the upstream is not trusted.
    let untrusted_dir = tempfile::tempdir().unwrap();
    let untrusted = S3tapCommand::new()
        .config(untrusted_dir.path(), &config(""))
        .start(untrusted_dir.path());
    let out = roundtrip(untrusted.endpoint.clone()).await;
    assert!(!out.success());
    assert!(out.stderr.contains("BadGateway"), "{}", out.stderr);
    assert_eq!(store.object_count(), 0);
    drop(untrusted);

    let ca_line = format!("ca_file = \"{}\"", upstream.ca_pem().unwrap().display());
    let proxy = S3tapCommand::new()
        .config(dir.path(), &config(&ca_line))
        .start(dir.path());
    let out = roundtrip(proxy.endpoint.clone()).await;
    out.assert_success(&format!(
        "boto3 through an HTTPS upstream; log:\n{}",
        proxy.logs()
    ));
    assert_eq!(store.get("cabucket", "over-tls.bin").unwrap(), data);
    let request = store
        .requests()
        .into_iter()
        .find(|r| r.method == http::Method::PUT && r.uri.contains("over-tls.bin"))
        .unwrap();
    assert!(
        request
            .header("authorization")
            .is_some_and(|a| a.contains("Credential=STOREKEY/")),
        "signed with the fixed upstream key: {:?}",
        request.header("authorization")
    );
}

#[tokio::test]
async fn readyz_is_503_while_the_upstream_is_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    // A loopback port nobody listens on, then somebody does.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let proxy = S3tapCommand::new()
        .env("AWS_S3_ENDPOINT", format!("http://127.0.0.1:{port}"))
        .env("AWS_ACCESS_KEY_ID", "READYZKEY")
        .env("AWS_SECRET_ACCESS_KEY", "readyz-secret")
        .start(dir.path());
    let (status, body) = proxy.admin_get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains(&format!("127.0.0.1:{port} unreachable")),
        "{body}"
    );
    let (status, _) = proxy.admin_get("/healthz").await;
    assert_eq!(status, 200, "the process itself is healthy");

    let _upstream = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("rebind the upstream port");
    let (status, body) = proxy.admin_get("/readyz").await;
    assert_eq!(status, 200, "{body}");
}
