//! Issue 12, section 3, through the real `s3tap` binary in front of s3s-fs,
//! with aws-cli as the client and loopback webhook receivers as sinks:
//!
//! - `[[rules]]` with `buckets` route only those buckets' events, with
//!   `clients` only those clients' (by identity or by access key id);
//! - `aws s3api put-bucket-notification-configuration` through the proxy
//!   makes a rule that routes a PutObject to the named sink,
//!   `get-bucket-notification-configuration` returns it, it survives a
//!   restart, a client without `manage_notifications` gets AccessDenied, an
//!   unknown ARN gets S3's InvalidArgument, an empty configuration removes
//!   it, and none of these requests reaches the upstream;
//! - the new keys are refused when misspelt.
#![cfg(feature = "proxy")]

mod notify_support;
mod signing;
mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify_support::{wait_until, Receiver};
use serde_json::Value;
use support::binary::{S3tap, S3tapCommand};
use support::clients::aws_cli_s3api;
use support::upstreams::{S3sFs, UpstreamPeer};
use support::{ClientOutput, Creds, Peers};

const UPSTREAM_KEY: &str = "S3SFSROUTINGKEY00001";
const UPSTREAM_SECRET: &str = "routing-upstream-secret-5d2a71";
/// May manage notifications; identity `alice`.
const ALICE_KEY: &str = "ALICEROUTINGKEY00001";
const ALICE_SECRET: &str = "alice-routing-secret-0b93e2";
/// May not; no identity of its own (so it is its key id).
const BOB_KEY: &str = "BOBROUTINGKEY0000001";
const BOB_SECRET: &str = "bob-routing-secret-61ac4f";

fn alice() -> Creds {
    Creds::new(ALICE_KEY, ALICE_SECRET)
}

fn bob() -> Creds {
    Creds::new(BOB_KEY, BOB_SECRET)
}

// ---- the proxy binary -----------------------------------------------------

/// The `s3tap` binary on `config`, run in the config's directory.
fn start(config: &Path) -> S3tap {
    S3tapCommand::new()
        .env("RUST_LOG", "info")
        .env("S3TAP_ADMIN_TOKEN", ADMIN_TOKEN)
        .arg("--config")
        .arg(config)
        .start(config.parent().expect("config in a directory"))
}

/// How many requests the proxy has sent upstream: the count of its
/// upstream latency metric.
async fn upstream_requests(proxy: &S3tap) -> u64 {
    let (status, text) = get(&format!("http://{}/metrics", proxy.admin)).await;
    assert_eq!(status, 200, "{text}");
    text.lines()
        .find_map(|line| line.strip_prefix("s3tap_upstream_latency_seconds_count "))
        .map(|n| n.trim().parse().expect("a count"))
        .unwrap_or(0)
}

/// The admin API's token (`/admin/sinks` needs it like every `/admin/` route).
const ADMIN_TOKEN: &str = "routing-test-admin-token";

async fn get(url: &str) -> (u16, String) {
    use http_body_util::{BodyExt, Full};
    let client: hyper_util::client::legacy::Client<_, Full<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let request = http::Request::get(url)
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .body(Full::default())
        .unwrap();
    let response = client
        .request(request)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

// ---- sinks ----------------------------------------------------------------

/// (bucket, key, matched rule) of every event a B2-format receiver got.
fn received(receiver: &Receiver) -> Vec<(String, String, String)> {
    receiver
        .log
        .records()
        .iter()
        .flat_map(|record| {
            let message: Value = serde_json::from_slice(&record.seen.body).unwrap_or_default();
            message["events"].as_array().cloned().unwrap_or_default()
        })
        .map(|event| {
            let text = |name: &str| event[name].as_str().unwrap_or_default().to_owned();
            (
                text("bucketName"),
                text("objectName"),
                text("matchedRuleName"),
            )
        })
        .collect()
}

/// `bucket/key` of every event a receiver got.
fn objects(receiver: &Receiver) -> BTreeSet<String> {
    received(receiver)
        .into_iter()
        .map(|(bucket, key, _)| format!("{bucket}/{key}"))
        .collect()
}

/// Waits until the receiver has an event for `bucket/key`.
async fn wait_for(receiver: &Receiver, object: &str, proxy: &S3tap) {
    if !wait_until(Duration::from_secs(20), || {
        objects(receiver).contains(object)
    })
    .await
    {
        panic!(
            "no event for {object} within 20 s; got {:?}\nproxy log:\n{}",
            objects(receiver),
            proxy.logs()
        );
    }
}

/// One `[[sinks]]` webhook per receiver, in B2's format.
fn sink_sections(sinks: &[(&str, &Receiver)]) -> String {
    sinks
        .iter()
        .map(|(name, receiver)| {
            format!(
                "[[sinks]]\ntype = \"webhook\"\nname = \"{name}\"\nurl = \"{}\"\nformat = \"b2\"\n\n",
                receiver.url()
            )
        })
        .collect()
}

/// The proxy's TOML: s3s-fs signed with its own key, alice (who may manage
/// notifications) and bob, the sinks, then `rules`.
fn write_config(dir: &Path, upstream: &S3sFs, sinks: &str, rules: &str) -> PathBuf {
    let text = format!(
        r#"
[upstream]
endpoint = "{endpoint}"
region = "us-east-1"
credentials = "fixed"
access_key_id = "{UPSTREAM_KEY}"
secret_access_key = "{UPSTREAM_SECRET}"

[[clients]]
access_key_id = "{ALICE_KEY}"
secret_access_key = "{ALICE_SECRET}"
identity = "alice"
manage_notifications = true

[[clients]]
access_key_id = "{BOB_KEY}"
secret_access_key = "{BOB_SECRET}"

[notify]
spool_dir = "{spool}"

{sinks}
{rules}
"#,
        endpoint = upstream.endpoint(),
        spool = dir.join("spool").display(),
    );
    let path = dir.join("s3tap.toml");
    std::fs::write(&path, text).unwrap();
    path
}

async fn s3api(proxy: &S3tap, creds: &Creds, args: &[&str]) -> ClientOutput {
    let peers = Peers::get().expect("peers were checked at the start");
    aws_cli_s3api(peers, &proxy.endpoint, creds, args).await
}

async fn put_object(proxy: &S3tap, creds: &Creds, bucket: &str, key: &str) {
    s3api(
        proxy,
        creds,
        &["put-object", "--bucket", bucket, "--key", key],
    )
    .await
    .assert_success(&format!("put-object {bucket}/{key}"));
}

async fn create_bucket(proxy: &S3tap, bucket: &str) {
    s3api(proxy, &alice(), &["create-bucket", "--bucket", bucket])
        .await
        .assert_success(&format!("create-bucket {bucket}"));
}

// ---- rules by bucket and by client ------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_route_by_bucket_and_by_client() {
    let Some(upstream) = S3sFs::start(&Creds::new(UPSTREAM_KEY, UPSTREAM_SECRET)).await else {
        return;
    };
    let (a_only, alice_only, bob_only, all) = (
        Receiver::ok().await,
        Receiver::ok().await,
        Receiver::ok().await,
        Receiver::ok().await,
    );
    let dir = tempfile::tempdir().unwrap();
    let sinks = sink_sections(&[
        ("a-only", &a_only),
        ("alice-only", &alice_only),
        ("bob-only", &bob_only),
        ("all", &all),
    ]);
    let rules = r#"
[[rules]]
name = "bucket-a"
events = ["s3:ObjectCreated:*"]
buckets = ["alpha"]
sinks = ["a-only"]

[[rules]]
name = "by-identity"
events = ["s3:ObjectCreated:*"]
clients = ["alice"]
sinks = ["alice-only"]

[[rules]]
name = "by-key-id"
events = ["s3:ObjectCreated:*"]
clients = ["BOBROUTING*"]
sinks = ["bob-only"]

[[rules]]
name = "all"
events = ["s3:ObjectCreated:*"]
sinks = ["all"]
"#;
    let config = write_config(dir.path(), &upstream, &sinks, rules);
    let proxy = start(&config);
    for bucket in ["alpha", "alphabet", "beta"] {
        create_bucket(&proxy, bucket).await;
    }
    put_object(&proxy, &alice(), "alpha", "alice-1").await;
    put_object(&proxy, &alice(), "alphabet", "alice-2").await;
    put_object(&proxy, &bob(), "alpha", "bob-1").await;
    put_object(&proxy, &bob(), "beta", "bob-2").await;
    // Last, per sink: an event each filtered sink does get. A sink delivers
    // in order, so once it has its last one, it has had every earlier one.
    put_object(&proxy, &alice(), "alpha", "last-alice").await;
    put_object(&proxy, &bob(), "alpha", "last-bob").await;
    wait_for(&a_only, "alpha/last-bob", &proxy).await;
    wait_for(&alice_only, "alpha/last-alice", &proxy).await;
    wait_for(&bob_only, "alpha/last-bob", &proxy).await;
    wait_for(&all, "alpha/last-bob", &proxy).await;

    let set = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(
        objects(&a_only),
        set(&[
            "alpha/alice-1",
            "alpha/bob-1",
            "alpha/last-alice",
            "alpha/last-bob"
        ]),
        "buckets = [\"alpha\"]: bucket alpha only, not alphabet or beta"
    );
    assert_eq!(
        objects(&alice_only),
        set(&["alpha/alice-1", "alphabet/alice-2", "alpha/last-alice"]),
        "clients = [\"alice\"]: alice's by her identity"
    );
    assert_eq!(
        objects(&bob_only),
        set(&["alpha/bob-1", "beta/bob-2", "alpha/last-bob"]),
        "clients = [\"BOBROUTING*\"]: bob's by his access key id"
    );
    assert_eq!(objects(&all).len(), 6, "{:?}", objects(&all));
    assert!(received(&a_only)
        .iter()
        .all(|(_, _, rule)| rule == "bucket-a"));
}

// ---- S3's notification API at the proxy -------------------------------------

fn queue_configuration(id: &str, arn: &str, prefix: &str) -> String {
    serde_json::json!({
        "QueueConfigurations": [{
            "Id": id,
            "QueueArn": arn,
            "Events": ["s3:ObjectCreated:*"],
            "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": prefix}]}}
        }]
    })
    .to_string()
}

async fn put_configuration(proxy: &S3tap, creds: &Creds, json: &str) -> ClientOutput {
    s3api(
        proxy,
        creds,
        &[
            "put-bucket-notification-configuration",
            "--bucket",
            "photos",
            "--notification-configuration",
            json,
        ],
    )
    .await
}

async fn get_configuration(proxy: &S3tap, creds: &Creds) -> ClientOutput {
    s3api(
        proxy,
        creds,
        &[
            "get-bucket-notification-configuration",
            "--bucket",
            "photos",
        ],
    )
    .await
}

/// The JSON aws-cli printed (nothing at all for an empty configuration).
fn printed(output: &ClientOutput) -> Value {
    output.assert_success("get-bucket-notification-configuration");
    if output.stdout.trim().is_empty() {
        return serde_json::json!({});
    }
    serde_json::from_str(&output.stdout).expect("aws-cli prints JSON")
}

#[track_caller]
fn assert_refused(output: &ClientOutput, code: &str, message: &str) {
    // aws-cli v1 exits 255 when the service answers with an error.
    assert_eq!(
        output.status.code(),
        Some(255),
        "{}\n{}",
        output.stdout,
        output.stderr
    );
    assert!(
        output.stderr.contains(&format!("({code})")) && output.stderr.contains(message),
        "expected {code}: {message} in:\n{}",
        output.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_bucket_notification_configuration_through_the_proxy() {
    let Some(upstream) = S3sFs::start(&Creds::new(UPSTREAM_KEY, UPSTREAM_SECRET)).await else {
        return;
    };
    let (api, all) = (Receiver::ok().await, Receiver::ok().await);
    let dir = tempfile::tempdir().unwrap();
    let sinks = sink_sections(&[("api", &api), ("all", &all)]);
    // A TOML rule beside the API-made ones, which GET does not show.
    let rules = r#"
[[rules]]
name = "everything"
events = ["s3:ObjectCreated:*"]
sinks = ["all"]
"#;
    let config = write_config(dir.path(), &upstream, &sinks, rules);
    let proxy = start(&config);
    assert!(
        wait_until(Duration::from_secs(10), || proxy
            .logs()
            .contains("arn=arn:s3tap:sqs::1:api"))
        .await,
        "the sinks' ARNs are logged at startup:\n{}",
        proxy.logs()
    );
    let (status, listed) = get(&format!("http://{}/admin/sinks", proxy.admin)).await;
    assert_eq!(status, 200);
    let listed: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(
        listed["sinks"],
        serde_json::json!([
            {"name": "api", "arn": "arn:s3tap:sqs::1:api"},
            {"name": "all", "arn": "arn:s3tap:sqs::1:all"}
        ])
    );
    create_bucket(&proxy, "photos").await;

    let upstream_before = upstream_requests(&proxy).await;
    let configuration = queue_configuration("uploads", "arn:s3tap:sqs::1:api", "in/");
    // Bob may not, reading or writing.
    assert_refused(
        &put_configuration(&proxy, &bob(), &configuration).await,
        "AccessDenied",
        "Access Denied",
    );
    assert_refused(
        &get_configuration(&proxy, &bob()).await,
        "AccessDenied",
        "Access Denied",
    );
    // An ARN no sink has.
    assert_refused(
        &put_configuration(
            &proxy,
            &alice(),
            &queue_configuration("x", "arn:aws:sqs:us-east-1:123456789012:elsewhere", ""),
        )
        .await,
        "InvalidArgument",
        "Unable to validate the following destination configurations",
    );
    // Alice may.
    put_configuration(&proxy, &alice(), &configuration)
        .await
        .assert_success("put-bucket-notification-configuration");
    let expected = serde_json::json!({
        "QueueConfigurations": [{
            "Id": "uploads",
            "QueueArn": "arn:s3tap:sqs::1:api",
            "Events": ["s3:ObjectCreated:*"],
            "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "in/"}]}}
        }]
    });
    assert_eq!(
        printed(&get_configuration(&proxy, &alice()).await),
        expected
    );
    assert_eq!(
        upstream_requests(&proxy).await,
        upstream_before,
        "no notification request reached the upstream\n{}",
        proxy.logs()
    );

    // A PutObject under the prefix reaches the named sink; one outside it
    // does not (sent first: the sink delivers in order).
    put_object(&proxy, &alice(), "photos", "out/skipped.jpg").await;
    put_object(&proxy, &bob(), "photos", "in/cat.jpg").await;
    assert_eq!(
        upstream_requests(&proxy).await,
        upstream_before + 2,
        "the uploads themselves went upstream"
    );
    wait_for(&api, "photos/in/cat.jpg", &proxy).await;
    wait_for(&all, "photos/out/skipped.jpg", &proxy).await;
    assert_eq!(
        received(&api),
        [("photos".into(), "in/cat.jpg".into(), "uploads".into())]
    );

    // A restart keeps it.
    drop(proxy);
    let proxy = start(&config);
    assert_eq!(
        printed(&get_configuration(&proxy, &alice()).await),
        expected
    );
    put_object(&proxy, &alice(), "photos", "in/dog.jpg").await;
    wait_for(&api, "photos/in/dog.jpg", &proxy).await;

    // An empty configuration removes it: an upload made then is not
    // routed, one made after configuring again is.
    put_configuration(&proxy, &alice(), "{}")
        .await
        .assert_success("put-bucket-notification-configuration {}");
    assert_eq!(
        printed(&get_configuration(&proxy, &alice()).await),
        serde_json::json!({})
    );
    put_object(&proxy, &alice(), "photos", "in/unrouted.jpg").await;
    put_configuration(&proxy, &alice(), &configuration)
        .await
        .assert_success("put-bucket-notification-configuration again");
    put_object(&proxy, &alice(), "photos", "in/again.jpg").await;
    wait_for(&api, "photos/in/again.jpg", &proxy).await;
    wait_for(&all, "photos/in/unrouted.jpg", &proxy).await;
    assert_eq!(
        objects(&api),
        [
            "photos/in/again.jpg",
            "photos/in/cat.jpg",
            "photos/in/dog.jpg"
        ]
        .map(String::from)
        .into(),
    );
    let stored: Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("spool/bucket-notifications.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(stored["buckets"]["photos"][0]["sink"], "api");
}

// ---- misspelt keys ----------------------------------------------------------

#[test]
fn misspelt_routing_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let client = "[[clients]]\naccess_key_id = \"K\"\nsecret_access_key = \"S\"\n";
    let rule = |key: &str| {
        format!(
            "{client}\n[[rules]]\nname = \"r\"\nevents = [\"*\"]\n{key} = [\"a\"]\nsinks = [\"stdout\"]\n"
        )
    };
    let cases = [
        (rule("bucket"), "unknown field `bucket`"),
        (rule("client"), "unknown field `client`"),
        (
            "[[clients]]\naccess_key_id = \"K\"\nsecret_access_key = \"S\"\nmanage_notification = true\n"
                .to_owned(),
            "unknown field `manage_notification`",
        ),
    ];
    for (config, expected) in cases {
        let (code, stderr) = S3tapCommand::new()
            .config(dir.path(), &config)
            .refused(dir.path());
        assert_eq!(code, Some(2), "{config}\n{stderr}");
        assert!(stderr.contains(expected), "{expected:?} not in {stderr:?}");
    }
}

#[test]
fn the_readme_toml_example_shows_the_routing_keys_and_parses() {
    let example = support::readme_toml_example(|block| {
        block.contains("[[clients]]") && block.contains("[[rules]]")
    });
    use clap::Parser;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s3tap.toml");
    std::fs::write(&path, example).unwrap();
    let args = s3tap::proxy::Args::parse_from(["s3tap", "--config", path.to_str().unwrap()]);
    let config = s3tap::proxy::Config::load(&args, |_| None)
        .unwrap_or_else(|e| panic!("the README example: {e}"));
    let rule = &config.notify.rules()[0];
    assert_eq!(rule.buckets, ["photos", "raw-*"]);
    assert_eq!(rule.clients, ["alice", "AKID*"]);
    assert!(config.clients[0].manage_notifications);
}

// ---- what aws-cli does not send ---------------------------------------------

/// Sends `request` (already signed) to the in-process proxy; status and body.
async fn send(request: http::Request<bytes::Bytes>) -> (u16, String) {
    use http_body_util::{BodyExt, Full};
    let client: hyper_util::client::legacy::Client<_, Full<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let response = client.request(request.map(Full::new)).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A request to `/bucket?notification` signed with the test key over
/// `signed_body` (which need not be `body`).
fn notification_request(
    address: std::net::SocketAddr,
    method: &str,
    body: &[u8],
    signed_body: &[u8],
) -> http::Request<bytes::Bytes> {
    let mut request = http::Request::builder()
        .method(method)
        .uri(format!("http://{address}/bkt?notification"))
        .header("host", address.to_string())
        .header("content-length", body.len())
        .body(bytes::Bytes::copy_from_slice(body))
        .unwrap();
    signing::sign_with(
        &mut request,
        aws_sigv4::http_request::SignableBody::Bytes(signed_body),
        &signing::SignOptions {
            time: std::time::SystemTime::now(),
            ..Default::default()
        },
    );
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashes_are_checked_when_deferred_and_other_methods_are_refused() {
    use clap::Parser;
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("s3tap.toml");
    std::fs::write(
        &config_path,
        format!(
            r#"
[verify]
payload_hashing = "defer"

[notify]
spool_dir = "{spool}"

[[sinks]]
name = "log"
type = "jsonl"
path = "{events}"

[[clients]]
access_key_id = "{key}"
secret_access_key = "{secret}"
manage_notifications = true
"#,
            spool = dir.path().join("spool").display(),
            events = dir.path().join("events.jsonl").display(),
            key = signing::ACCESS_KEY,
            secret = signing::SECRET,
        ),
    )
    .unwrap();
    let args = s3tap::proxy::Args::parse_from([
        "s3tap",
        "--config",
        config_path.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--data-dir",
        dir.path().join("data").to_str().unwrap(),
    ]);
    let config = s3tap::proxy::Config::load(&args, |_| None).unwrap();
    let proxy = s3tap::proxy::Proxy::bind(config).await.unwrap();
    let address = proxy.local_addr();
    tokio::spawn(proxy.serve(std::future::pending()));

    let good = br#"<NotificationConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><TopicConfiguration><Id>t</Id><Topic>arn:s3tap:sqs::1:log</Topic><Event>s3:ObjectRemoved:*</Event></TopicConfiguration></NotificationConfiguration>"#;
    let other = br#"<NotificationConfiguration/>"#;
    // The verifier left the hash to the upstream, which never sees this
    // request: the layer checks it.
    let (status, body) = send(notification_request(address, "PUT", good, other)).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("<Code>XAmzContentSHA256Mismatch</Code>"),
        "{body}"
    );
    let (status, body) = send(notification_request(address, "GET", b"", b"")).await;
    assert_eq!(status, 200);
    assert!(
        !body.contains("TopicConfiguration"),
        "nothing was stored: {body}"
    );

    let (status, body) = send(notification_request(address, "DELETE", b"", b"")).await;
    assert_eq!(status, 405, "{body}");
    assert!(body.contains("<Code>MethodNotAllowed</Code>"), "{body}");

    let (status, body) = send(notification_request(address, "PUT", good, good)).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = send(notification_request(address, "GET", b"", b"")).await;
    assert_eq!(status, 200);
    assert!(
        body.contains("<TopicConfiguration><Id>t</Id><Topic>arn:s3tap:sqs::1:log</Topic><Event>s3:ObjectRemoved:*</Event></TopicConfiguration>"),
        "{body}"
    );

    let unknown = String::from_utf8_lossy(good)
        .replace("sqs::1:log", "sqs::1:gone")
        .into_bytes();
    let (status, body) = send(notification_request(address, "PUT", &unknown, &unknown)).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("<Code>InvalidArgument</Code>")
            && body.contains("<ArgumentName1>arn:s3tap:sqs::1:gone</ArgumentName1>"),
        "{body}"
    );
    let malformed = b"<NotificationConfiguration><Nope/></NotificationConfiguration>";
    let (status, body) = send(notification_request(address, "PUT", malformed, malformed)).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("<Code>MalformedXML</Code>"), "{body}");
}
