//! Access policies per client through the `s3tap` binary, with boto3 and
//! aws-cli against s3s-fs: a `readonly` client lists and reads but every
//! write is refused with AccessDenied before anything reaches the upstream
//! (the s3s-fs directory and the proxy's upstream request count do not
//! move); a client scoped to `bucket/photos/` stays inside it; a
//! `readwrite` client on that prefix uploads, copies and deletes there (a
//! DeleteObjects naming one key outside is refused whole); aws-cli
//! `s3 cp` and `s3 sync` fail as against AWS; `aws:SecureTransport` is the
//! TLS listener's; a bad policy stops the start.

#![cfg(feature = "proxy")]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::binary::{S3tap, S3tapCommand};
use support::clients::{aws_cli_s3, boto3_script};
use support::upstreams::{S3sFs, UpstreamPeer};
use support::{Creds, Peers};

const ADMIN: (&str, &str) = ("ADMINKEY", "admin-secret-5f1e");
const READER: (&str, &str) = ("READERKEY", "reader-secret-9a2b");
const PHOTOS: (&str, &str) = ("PHOTOSKEY", "photos-secret-7c3d");
const WRITER: (&str, &str) = ("WRITERKEY", "writer-secret-2b8c");

fn creds((id, secret): (&str, &str)) -> Creds {
    Creds::new(id, secret)
}

/// Every file under the s3s-fs directory with its content.
fn snapshot(s3s: &S3sFs) -> BTreeMap<String, Vec<u8>> {
    s3s.files()
        .into_iter()
        .map(|name| {
            let content = std::fs::read(s3s.data_dir().join(&name)).unwrap_or_default();
            (name, content)
        })
        .collect()
}

/// The objects only: s3s-fs keeps its `.bucket-...json` metadata files of
/// deleted objects behind.
fn objects(snapshot: &BTreeMap<String, Vec<u8>>) -> BTreeMap<String, Vec<u8>> {
    snapshot
        .iter()
        .filter(|(name, _)| !name.starts_with('.'))
        .map(|(name, content)| (name.clone(), content.clone()))
        .collect()
}

/// The value of the metric line starting with `prefix`, 0 when absent.
async fn metric(proxy: &S3tap, prefix: &str) -> f64 {
    let (status, text) = proxy.admin_get("/metrics").await;
    assert_eq!(status, 200);
    text.lines()
        .find(|line| line.starts_with(prefix))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0)
}

/// Runs `ops` with boto3 as `who`; one "op OK" / "op ERROR Code" line each.
async fn ops(peers: &Peers, proxy: &S3tap, who: (&str, &str), ops: &[&str]) -> Vec<String> {
    let mut args: Vec<&std::ffi::OsStr> = vec![proxy.endpoint.as_ref(), "bkt".as_ref()];
    args.extend(ops.iter().map(|op| std::ffi::OsStr::new(*op)));
    let out = boto3_script(peers, "boto3_authz.py", &args, &creds(who)).await;
    out.assert_success(&format!("boto3_authz.py; proxy log:\n{}", proxy.logs()));
    out.stdout.lines().map(str::to_owned).collect()
}

fn expect(lines: &[String], wanted: &[&str], proxy: &S3tap) {
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    assert_eq!(lines, wanted, "proxy log:\n{}", proxy.logs());
}

#[tokio::test]
async fn readonly_and_prefix_scoped_clients_through_the_binary() {
    let Some(peers) = Peers::get() else { return };
    let upstream = Creds::new("UPSTREAMKEY", "upstream-secret-1d2e");
    let Some(s3s) = S3sFs::start(&upstream).await else {
        return;
    };
    std::fs::create_dir(s3s.data_dir().join("bkt")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let proxy = S3tapCommand::new()
        .config(
            dir.path(),
            &format!(
                r#"
[upstream]
endpoint = "{endpoint}"
credentials = "fixed"
access_key_id = "{up_key}"
secret_access_key = "{up_secret}"

[[clients]]
access_key_id = "{admin}"
secret_access_key = "{admin_secret}"

[[clients]]
access_key_id = "{reader}"
secret_access_key = "{reader_secret}"
identity = "reader"
readonly = ["bkt"]

[[clients]]
access_key_id = "{photos}"
secret_access_key = "{photos_secret}"
identity = "photos-viewer"
readonly = ["bkt/photos/"]

[[clients]]
access_key_id = "{writer}"
secret_access_key = "{writer_secret}"
identity = "photos-writer"
readwrite = ["bkt/photos/"]
"#,
                endpoint = s3s.endpoint(),
                up_key = upstream.access_key,
                up_secret = upstream.secret_key,
                admin = ADMIN.0,
                admin_secret = ADMIN.1,
                reader = READER.0,
                reader_secret = READER.1,
                photos = PHOTOS.0,
                photos_secret = PHOTOS.1,
                writer = WRITER.0,
                writer_secret = WRITER.1,
            ),
        )
        .start(dir.path());

    // A client without a policy keeps full access: it seeds the bucket.
    let seeded = ops(
        peers,
        &proxy,
        ADMIN,
        &["put:keep.txt", "put:photos/a.jpg", "put:other/b.txt"],
    )
    .await;
    expect(
        &seeded,
        &[
            "put:keep.txt OK",
            "put:photos/a.jpg OK",
            "put:other/b.txt OK",
        ],
        &proxy,
    );
    let before = snapshot(&s3s);
    assert!(before.keys().any(|k| k.ends_with("keep.txt")), "{before:?}");

    // readonly: lists and reads.
    let reads = ops(
        peers,
        &proxy,
        READER,
        &["list:", "get:keep.txt", "head:photos/a.jpg"],
    )
    .await;
    expect(
        &reads,
        &["list: OK", "get:keep.txt OK", "head:photos/a.jpg OK"],
        &proxy,
    );

    // ... but no write of any kind reaches the upstream.
    let upstream_before = metric(&proxy, "s3tap_upstream_latency_seconds_count").await;
    let writes = ops(
        peers,
        &proxy,
        READER,
        &[
            "put:new.txt",
            "delete:keep.txt",
            "multipart:big.bin",
            "copy:keep.txt:copy.txt",
            "delete_objects:keep.txt,photos/a.jpg",
        ],
    )
    .await;
    expect(
        &writes,
        &[
            "put:new.txt ERROR AccessDenied",
            "delete:keep.txt ERROR AccessDenied",
            "multipart:big.bin ERROR AccessDenied",
            "copy:keep.txt:copy.txt ERROR AccessDenied",
            "delete_objects:keep.txt,photos/a.jpg ERROR AccessDenied",
        ],
        &proxy,
    );
    assert_eq!(
        metric(&proxy, "s3tap_upstream_latency_seconds_count").await,
        upstream_before,
        "a refused request went upstream; log:\n{}",
        proxy.logs()
    );
    assert_eq!(snapshot(&s3s), before, "the upstream's directory changed");

    // Counted per client and action, logged with the identity, no secret.
    assert_eq!(
        metric(
            &proxy,
            r#"s3tap_authorization_denied_total{client="reader",action="s3:PutObject",reason="implicit_deny"}"#
        )
        .await,
        3.0,
        "PutObject, CreateMultipartUpload and the copy's target"
    );
    assert_eq!(
        metric(
            &proxy,
            r#"s3tap_authorization_denied_total{client="reader",action="s3:DeleteObject",reason="implicit_deny"}"#
        )
        .await,
        2.0,
        "DeleteObject and DeleteObjects"
    );
    assert!(
        metric(
            &proxy,
            r#"s3tap_rejections_total{layer="authorize",reason="implicit_deny"}"#
        )
        .await
            >= 5.0
    );
    assert!(proxy.wait_log("access denied by policy", Duration::from_secs(10)));
    let logs = proxy.logs();
    let denial = logs
        .lines()
        .find(|l| l.contains("access denied by policy") && l.contains("s3:PutObject"))
        .unwrap_or_else(|| panic!("no denial line for PutObject:\n{logs}"));
    assert!(
        denial.contains("reader") && denial.contains(READER.0),
        "{denial}"
    );
    assert!(denial.contains("arn:aws:s3:::bkt/new.txt"), "{denial}");
    for secret in [
        READER.1,
        ADMIN.1,
        PHOTOS.1,
        WRITER.1,
        upstream.secret_key.as_str(),
    ] {
        assert!(!logs.contains(secret), "a secret in the log");
    }

    // A client scoped to bkt/photos/ reads and lists only there.
    let scoped = ops(
        peers,
        &proxy,
        PHOTOS,
        &[
            "get:photos/a.jpg",
            "get:other/b.txt",
            "list:photos/",
            "list:",
            "list:other/",
            "put:photos/new.jpg",
        ],
    )
    .await;
    expect(
        &scoped,
        &[
            "get:photos/a.jpg OK",
            "get:other/b.txt ERROR AccessDenied",
            "list:photos/ OK",
            "list: ERROR AccessDenied",
            "list:other/ ERROR AccessDenied",
            "put:photos/new.jpg ERROR AccessDenied",
        ],
        &proxy,
    );

    // readwrite on the prefix: what a policy allows goes through, bodies
    // intact (the DeleteObjects list read to decide, then passed on).
    let written = ops(
        peers,
        &proxy,
        WRITER,
        &[
            "put:photos/x.jpg",
            "multipart:photos/y.jpg",
            "copy:photos/x.jpg:photos/z.jpg",
            "delete_objects:photos/x.jpg,photos/y.jpg",
            "delete_objects:photos/z.jpg,other/b.txt",
            "copy:other/b.txt:photos/b.txt",
            "delete:photos/z.jpg",
        ],
    )
    .await;
    expect(
        &written,
        &[
            "put:photos/x.jpg OK",
            "multipart:photos/y.jpg OK",
            "copy:photos/x.jpg:photos/z.jpg OK",
            "delete_objects:photos/x.jpg,photos/y.jpg OK",
            "delete_objects:photos/z.jpg,other/b.txt ERROR AccessDenied",
            "copy:other/b.txt:photos/b.txt ERROR AccessDenied",
            "delete:photos/z.jpg OK",
        ],
        &proxy,
    );
    assert_eq!(
        objects(&snapshot(&s3s)),
        objects(&before),
        "the writer left the bucket's objects as they were"
    );

    // aws-cli: downloads work, `s3 cp` and `s3 sync` uploads fail with a
    // non-zero exit naming AccessDenied, as against AWS.
    let local = tempfile::tempdir().unwrap();
    let fetched = local.path().join("keep.txt");
    let out = aws_cli_s3(
        peers,
        &proxy.endpoint,
        &creds(READER),
        &[
            "cp".as_ref(),
            "s3://bkt/keep.txt".as_ref(),
            fetched.as_os_str(),
        ],
    )
    .await;
    out.assert_success("aws s3 cp download as reader");
    assert_eq!(std::fs::read(&fetched).unwrap(), b"written by keep.txt");

    let upload = local.path().join("up");
    std::fs::create_dir(&upload).unwrap();
    std::fs::write(upload.join("one.txt"), b"one").unwrap();
    std::fs::write(upload.join("two.txt"), b"two").unwrap();
    let out = aws_cli_s3(
        peers,
        &proxy.endpoint,
        &creds(READER),
        &[
            "cp".as_ref(),
            upload.join("one.txt").as_os_str(),
            "s3://bkt/one.txt".as_ref(),
        ],
    )
    .await;
    assert!(!out.success(), "aws s3 cp upload succeeded: {out:?}");
    assert!(out.stderr.contains("AccessDenied"), "{}", out.stderr);
    let out = aws_cli_s3(
        peers,
        &proxy.endpoint,
        &creds(READER),
        &[
            "sync".as_ref(),
            upload.as_os_str(),
            "s3://bkt/synced/".as_ref(),
        ],
    )
    .await;
    assert!(!out.success(), "aws s3 sync upload succeeded: {out:?}");
    assert!(out.stderr.contains("AccessDenied"), "{}", out.stderr);
    // The scoped client syncs its own prefix down, and nothing outside.
    let mirror = local.path().join("mirror");
    let out = aws_cli_s3(
        peers,
        &proxy.endpoint,
        &creds(PHOTOS),
        &[
            "sync".as_ref(),
            "s3://bkt/photos/".as_ref(),
            mirror.as_os_str(),
        ],
    )
    .await;
    out.assert_success("aws s3 sync download of the scoped prefix");
    assert_eq!(
        std::fs::read(mirror.join("a.jpg")).unwrap(),
        b"written by photos/a.jpg"
    );
    let out = aws_cli_s3(
        peers,
        &proxy.endpoint,
        &creds(PHOTOS),
        &[
            "sync".as_ref(),
            "s3://bkt/".as_ref(),
            local.path().join("all").as_os_str(),
        ],
    )
    .await;
    assert!(
        !out.success(),
        "aws s3 sync of the whole bucket succeeded: {out:?}"
    );
    assert!(out.stderr.contains("AccessDenied"), "{}", out.stderr);

    assert_eq!(
        objects(&snapshot(&s3s)),
        objects(&before),
        "the upstream's objects changed"
    );
}

#[test]
fn a_bad_policy_or_a_misspelt_key_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("broken.json"), "{\"Statement\": [").unwrap();
    let client = |extra: &str| {
        format!(
            "[upstream]\nendpoint = \"http://127.0.0.1:9\"\n\n[[clients]]\n\
             access_key_id = \"AKID\"\nsecret_access_key = \"client-secret-3e4f\"\n{extra}\n"
        )
    };
    for (extra, expected) in [
        ("policy = 'not json'", "policy: not valid JSON"),
        (
            r#"policy = '{"Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*","Principal":"*"}}'"#,
            "unsupported: statement element Principal",
        ),
        (
            r#"policy = '{"Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*","Condition":{"StringLike":{"aws:SourceIp":"1.2.3.4"}}}}'"#,
            "condition key aws:SourceIp",
        ),
        ("policy_file = \"broken.json\"", "policy_file broken.json"),
        (
            "policy_file = \"missing.json\"",
            "cannot read policy_file missing.json",
        ),
        (
            "policy = '{\"Statement\":[]}'\npolicy_file = \"broken.json\"",
            "give one of them",
        ),
        ("readonly = [\"*\"]", "readonly scope"),
        ("read_only = [\"bkt\"]", "unknown field `read_only`"),
    ] {
        let (code, stderr) = S3tapCommand::new()
            .config(dir.path(), &client(extra))
            .refused(dir.path());
        assert_eq!(code, Some(2), "{extra}\n{stderr}");
        assert!(stderr.contains(expected), "{expected:?} not in {stderr:?}");
        assert!(
            stderr.contains("AKID") || extra.starts_with("read_only"),
            "{stderr}"
        );
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(!stderr.contains("client-secret-3e4f"), "{stderr}");
    }
}

#[test]
fn the_readme_toml_example_attaches_policies() {
    let example = support::readme_toml_example(|block| {
        block.contains("[[clients]]") && block.contains("readonly = ")
    });
    for key in [
        "readonly = ",
        "policy = ",
        "policy_file = ",
        "writeonly",
        "readwrite",
    ] {
        assert!(example.contains(key), "README's TOML example lacks {key}");
    }
    use clap::Parser;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s3tap.toml");
    std::fs::write(&path, example).unwrap();
    let args = s3tap::proxy::Args::parse_from(["s3tap", "--config", path.to_str().unwrap()]);
    let config = s3tap::proxy::Config::load(&args, |_| None)
        .unwrap_or_else(|e| panic!("the README example: {e}"));
    assert!(
        config.clients[0].policy.is_none(),
        "the first client keeps full access"
    );
    let policy = config.clients[1].policy.as_ref().expect("a policy");
    // readonly on two scopes (3 statements each) and the JSON's one.
    assert_eq!(policy.len(), 7);
}

#[tokio::test]
async fn secure_transport_is_true_on_the_tls_listener() {
    let Some(peers) = Peers::get() else { return };
    let upstream = Creds::new("UPSTREAMKEY", "upstream-secret-6a7b");
    let Some(s3s) = S3sFs::start(&upstream).await else {
        return;
    };
    std::fs::create_dir(s3s.data_dir().join("bkt")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = support::binary::test_certificate(dir.path(), "authz", &["127.0.0.1"]);
    let deny_when = |secure: bool| {
        format!(
            r#"{{"Statement":[{{"Effect":"Allow","Action":"s3:*","Resource":"*"}},
{{"Effect":"Deny","Action":"s3:*","Resource":"*","Condition":{{"Bool":{{"aws:SecureTransport":"{secure}"}}}}}}]}}"#
        )
    };
    let proxy = S3tapCommand::new()
        .config(
            dir.path(),
            &format!(
                r#"
[tls]
cert = "{cert}"
key = "{key}"

[upstream]
endpoint = "{endpoint}"
credentials = "fixed"
access_key_id = "{up_key}"
secret_access_key = "{up_secret}"

[[clients]]
access_key_id = "TLSONLYKEY"
secret_access_key = "tls-only-secret"
policy = '''{tls_only}'''

[[clients]]
access_key_id = "PLAINONLYKEY"
secret_access_key = "plain-only-secret"
policy = '''{plain_only}'''
"#,
                cert = cert.display(),
                key = key.display(),
                endpoint = s3s.endpoint(),
                up_key = upstream.access_key,
                up_secret = upstream.secret_key,
                tls_only = deny_when(false),
                plain_only = deny_when(true),
            ),
        )
        .start(dir.path());
    assert!(proxy.endpoint.starts_with("https://"), "{}", proxy.endpoint);
    let run = |who: (&'static str, &'static str), ops: &'static [&'static str]| {
        let endpoint = proxy.endpoint.clone();
        let ca = ca.clone();
        async move {
            let mut args: Vec<&std::ffi::OsStr> = vec![endpoint.as_ref(), "bkt".as_ref()];
            args.extend(ops.iter().map(|op| std::ffi::OsStr::new(*op)));
            let out = support::clients::boto3_script_env(
                peers,
                "boto3_authz.py",
                &args,
                &creds(who),
                &[("AWS_CA_BUNDLE", ca.as_os_str())],
            )
            .await;
            out.assert_success("boto3_authz.py over HTTPS");
            out.stdout.lines().map(str::to_owned).collect::<Vec<_>>()
        }
    };
    // Over HTTPS boto3 streams uploads as aws-chunked with a checksum
    // trailer; the DeleteObjects list read to decide goes on unchanged.
    let tls_only = run(
        ("TLSONLYKEY", "tls-only-secret"),
        &[
            "put:a.txt",
            "put:b.txt",
            "get:a.txt",
            "delete_objects:a.txt,b.txt",
        ],
    )
    .await;
    expect(
        &tls_only,
        &[
            "put:a.txt OK",
            "put:b.txt OK",
            "get:a.txt OK",
            "delete_objects:a.txt,b.txt OK",
        ],
        &proxy,
    );
    assert!(!s3s.data_dir().join("bkt/a.txt").exists());
    let plain_only = run(("PLAINONLYKEY", "plain-only-secret"), &["put:c.txt"]).await;
    expect(&plain_only, &["put:c.txt ERROR AccessDenied"], &proxy);
    assert!(!s3s.data_dir().join("bkt/c.txt").exists());
}
