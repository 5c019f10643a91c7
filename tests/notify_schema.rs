//! Issue 12 §2 through the real `s3tap` binary: signed requests to s3s-fs
//! through the proxy, events to four sinks at once, each payload checked
//! against the schema it claims:
//!
//! - the seed webhook (`WEBHOOK_URL`), field by field and JSON type by JSON
//!   type against what the original Worker computed for the same requests
//!   (rebuilt by `tests/data/worker_seed.mjs`);
//! - a B2 webhook with `max_events_per_batch = 1` and `test_event = true`:
//!   one event per POST, `User-Agent: B2/EventNotifications`, one
//!   `b2:TestEvent`, `b2:MultipartUploadCreated:LiveRead`;
//! - a CloudEvents webhook, every attribute against the CNCF adapter's field
//!   table for AWS S3 events, plus the checksum extension attributes;
//! - the JSON-lines file: `s3tap.event/1`, RFC 3339 times, the verified
//!   SHA-256 and CRC32 of the upload, and no claim where nothing was
//!   verified.
#![cfg(feature = "proxy")]

mod notify_support;
mod signing;
mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::SignableBody;
use bytes::Bytes;
use notify_support::{wait_until, Receiver};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use signing::{sign_with, SignOptions};
use support::binary::{S3tap, S3tapCommand};
use support::upstreams::{S3sFs, UpstreamPeer};
use support::{Creds, Peers};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CLIENT_KEY: &str = "S3TAPSCHEMACLIENT001";
const CLIENT_SECRET: &str = "notify-schema-client-secret-51e2";
const UPSTREAM_KEY: &str = "S3SFSSCHEMAUPSTREAM1";
const UPSTREAM_SECRET: &str = "notify-schema-upstream-secret-0c9a";
const B2_SECRET: &str = "b2-signing-secret-for-notify-schema";
const BUCKET: &str = "schema";
const ACCOUNT: &str = "acct-4a2b3c";
const BUCKET_ID: &str = "bucket-id-9f8e";

// ---- the proxy binary -----------------------------------------------------

/// The `s3tap` binary on `config`, run in the config's directory, with
/// the original Worker's variable naming the seed webhook.
fn start(config: &Path, webhook_url: &str) -> S3tap {
    S3tapCommand::new()
        .env("RUST_LOG", "info")
        .env("WEBHOOK_URL", webhook_url)
        .arg("--config")
        .arg(config)
        .start(config.parent().expect("config in a directory"))
}

// ---- signed requests, sent byte for byte ----------------------------------

/// One request as the client sent it, and what it got back.
struct Exchange {
    method: &'static str,
    path: String,
    headers: Vec<(String, String)>,
    status: u16,
}

/// Signs a request as a client would (aws-sigv4, hex payload hash) and
/// writes it on a fresh connection exactly as signed; returns what was sent
/// and the status.
async fn send(
    address: SocketAddr,
    method: &'static str,
    path: &str,
    extra: &[(&str, &str)],
    payload: &[u8],
) -> Exchange {
    let mut builder = http::Request::builder()
        .method(method)
        .uri(format!("http://{address}{path}"))
        .header("host", address.to_string());
    if !payload.is_empty() || method == "PUT" {
        builder = builder.header("content-length", payload.len());
    }
    for (name, value) in extra {
        builder = builder.header(*name, *value);
    }
    let mut request = builder.body(Bytes::copy_from_slice(payload)).unwrap();
    sign_with(
        &mut request,
        SignableBody::Bytes(payload),
        &SignOptions {
            access_key: CLIENT_KEY,
            secret: CLIENT_SECRET,
            time: SystemTime::now(),
            ..Default::default()
        },
    );
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap().to_owned()))
        .collect();
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    for (name, value) in &headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("connection: close\r\n\r\n");
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(payload).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"));
    Exchange {
        method,
        path: path.to_owned(),
        headers,
        status,
    }
}

// ---- the checks ------------------------------------------------------------

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The Worker's JSON for each exchange, computed by node the Worker's way.
fn worker_bodies(peers: &Peers, upstream: &str, exchanges: &[Exchange]) -> Vec<Value> {
    let input: Vec<Value> = exchanges
        .iter()
        .map(|e| {
            json!({
                "headers": e.headers,
                "method": e.method,
                "status": e.status,
                "upstream": upstream,
                "path": e.path,
            })
        })
        .collect();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/worker_seed.mjs");
    let mut child = Command::new(peers.node())
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run node");
    std::io::Write::write_all(
        child.stdin.as_mut().unwrap(),
        serde_json::to_string(&input).unwrap().as_bytes(),
    )
    .unwrap();
    drop(child.stdin.take());
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "worker_seed.mjs failed");
    serde_json::from_slice(&output.stdout).expect("the script prints JSON")
}

/// The CloudEvents project's adapter for AWS S3 events, as its field table
/// gives each attribute (source: the `cloudevents/spec` repository,
/// `cloudevents/adapters/aws-s3.md`). `None`: the attribute is omitted.
fn adapter_table(record: &Value) -> Vec<(&'static str, Option<Value>)> {
    let s = |v: &Value| {
        v.as_str()
            .unwrap_or_else(|| panic!("{v} is not a string"))
            .to_owned()
    };
    vec![
        // "responseElements.x-amz-request-id" + `.` + "responseElements.x-amz-id-2"
        (
            "id",
            Some(json!(format!(
                "{}.{}",
                s(&record["responseElements"]["x-amz-request-id"]),
                s(&record["responseElements"]["x-amz-id-2"])
            ))),
        ),
        // "eventSource" + `.` + "awsRegion" + `.` + "s3.buckets.name"
        (
            "source",
            Some(json!(format!(
                "{}.{}.{}",
                s(&record["eventSource"]),
                s(&record["awsRegion"]),
                s(&record["s3"]["bucket"]["name"])
            ))),
        ),
        // `1.0`
        ("specversion", Some(json!("1.0"))),
        // `com.amazonaws.s3.` + "eventName"
        (
            "type",
            Some(json!(format!(
                "com.amazonaws.s3.{}",
                s(&record["eventName"])
            ))),
        ),
        // S3 event type (e.g. `application/json`)
        ("datacontenttype", Some(json!("application/json"))),
        // Omit
        ("dataschema", None),
        // "s3.object.key"
        ("subject", Some(record["s3"]["object"]["key"].clone())),
        // "eventTime"
        ("time", Some(record["eventTime"].clone())),
        // S3 event
        ("data", Some(record.clone())),
    ]
}

/// RFC 3339, UTC, milliseconds: `2026-12-01T20:15:03.123Z`.
fn is_rfc3339_millis(text: &str) -> bool {
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| range.into_iter().all(|i| b[i].is_ascii_digit());
    b.len() == 24
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b[19] == b'.'
        && digits(20..23)
        && b[23] == b'Z'
}

/// The `s3tap.event/1` fields, as `format::native` documents them.
const SCHEMA_FIELDS: [&str; 32] = [
    "schema",
    "id",
    "time",
    "event_name",
    "b2_event_type",
    "operation",
    "bucket",
    "key",
    "version_id",
    "size",
    "etag",
    "content_type",
    "status",
    "method",
    "url",
    "signature_timestamp",
    "access_key_id",
    "source_ip",
    "upstream_request_id",
    "request_id",
    "content_length",
    "duration_ms",
    "bytes_sent",
    "aborted",
    "matched_rule",
    "delete_marker",
    "live_read",
    "content_sha256",
    "checksum",
    "request_content_type",
    "identity",
    "error_code",
];

fn write_config(
    dir: &Path,
    upstream: &str,
    b2_url: &str,
    ce_url: &str,
    jsonl: &Path,
) -> std::path::PathBuf {
    let text = format!(
        r#"
[upstream]
endpoint = "{upstream}"
region = "us-east-1"
credentials = "fixed"
access_key_id = "{UPSTREAM_KEY}"
secret_access_key = "{UPSTREAM_SECRET}"

[[clients]]
access_key_id = "{CLIENT_KEY}"
secret_access_key = "{CLIENT_SECRET}"

[notify]
spool_dir = "{spool}"

[notify.b2]
account_id = "{ACCOUNT}"
bucket_ids = {{ {BUCKET} = "{BUCKET_ID}" }}

[[sinks]]
type = "webhook"
name = "b2"
url = "{b2_url}"
format = "b2"
b2_secret = "{B2_SECRET}"
max_events_per_batch = 1
test_event = true

[[sinks]]
type = "webhook"
name = "ce"
url = "{ce_url}"
format = "cloudevents"

[[sinks]]
type = "jsonl"
name = "file"
path = "{jsonl}"
"#,
        spool = dir.join("spool").display(),
        jsonl = jsonl.display(),
    );
    let path = dir.join("s3tap.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_format_matches_its_schema_through_the_binary() {
    let Some(peers) = Peers::get() else { return };
    let Some(upstream) = S3sFs::start(&Creds::new(UPSTREAM_KEY, UPSTREAM_SECRET)).await else {
        return;
    };
    let seed = Receiver::ok().await;
    let b2 = Receiver::ok().await;
    let ce = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("events.jsonl");
    let config = write_config(
        dir.path(),
        upstream.endpoint(),
        &b2.url(),
        &ce.url(),
        &jsonl,
    );
    let proxy = start(&config, &seed.url());
    let at = proxy.addr;

    // The requests, one after another, as the Worker's users sent them.
    let payload = b"hello, schema";
    let crc32 = s3tap::sigv4::ChecksumAlgorithm::Crc32.checksum_base64(payload);
    let sha256 = hex::encode(Sha256::digest(payload));
    let key_path = format!("/{BUCKET}/dir/a%20b.txt");
    let mut exchanges = Vec::new();
    exchanges.push(send(at, "PUT", &format!("/{BUCKET}"), &[], b"").await);
    exchanges.push(
        send(
            at,
            "PUT",
            &key_path,
            &[
                ("content-type", "text/plain"),
                ("x-amz-checksum-crc32", &crc32),
            ],
            payload,
        )
        .await,
    );
    exchanges.push(send(at, "GET", &key_path, &[], b"").await);
    exchanges.push(send(at, "HEAD", &key_path, &[], b"").await);
    exchanges.push(send(at, "GET", &format!("/{BUCKET}/missing.txt"), &[], b"").await);
    exchanges.push(
        send(
            at,
            "POST",
            &format!("/{BUCKET}/big.bin?uploads"),
            &[("x-backblaze-live-read-enabled", "true")],
            b"",
        )
        .await,
    );
    exchanges.push(send(at, "DELETE", &key_path, &[], b"").await);
    let statuses: Vec<u16> = exchanges.iter().map(|e| e.status).collect();
    assert_eq!(
        statuses,
        [200, 200, 200, 200, 404, 200, 204],
        "{}",
        proxy.logs()
    );
    let n = exchanges.len();

    // Every request reaches every sink (no [[rules]]: the Worker's "every
    // request, every status"); the B2 sink also gets its test event.
    let delivered = wait_until(Duration::from_secs(30), || {
        seed.log.records().len() >= n
            && b2.log.records().len() > n
            && ce.log.records().len() >= n
            && std::fs::read_to_string(&jsonl)
                .unwrap_or_default()
                .lines()
                .count()
                >= n
    })
    .await;
    assert!(delivered, "not every event arrived:\n{}", proxy.logs());

    // ---- seed: the Worker's JSON, field by field ----------------------------
    let worker = worker_bodies(peers, upstream.endpoint(), &exchanges);
    let mut seed_bodies: Vec<Value> = seed
        .log
        .records()
        .iter()
        .map(|r| serde_json::from_slice(&r.seen.body).expect("seed JSON"))
        .collect();
    assert_eq!(seed_bodies.len(), n, "one POST per request");
    // Deliveries may overtake each other: match by (method, url, status).
    let identity = |v: &Value| format!("{} {} {}", v["method"], v["url"], v["status"]);
    seed_bodies.sort_by_key(identity);
    let mut expected = worker.clone();
    expected.sort_by_key(identity);
    for (ours, theirs) in seed_bodies.iter().zip(&expected) {
        let (ours, theirs) = (ours.as_object().unwrap(), theirs.as_object().unwrap());
        assert_eq!(
            ours.keys().collect::<Vec<_>>(),
            theirs.keys().collect::<Vec<_>>(),
            "the Worker's keys"
        );
        for (field, value) in theirs {
            assert_eq!(
                json_type(&ours[field]),
                json_type(value),
                "JSON type of {field}: s3tap {ours:?}, Worker {theirs:?}"
            );
            assert_eq!(
                &ours[field], value,
                "{field}: s3tap {ours:?}, Worker {theirs:?}"
            );
        }
    }
    // The upload's contentLength is the number the Worker's arithmetic needs.
    assert!(worker[1]["contentLength"].is_u64());
    assert_eq!(worker[1]["contentLength"], json!(payload.len()));
    assert!(worker[2]["contentLength"].is_null());

    // ---- B2: one event per POST, as B2 sends it ------------------------------
    let b2_records = b2.log.records();
    let mut b2_types = Vec::new();
    let mut test_events = 0;
    for record in &b2_records {
        let headers = &record.seen.headers;
        assert_eq!(headers["user-agent"], "B2/EventNotifications");
        let signature = headers["x-bz-event-notification-signature"]
            .to_str()
            .unwrap();
        let mac = s3tap::crypto::hmac_sha256(B2_SECRET.as_bytes(), &record.seen.body);
        assert_eq!(signature, format!("v1={}", hex::encode(mac)));
        let body: Value = serde_json::from_slice(&record.seen.body).unwrap();
        let events = body["events"].as_array().expect("a B2 message");
        assert_eq!(events.len(), 1, "max_events_per_batch = 1: {body}");
        let event = &events[0];
        if event["eventType"] == "b2:TestEvent" {
            test_events += 1;
            assert_eq!(
                event,
                &json!({
                    "accountId": ACCOUNT,
                    "bucketId": BUCKET_ID,
                    "bucketName": BUCKET,
                    "eventTimestamp": event["eventTimestamp"],
                    "eventType": "b2:TestEvent",
                    "eventVersion": 1,
                    "matchedRuleName": "all-requests",
                })
            );
            assert!(event["eventTimestamp"].is_u64());
        } else {
            assert_eq!(event["accountId"], ACCOUNT);
            b2_types.push(event["eventType"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(test_events, 1, "one b2:TestEvent at start");
    assert_eq!(b2_types.len(), n, "one POST per event");
    let b2_types: BTreeSet<String> = b2_types.into_iter().collect();
    for expected in [
        "b2:ObjectCreated:Upload",
        "b2:ObjectDeleted:Delete",
        "b2:MultipartUploadCreated:LiveRead",
        "s3tap:ObjectAccessed:Get",
        "s3tap:ObjectAccessed:Head",
        "s3tap:BucketCreated:Create",
    ] {
        assert!(b2_types.contains(expected), "{expected} in {b2_types:?}");
    }

    // ---- CloudEvents: the CNCF adapter's table, attribute by attribute ------
    let mut ce_types = BTreeSet::new();
    for record in ce.log.records() {
        assert_eq!(
            record.seen.headers["content-type"],
            "application/cloudevents+json"
        );
        let event: Value = serde_json::from_slice(&record.seen.body).unwrap();
        let object = event.as_object().unwrap();
        let data = &event["data"];
        let key = data["s3"]["object"]["key"].as_str().unwrap();
        for (attribute, expected) in adapter_table(data) {
            match expected {
                // An object-less request (a bucket, a list) has no subject.
                Some(_) if attribute == "subject" && key.is_empty() => {
                    assert!(!object.contains_key("subject"), "{event}")
                }
                Some(expected) => assert_eq!(event[attribute], expected, "{attribute}: {event}"),
                None => assert!(!object.contains_key(attribute), "{attribute}: {event}"),
            }
        }
        // Nothing beyond the table but the checksum extensions.
        let extensions = ["contentsha256", "checksumalgorithm", "checksum"];
        for name in object.keys() {
            assert!(
                adapter_table(data).iter().any(|(a, _)| a == name)
                    || extensions.contains(&name.as_str()),
                "unexpected attribute {name}"
            );
        }
        let kind = event["type"].as_str().unwrap().to_owned();
        if kind == "com.amazonaws.s3.ObjectCreated:Put" {
            assert_eq!(event["subject"], "dir/a+b.txt");
            assert_eq!(event["contentsha256"], sha256.as_str());
            assert_eq!(event["checksumalgorithm"], "CRC32");
            assert_eq!(event["checksum"], crc32.as_str());
            assert_eq!(data["s3"]["object"]["contentSha256"], sha256.as_str());
            assert_eq!(
                data["s3"]["object"]["checksum"],
                json!({"algorithm": "CRC32", "value": crc32})
            );
        } else {
            assert!(!object.contains_key("contentsha256"), "{event}");
            assert!(!object.contains_key("checksum"), "{event}");
        }
        // Unique per event, so de-duplicating consumers lose nothing.
        assert!(ce_types.insert((kind, event["id"].as_str().unwrap().to_owned())));
    }
    let names: BTreeSet<&str> = ce_types.iter().map(|(kind, _)| kind.as_str()).collect();
    for expected in [
        "com.amazonaws.s3.BucketCreated:*",
        "com.amazonaws.s3.ObjectCreated:Put",
        "com.amazonaws.s3.ObjectAccessed:Get",
        "com.amazonaws.s3.ObjectAccessed:Head",
        "com.amazonaws.s3.s3tap:MultipartUpload:Create",
        "com.amazonaws.s3.ObjectRemoved:Delete",
    ] {
        assert!(names.contains(expected), "{expected} in {names:?}");
    }

    // ---- JSON lines: s3tap.event/1 ------------------------------------------
    let text = std::fs::read_to_string(&jsonl).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), n);
    let fields: BTreeSet<&str> = SCHEMA_FIELDS.into_iter().collect();
    assert_eq!(fields.len(), SCHEMA_FIELDS.len(), "a field listed twice");
    for line in &lines {
        let keys: BTreeSet<&str> = line
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, fields, "{line}");
        assert_eq!(line["schema"], "s3tap.event/1");
        let time = line["time"].as_str().unwrap();
        assert!(is_rfc3339_millis(time), "{time}");
        assert_eq!(line["access_key_id"], CLIENT_KEY);
        assert_eq!(line["matched_rule"], "all-requests");
        // Only the upload's payload was hashed, and only it claims a digest.
        if line["operation"] == "PutObject" && line["key"] == "dir/a b.txt" {
            assert_eq!(line["event_name"], "s3:ObjectCreated:Put");
            assert_eq!(line["content_sha256"], sha256.as_str());
            assert_eq!(
                line["checksum"],
                json!({"algorithm": "CRC32", "value": crc32})
            );
            assert_eq!(line["size"], json!(payload.len()));
            assert_eq!(line["content_type"], "text/plain");
        } else {
            assert!(line["content_sha256"].is_null(), "{line}");
            assert!(line["checksum"].is_null(), "{line}");
        }
        if line["operation"] == "CreateMultipartUpload" {
            assert_eq!(line["live_read"], true);
            assert_eq!(line["b2_event_type"], "b2:MultipartUploadCreated:LiveRead");
        }
    }
    // Today's time, not a struct of seconds.
    let year = lines[0]["time"].as_str().unwrap()[..4]
        .parse::<i32>()
        .unwrap();
    assert!(year >= 2024, "{}", lines[0]["time"]);

    // The JS SDK streams an unsigned aws-chunked body with a CRC32 trailer:
    // the trailer's checksum is verified and reported; there is no SHA-256
    // of the payload to claim.
    let (file, bytes) = support::random_file(dir.path(), "stream.bin", 200_000, 7);
    let put = support::js_sdk_stream_put(
        peers,
        &format!("http://{at}"),
        &file,
        BUCKET,
        "stream.bin",
        &Creds::new(CLIENT_KEY, CLIENT_SECRET),
    )
    .await;
    put.assert_success("JS SDK stream put");
    let streamed = wait_until(Duration::from_secs(30), || {
        std::fs::read_to_string(&jsonl)
            .unwrap_or_default()
            .lines()
            .count()
            > n
    })
    .await;
    assert!(streamed, "no event for the stream put:\n{}", proxy.logs());
    let text = std::fs::read_to_string(&jsonl).unwrap();
    let line: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(line["key"], "stream.bin");
    assert_eq!(
        line["checksum"],
        json!({
            "algorithm": "CRC32",
            "value": s3tap::sigv4::ChecksumAlgorithm::Crc32.checksum_base64(&bytes),
        })
    );
    assert!(line["content_sha256"].is_null(), "{line}");
}

// ---- only what was verified ----------------------------------------------

/// NotifyLayer in front of SigV4VerifyLayer in front of a handler that reads
/// the whole body: the event of one signed PUT.
async fn event_of_put(
    hashing: s3tap::verify::PayloadHashing,
    payload: &[u8],
    sent: &[u8],
    checksum: (&str, String),
) -> s3tap::notify::Event {
    use http_body_util::{BodyExt, Full};
    use s3tap::credentials::StaticCredentials;
    use s3tap::notify::{Event, NotifyLayer, NotifyRequestBody};
    use s3tap::verify::{SigV4VerifyLayer, VerifyBody};
    use tower::{ServiceBuilder, ServiceExt};

    let events = Arc::new(Mutex::new(Vec::<Event>::new()));
    let sink = events.clone();
    let service = ServiceBuilder::new()
        .layer(NotifyLayer::new(move |event: Event| {
            sink.lock().unwrap().push(event)
        }))
        .layer(
            SigV4VerifyLayer::new(
                StaticCredentials::new().with_key(signing::ACCESS_KEY, signing::SECRET),
            )
            .payload_hashing(hashing),
        )
        .service_fn(
            |request: http::Request<VerifyBody<NotifyRequestBody<Full<Bytes>>>>| async move {
                let read = request.into_body().collect().await;
                let status = if read.is_ok() { 200 } else { 400 };
                Ok::<_, std::convert::Infallible>(
                    http::Response::builder()
                        .status(status)
                        .body(Full::new(Bytes::new()))
                        .unwrap(),
                )
            },
        );
    let mut request = http::Request::put("http://s3.test/bucket/key")
        .header("host", "s3.test")
        .header("content-length", payload.len())
        .header(checksum.0, checksum.1)
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
    let (parts, _) = request.into_parts();
    let request = http::Request::from_parts(parts, Full::new(Bytes::copy_from_slice(sent)));
    let response = service.oneshot(request).await.unwrap();
    let _ = response.into_body().collect().await;
    let mut events = events.lock().unwrap();
    assert_eq!(events.len(), 1);
    events.remove(0)
}

#[tokio::test]
async fn checksums_reach_the_event_only_when_verified() {
    use s3tap::sigv4::ChecksumAlgorithm;
    use s3tap::verify::PayloadHashing;
    let payload = b"verified bytes".repeat(1000);
    let sha256 = hex::encode(Sha256::digest(&payload));
    let sha256_b64 = ChecksumAlgorithm::Sha256.checksum_base64(&payload);
    let header = ("x-amz-checksum-sha256", sha256_b64.clone());

    let verified = event_of_put(PayloadHashing::Verify, &payload, &payload, header.clone()).await;
    assert_eq!(verified.status, 200);
    assert_eq!(verified.content_sha256.as_deref(), Some(sha256.as_str()));
    let checksum = verified.checksum.expect("the checksum s3tap verified");
    assert_eq!(
        (checksum.algorithm.as_str(), checksum.value.as_str()),
        ("SHA256", sha256_b64.as_str())
    );

    // Left to the upstream: s3tap hashed nothing, so it claims nothing.
    let deferred = event_of_put(
        PayloadHashing::DeferToUpstream,
        &payload,
        &payload,
        header.clone(),
    )
    .await;
    assert_eq!(deferred.status, 200);
    assert_eq!(deferred.content_sha256, None);
    assert_eq!(deferred.checksum, None);

    // A payload that does not match what was signed: no digest either.
    let mut tampered = payload.clone();
    tampered[0] ^= 1;
    let rejected = event_of_put(PayloadHashing::Verify, &payload, &tampered, header).await;
    assert_ne!(rejected.status, 200);
    assert_eq!(rejected.content_sha256, None);
    assert_eq!(rejected.checksum, None);
}
