//! Issue 4's acceptance through the real `s3tap` binary: real clients
//! (aws-cli `s3 sync`, a boto3 multipart upload, a `DeleteObjects` of 100
//! keys) through the proxy to s3s-fs, a `[[sinks]]` webhook in B2 format to a
//! loopback receiver, and `[[rules]]` for created and removed objects.
//!
//! - the receiver gets exactly one event per object created or deleted, and
//!   every message's signature verifies with Python's `hmac` and with the
//!   crate's own `VerifyWebhookLayer::b2`;
//! - with the receiver down, answering 500, answering 429 with
//!   `Retry-After`, or slower than the sink timeout, every event is delivered
//!   once it recovers, and no attempt comes before the `Retry-After`;
//! - a SIGKILLed proxy restarted on the same spool delivers what it had
//!   spooled while the receiver was down;
//! - clients see no added latency while the sink is down or hanging.
//!
//! The proxy runs as a subprocess (so it can be SIGKILLed) with `--listen
//! 127.0.0.1:0`; its address is read from the "s3tap is ready" log line.
#![cfg(feature = "proxy")]

mod notify_support;
mod support;
mod webhook_support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use http::StatusCode;
use notify_support::{wait_until, Log, Receiver, Reply, Seen};
use serde_json::Value;
use support::clients::{aws_cli_s3, boto3_script};
use support::upstreams::S3sFs;
use support::{random_bytes, Creds, Peers};

const CLIENT_KEY: &str = "S3TAPNOTIFYCLIENT001";
const CLIENT_SECRET: &str = "notify-e2e-client-secret-7c1f0d";
const UPSTREAM_KEY: &str = "S3SFSUPSTREAMKEY0001";
const UPSTREAM_SECRET: &str = "notify-e2e-upstream-secret-a93be4";
const B2_SECRET: &str = "b2-signing-secret-for-notify-e2e-0123";
const BUCKET: &str = "notify";
/// The sink's request timeout in the configuration (`timeout_secs`).
const SINK_TIMEOUT: Duration = Duration::from_secs(1);

// ---- the webhook receiver -------------------------------------------------

/// What the receiver does with a request.
#[derive(Clone, Copy, Debug)]
enum Mode {
    Ok,
    Status(u16),
    /// 429 with `Retry-After: N` seconds.
    TooMany(u64),
    /// 200, but only after this long.
    Slow(Duration),
}

/// The loopback receiver of `notify_support`, switchable between behaviours
/// and between up (listening) and down (port closed, connections cut), on a
/// fixed address and with one log across restarts.
struct Hook {
    addr: SocketAddr,
    log: Arc<Log>,
    mode: Arc<Mutex<Mode>>,
    receiver: Option<Receiver>,
}

impl Hook {
    async fn start() -> Hook {
        let mut hook = Hook::down_at(notify_support::closed_port());
        hook.up().await;
        hook
    }

    /// A hook on `addr` that is not listening yet.
    fn down_at(addr: SocketAddr) -> Hook {
        Hook {
            addr,
            log: Arc::new(Log::default()),
            mode: Arc::new(Mutex::new(Mode::Ok)),
            receiver: None,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn down(&mut self) {
        if let Some(receiver) = self.receiver.take() {
            receiver.stop();
        }
    }

    async fn up(&mut self) {
        if self.receiver.is_some() {
            return;
        }
        // The aborted listener is dropped asynchronously: wait for the port.
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpListener::bind(self.addr).is_err() {
            assert!(Instant::now() < deadline, "{} stays busy", self.addr);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mode = self.mode.clone();
        let behaviour = Arc::new(move |_: &Seen| match *mode.lock().unwrap() {
            Mode::Ok => Reply::Status(200),
            Mode::Status(status) => Reply::Status(status),
            Mode::TooMany(secs) => Reply::StatusWith(429, vec![("retry-after", secs.to_string())]),
            Mode::Slow(delay) => Reply::After(delay),
        });
        self.receiver =
            Some(Receiver::start_with_log(self.addr, behaviour, self.log.clone()).await);
    }

    /// Every event the receiver answered 2xx within the sink timeout (a
    /// 200 after the sender gave up is not a delivery), with duplicates.
    fn delivered(&self) -> Vec<Value> {
        self.log
            .records()
            .iter()
            .filter(|r| {
                r.status.is_some_and(|s| (200..300).contains(&s))
                    && r.answered.is_some_and(|a| {
                        a.duration_since(r.seen.received)
                            < SINK_TIMEOUT - Duration::from_millis(100)
                    })
            })
            .flat_map(|r| events_of(&r.seen.body))
            .collect()
    }

    /// Event id → object name of every delivered event with a key under
    /// `prefix`, and how many deliveries were duplicates.
    fn delivered_under(&self, prefix: &str) -> (BTreeMap<String, String>, usize) {
        let mut ids = BTreeMap::new();
        let mut duplicates = 0;
        for event in self.delivered() {
            let key = event["objectName"].as_str().unwrap_or_default();
            if key.starts_with(prefix) {
                let id = event["eventId"].as_str().unwrap().to_owned();
                if ids.insert(id, key.to_owned()).is_some() {
                    duplicates += 1;
                }
            }
        }
        (ids, duplicates)
    }

    /// Waits until every key in `keys` has a delivered event; panics with
    /// what is missing after `limit`.
    async fn wait_delivered(&self, prefix: &str, keys: &BTreeSet<String>, limit: Duration) {
        let complete = || {
            let (ids, _) = self.delivered_under(prefix);
            let got: BTreeSet<&String> = ids.values().collect();
            keys.iter().all(|k| got.contains(k))
        };
        if !wait_until(limit, complete).await {
            let (ids, _) = self.delivered_under(prefix);
            let got: BTreeSet<String> = ids.into_values().collect();
            let missing: Vec<&String> = keys.difference(&got).collect();
            panic!(
                "{} of {} events under {prefix} not delivered within {limit:?}: {missing:?}\nrequests: {:?}",
                missing.len(),
                keys.len(),
                self.log
                    .records()
                    .iter()
                    .map(|r| (r.seen.n, r.status, r.seen.ids.len()))
                    .collect::<Vec<_>>()
            );
        }
    }
}

/// The events of one B2 message body.
fn events_of(body: &[u8]) -> Vec<Value> {
    let message: Value = serde_json::from_slice(body).expect("a B2 message is JSON");
    message["events"]
        .as_array()
        .expect("a B2 message has an events array")
        .clone()
}

// ---- the proxy binary -----------------------------------------------------

/// The `s3tap` binary as a subprocess; killed on drop.
struct RunningProxy {
    child: Child,
    endpoint: String,
    admin: SocketAddr,
    stderr: Arc<Mutex<String>>,
}

impl RunningProxy {
    fn start(config: &Path) -> RunningProxy {
        let mut child = Command::new(env!("CARGO_BIN_EXE_s3tap"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env(
                "RUST_LOG",
                std::env::var("S3TAP_E2E_LOG").unwrap_or_else(|_| "info".into()),
            )
            .arg("--config")
            .arg(config)
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start s3tap");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let log = stderr.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if line.contains("s3tap is ready") {
                    let field = |name: &str| {
                        line.split(name)
                            .nth(1)
                            .and_then(|rest| rest.split_whitespace().next())
                            .unwrap_or("")
                            .to_owned()
                    };
                    let _ = ready_tx.send((field("listen="), field("admin=")));
                }
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let (endpoint, admin) = ready_rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("s3tap did not start:\n{}", stderr.lock().unwrap()));
        RunningProxy {
            child,
            endpoint,
            admin: admin.parse().expect("admin address in the ready line"),
            stderr,
        }
    }

    /// A gauge or counter of the proxy's `/metrics`.
    async fn metric(&self, series: &str) -> f64 {
        let (_, text) = support::binary::http_get(self.admin, "/metrics").await;
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
    }

    /// Waits until the hook sink has failed more than `before` deliveries
    /// (`s3tap_sink_retried_total`), i.e. the dispatcher met the fault.
    async fn wait_retried_beyond(&self, before: f64, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let retried = self.metric("s3tap_sink_retried_total{sink=\"hook\"}").await;
            if retried > before {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no failed delivery within {limit:?}:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn kill9(&mut self) {
        let status = Command::new("kill")
            .args(["-9", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        let status = self.child.wait().unwrap();
        assert!(!status.success(), "SIGKILLed, yet {status}");
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

/// The proxy's TOML: s3s-fs upstream signed with its own (fixed) key, one
/// client key, a B2-format webhook sink and rules for created and removed
/// objects that succeeded.
fn write_config(dir: &Path, upstream: &S3sFs, hook_url: &str) -> PathBuf {
    use support::upstreams::UpstreamPeer;
    let spool = dir.join("spool");
    let text = format!(
        r#"
[upstream]
endpoint = "{endpoint}"
region = "us-east-1"
credentials = "fixed"
access_key_id = "{UPSTREAM_KEY}"
secret_access_key = "{UPSTREAM_SECRET}"

[[clients]]
access_key_id = "{CLIENT_KEY}"
secret_access_key = "{CLIENT_SECRET}"

[notify]
spool_dir = "{spool}"
fsync = "interval"

[[sinks]]
type = "webhook"
name = "hook"
url = "{hook_url}"
format = "b2"
b2_secret = "{B2_SECRET}"
timeout_secs = {timeout}
# One POST at a time, so that the receiver can tell from arrival times
# alone that a Retry-After was honoured; a delivery's concurrent POSTs and
# how they stop at a 429 are tested in sink_webhook.rs.
concurrency = 1

[[rules]]
name = "created"
events = ["s3:ObjectCreated:*"]
status = "success"
sinks = ["hook"]

[[rules]]
name = "removed"
events = ["s3:ObjectRemoved:*"]
status = "success"
sinks = ["hook"]
"#,
        endpoint = upstream.endpoint(),
        spool = spool.display(),
        timeout = SINK_TIMEOUT.as_secs(),
    );
    let path = dir.join("s3tap.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn client_creds() -> Creds {
    Creds::new(CLIENT_KEY, CLIENT_SECRET)
}

/// aws-sdk-rust against the proxy, one attempt per request.
fn sdk_client(endpoint: &str) -> aws_sdk_s3::Client {
    use aws_sdk_s3::config::{retry::RetryConfig, BehaviorVersion, Credentials, Region};
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .credentials_provider(Credentials::new(
            CLIENT_KEY,
            CLIENT_SECRET,
            None,
            None,
            "notify-e2e",
        ))
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .retry_config(RetryConfig::disabled())
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// Everything a test needs: s3s-fs, the receiver, the proxy and a client.
struct Setup {
    upstream: S3sFs,
    hook: Hook,
    dir: tempfile::TempDir,
    config: PathBuf,
    proxy: RunningProxy,
    s3: aws_sdk_s3::Client,
}

impl Setup {
    async fn start(hook: Hook) -> Option<Setup> {
        let upstream = S3sFs::start(&Creds::new(UPSTREAM_KEY, UPSTREAM_SECRET)).await?;
        let dir = tempfile::tempdir().unwrap();
        let config = write_config(dir.path(), &upstream, &hook.url());
        let proxy = RunningProxy::start(&config);
        let s3 = sdk_client(&proxy.endpoint);
        s3.create_bucket()
            .bucket(BUCKET)
            .send()
            .await
            .unwrap_or_else(|e| panic!("create bucket: {e:?}\n{}", proxy.logs()));
        Some(Setup {
            upstream,
            hook,
            dir,
            config,
            proxy,
            s3,
        })
    }

    /// PUTs a small object to each key, one after another; returns each
    /// request's latency as the client saw it.
    async fn put_all(&self, keys: &[String]) -> Vec<Duration> {
        let mut latencies = Vec::with_capacity(keys.len());
        for key in keys {
            let started = Instant::now();
            self.s3
                .put_object()
                .bucket(BUCKET)
                .key(key)
                .body(key.clone().into_bytes().into())
                .send()
                .await
                .unwrap_or_else(|e| panic!("PUT {key}: {e:?}\n{}", self.proxy.logs()));
            latencies.push(started.elapsed());
        }
        latencies
    }
}

fn keys(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}{i:03}")).collect()
}

fn percentile(latencies: &[Duration], p: usize) -> Duration {
    let mut sorted = latencies.to_vec();
    sorted.sort();
    sorted[((sorted.len() * p).div_ceil(100)).saturating_sub(1)]
}

fn p99(latencies: &[Duration]) -> Duration {
    percentile(latencies, 99)
}

fn p50(latencies: &[Duration]) -> Duration {
    percentile(latencies, 50)
}

// ---- 1. real clients, exact events, signatures ----------------------------

/// Files of assorted sizes in nested directories, one with a space and one
/// with a non-ASCII name; (relative path, size).
fn write_tree(root: &Path) -> Vec<(String, usize)> {
    let names = [
        "a.txt",
        "b.bin",
        "nested/c.txt",
        "nested/deeper/d.bin",
        "nested/deeper/e.bin",
        "with space/f g.txt",
        "\u{fc}nic\u{f6}de/\u{65e5}\u{672c}.txt",
        "empty.txt",
    ];
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let size = if *name == "empty.txt" {
                0
            } else {
                100 + 5003 * i
            };
            let path = root.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, random_bytes(size, i as u64)).unwrap();
            // An hour old, so `s3 sync` never sees a file newer than its
            // upload.
            std::fs::File::options()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_modified(SystemTime::now() - Duration::from_secs(3600)))
                .unwrap();
            ((*name).to_owned(), size)
        })
        .collect()
}

/// Verifies each message's `x-bz-event-notification-signature` with
/// Python's `hmac`, an implementation independent of the crate's. Returns
/// how many it checked.
async fn verify_with_python(peers: &Peers, dir: &Path, messages: &[(String, Vec<u8>)]) -> usize {
    let mut manifest = Vec::new();
    for (i, (header, body)) in messages.iter().enumerate() {
        let file = dir.join(format!("body-{i}.json"));
        std::fs::write(&file, body).unwrap();
        manifest.push(serde_json::json!({"file": file, "header": header}));
    }
    let manifest_path = dir.join("signatures.json");
    std::fs::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    const CHECK: &str = r#"
import hashlib, hmac, json, sys
secret = sys.argv[1].encode()
bad = []
items = json.load(open(sys.argv[2]))
for item in items:
    body = open(item["file"], "rb").read()
    want = "v1=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(want, item["header"]):
        bad.append(item["file"])
print(json.dumps({"checked": len(items), "bad": bad}))
"#;
    let output = tokio::process::Command::new(peers.python())
        .args(["-c", CHECK, B2_SECRET])
        .arg(&manifest_path)
        .output()
        .await
        .expect("run python");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["bad"], serde_json::json!([]), "python hmac refused");
    report["checked"].as_u64().unwrap() as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_clients_get_exactly_their_events_signed() {
    let Some(peers) = Peers::get() else { return };
    let Some(setup) = Setup::start(Hook::start().await).await else {
        return;
    };
    let creds = client_creds();
    let endpoint = setup.proxy.endpoint.as_str();

    // aws-cli `s3 sync` of a tree.
    let tree_dir = setup.dir.path().join("tree");
    let tree = write_tree(&tree_dir);
    let target = format!("s3://{BUCKET}/tree/");
    let output = aws_cli_s3(
        peers,
        endpoint,
        &creds,
        &["sync".as_ref(), tree_dir.as_os_str(), target.as_ref()],
    )
    .await;
    if !output.success() {
        use support::upstreams::UpstreamPeer;
        panic!(
            "aws s3 sync failed:\n{}\n--- proxy log\n{}\n--- s3s-fs log\n{}",
            output.stderr,
            setup.proxy.logs(),
            setup.upstream.log()
        );
    }

    // boto3: a three-part multipart upload, 100 puts, one DeleteObjects.
    let output = boto3_script(
        peers,
        "boto3_notify.py",
        &[
            endpoint.as_ref(),
            BUCKET.as_ref(),
            "mp/big.bin".as_ref(),
            "del/".as_ref(),
            "100".as_ref(),
        ],
        &creds,
    )
    .await;
    output.assert_success("boto3 multipart + delete_objects");
    let report: Value = serde_json::from_str(output.stdout.trim()).unwrap();
    let multipart_size = report["multipart_size"].as_u64().unwrap();
    assert_eq!(multipart_size, 10 * 1024 * 1024 + 1024);
    let deleted: BTreeSet<String> = report["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(deleted.len(), 100, "DeleteObjects deleted 100 keys");

    let expected = tree.len() + 1 + 100 + 100;
    let log = setup.hook.log.clone();
    assert!(
        wait_until(Duration::from_secs(30), || log.acked_total() >= expected).await,
        "{} of {expected} events arrived\n{}",
        log.acked_total(),
        setup.proxy.logs()
    );
    // Anything extra (events for parts, duplicates) would still be queued
    // or spooled: read the records once the dispatcher holds nothing.
    // As long as the arrival wait above: on two loaded cores a POST that
    // timed out after the receiver took it is retried after its backoff.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let queued = setup.proxy.metric("s3tap_events_queued").await;
        let spooled = setup.proxy.metric("s3tap_events_spooled").await;
        if queued == 0.0 && spooled == 0.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the dispatcher never went idle: {queued} queued, {spooled} spooled\n{}",
            setup.proxy.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let records = setup.hook.log.records();
    assert!(records.iter().all(|r| r.status == Some(200)));
    let events: Vec<Value> = records
        .iter()
        .flat_map(|r| events_of(&r.seen.body))
        .collect();
    assert_eq!(events.len(), expected, "exactly one event per object");
    let ids: BTreeSet<&str> = events
        .iter()
        .map(|e| e["eventId"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), expected, "event ids are unique");

    let mut by_type: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    for event in &events {
        assert_eq!(event["bucketName"], BUCKET);
        assert_eq!(event["eventVersion"], 1);
        by_type
            .entry(event["eventType"].as_str().unwrap())
            .or_default()
            .push(event);
    }
    assert_eq!(
        by_type.keys().copied().collect::<Vec<_>>(),
        [
            "b2:ObjectCreated:MultipartUpload",
            "b2:ObjectCreated:Upload",
            "b2:ObjectDeleted:Delete"
        ],
        "no other event types (no events for parts)"
    );

    // Uploads: the synced tree with its sizes, and the 100 keys.
    let uploads: BTreeMap<String, Option<u64>> = by_type["b2:ObjectCreated:Upload"]
        .iter()
        .map(|e| {
            (
                e["objectName"].as_str().unwrap().to_owned(),
                e["objectSize"].as_u64(),
            )
        })
        .collect();
    assert_eq!(uploads.len(), tree.len() + 100);
    for (name, size) in &tree {
        let key = format!("tree/{name}");
        assert_eq!(
            uploads.get(&key),
            Some(&Some(*size as u64)),
            "event for {key}"
        );
    }
    for key in &deleted {
        assert_eq!(
            uploads.get(key),
            Some(&Some(key.len() as u64)),
            "event for {key}"
        );
    }
    for event in &by_type["b2:ObjectCreated:Upload"] {
        assert_eq!(event["matchedRuleName"], "created");
    }

    let multipart = &by_type["b2:ObjectCreated:MultipartUpload"];
    assert_eq!(multipart.len(), 1);
    assert_eq!(multipart[0]["objectName"], "mp/big.bin");
    assert_eq!(multipart[0]["matchedRuleName"], "created");

    let removed: BTreeSet<String> = by_type["b2:ObjectDeleted:Delete"]
        .iter()
        .map(|e| {
            assert_eq!(e["matchedRuleName"], "removed");
            e["objectName"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(by_type["b2:ObjectDeleted:Delete"].len(), 100);
    assert_eq!(removed, deleted, "one delete event per deleted key");

    // Every message is signed: Python's hmac and VerifyWebhookLayer agree.
    let messages: Vec<(String, Vec<u8>)> = records
        .iter()
        .map(|r| {
            let header = r
                .seen
                .headers
                .get("x-bz-event-notification-signature")
                .expect("every message is signed")
                .to_str()
                .unwrap()
                .to_owned();
            (header, r.seen.body.to_vec())
        })
        .collect();
    let checked = verify_with_python(peers, setup.dir.path(), &messages).await;
    assert_eq!(checked, records.len());
    let layer = s3tap::webhook::VerifyWebhookLayer::b2(B2_SECRET);
    for (header, body) in &messages {
        let outcome = webhook_support::send(
            &layer,
            webhook_support::request(
                &[
                    ("x-bz-event-notification-signature", header),
                    ("content-type", "application/json"),
                ],
                body.clone(),
            ),
        )
        .await;
        assert_eq!(outcome.status, StatusCode::OK);
        assert_eq!(outcome.body, body.as_slice());
    }
    eprintln!(
        "{} events in {} messages, all signatures verified by python hmac and VerifyWebhookLayer",
        events.len(),
        records.len()
    );
    drop(setup.upstream);
}

// ---- 2. faults: down, 500, 429 + Retry-After, slow; latency ---------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_faults_lose_no_event_and_cost_clients_nothing() {
    let Some(mut setup) = Setup::start(Hook::start().await).await else {
        return;
    };
    const K: usize = 20;
    const LATENCY_SAMPLES: usize = 150;
    let recovery = Duration::from_secs(20);

    // Up: the baseline latency.
    let up_keys = keys("up/", LATENCY_SAMPLES);
    let up_latency = setup.put_all(&up_keys).await;
    setup
        .hook
        .wait_delivered("up/", &up_keys.iter().cloned().collect(), recovery)
        .await;

    // Down (port closed): latency, then recovery.
    setup.hook.down();
    let retried = setup
        .proxy
        .metric("s3tap_sink_retried_total{sink=\"hook\"}")
        .await;
    let down_keys = keys("down/", LATENCY_SAMPLES);
    let down_latency = setup.put_all(&down_keys).await;
    // The dispatcher has met the closed port before the receiver returns.
    setup
        .proxy
        .wait_retried_beyond(retried, Duration::from_secs(10))
        .await;
    setup.hook.up().await;
    setup
        .hook
        .wait_delivered("down/", &down_keys.iter().cloned().collect(), recovery)
        .await;

    // 500s.
    setup.hook.set(Mode::Status(500));
    let failing = setup.hook.log.records().len();
    let keys_500 = keys("e500/", K);
    setup.put_all(&keys_500).await;
    let log = setup.hook.log.clone();
    assert!(
        wait_until(Duration::from_secs(5), || log
            .records()
            .iter()
            .skip(failing)
            .filter(|r| r.status == Some(500))
            .count()
            >= 2)
        .await,
        "the sink was answered 500 at least twice"
    );
    setup.hook.set(Mode::Ok);
    setup
        .hook
        .wait_delivered("e500/", &keys_500.iter().cloned().collect(), recovery)
        .await;

    // 429 with Retry-After: 2, for long enough that the sink retries.
    setup.hook.set(Mode::TooMany(2));
    let first_429 = setup.hook.log.records().len();
    let keys_429 = keys("e429/", K);
    setup.put_all(&keys_429).await;
    assert!(
        wait_until(Duration::from_secs(8), || log
            .records()
            .iter()
            .skip(first_429)
            .filter(|r| r.status == Some(429))
            .count()
            >= 2)
        .await,
        "the sink came back after a 429"
    );
    setup.hook.set(Mode::Ok);
    setup
        .hook
        .wait_delivered("e429/", &keys_429.iter().cloned().collect(), recovery)
        .await;
    let records = setup.hook.log.records();
    let mut honoured = 0;
    for pair in records[first_429..].windows(2) {
        if pair[0].status == Some(429) {
            let answered = pair[0].answered.unwrap();
            let gap = pair[1].seen.received.duration_since(answered);
            assert!(
                gap >= Duration::from_secs(2),
                "request {} came {gap:?} after a 429 with Retry-After: 2",
                pair[1].seen.n
            );
            honoured += 1;
        }
    }
    assert!(honoured >= 2);

    // Slower than the sink's timeout (1 s): latency, then recovery.
    setup
        .hook
        .set(Mode::Slow(SINK_TIMEOUT + Duration::from_millis(500)));
    let retried = setup
        .proxy
        .metric("s3tap_sink_retried_total{sink=\"hook\"}")
        .await;
    let slow_keys = keys("slow/", LATENCY_SAMPLES);
    let slow_latency = setup.put_all(&slow_keys).await;
    // A delivery has timed out against the slow receiver before it recovers.
    setup
        .proxy
        .wait_retried_beyond(retried, Duration::from_secs(10))
        .await;
    setup.hook.set(Mode::Ok);
    setup
        .hook
        .wait_delivered("slow/", &slow_keys.iter().cloned().collect(), recovery)
        .await;

    // None lost: every event the receiver ever saw was delivered in the
    // end, and ids and keys pair one to one.
    let seen: BTreeSet<String> = setup
        .hook
        .log
        .records()
        .iter()
        .flat_map(|r| r.seen.ids.clone())
        .collect();
    let (delivered, duplicates) = setup.hook.delivered_under("");
    let delivered_ids: BTreeSet<String> = delivered.keys().cloned().collect();
    assert_eq!(seen, delivered_ids, "every attempted event was delivered");
    let total = 3 * LATENCY_SAMPLES + 2 * K;
    assert_eq!(delivered.len(), total, "one event id per PUT");
    let distinct_keys: BTreeSet<&String> = delivered.values().collect();
    assert_eq!(distinct_keys.len(), total, "one event per key");

    // The response path never waits for the sink (invariant 7). This is a
    // "did not block" check, not a speed goal (the cost of notifications is
    // measured in benches/notify_overhead.rs): had the response waited for
    // the receiver that is slower than the sink's 1 s timeout, every PUT of
    // that phase would have taken at least that second, the median too; with
    // the receiver down, put_all would not have returned at all. The median
    // stays far below it however much a shared machine stalls one request.
    let (up50, down50, slow50) = (p50(&up_latency), p50(&down_latency), p50(&slow_latency));
    eprintln!(
        "client PUT p50/p99: sink up {up50:?}/{:?}, sink down {down50:?}/{:?}, \
         sink slower than its timeout {slow50:?}/{:?}; \
         {total} events delivered, {duplicates} duplicate deliveries; {} requests to the sink",
        p99(&up_latency),
        p99(&down_latency),
        p99(&slow_latency),
        setup.hook.log.records().len()
    );
    assert!(
        slow50 < SINK_TIMEOUT,
        "with the receiver slower than the sink timeout, the median PUT took {slow50:?}: \
         the response waited for the sink"
    );
    assert!(
        down50 < SINK_TIMEOUT,
        "with the receiver down, the median PUT took {down50:?}"
    );
    drop(setup.config);
}

// ---- 3. SIGKILL with the receiver down -------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_and_restart_with_the_receiver_down_loses_nothing() {
    let hook = Hook::down_at(notify_support::closed_port());
    let Some(mut setup) = Setup::start(hook).await else {
        return;
    };
    const K: usize = 40;
    let killed_keys = keys("killed/", K);
    setup.put_all(&killed_keys).await;
    // The response does not wait for the spool (invariant 7): an event is
    // committed by the next group commit, every 5 ms with `fsync =
    // "interval"`. Kill once all of them are in the spool.
    let deadline = Instant::now() + Duration::from_secs(10);
    while setup.proxy.metric("s3tap_events_spooled").await < K as f64 {
        assert!(
            Instant::now() < deadline,
            "the events never reached the spool:\n{}",
            setup.proxy.logs()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    setup.proxy.kill9();
    assert!(setup.hook.log.records().is_empty());

    let restarted = RunningProxy::start(&setup.config);
    setup.hook.up().await;
    let expected: BTreeSet<String> = killed_keys.iter().cloned().collect();
    setup
        .hook
        .wait_delivered("killed/", &expected, Duration::from_secs(20))
        .await;

    // The restarted proxy serves, and its own events arrive too.
    setup.s3 = sdk_client(&restarted.endpoint);
    let after = keys("after/", 5);
    setup.put_all(&after).await;
    setup
        .hook
        .wait_delivered(
            "after/",
            &after.iter().cloned().collect(),
            Duration::from_secs(10),
        )
        .await;

    let (delivered, duplicates) = setup.hook.delivered_under("killed/");
    let mut ids_per_key: HashMap<&String, usize> = HashMap::new();
    for key in delivered.values() {
        *ids_per_key.entry(key).or_default() += 1;
    }
    assert!(
        ids_per_key.values().all(|&n| n == 1),
        "an event keeps its id across the restart: {ids_per_key:?}"
    );
    assert_eq!(delivered.len(), K);
    eprintln!(
        "after SIGKILL and restart: {K} of {K} events delivered, {duplicates} duplicate deliveries\n{}",
        restarted.logs().lines().filter(|l| l.contains("spool")).collect::<Vec<_>>().join("\n")
    );
}
