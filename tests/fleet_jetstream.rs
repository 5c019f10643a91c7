//! Fleet mode on a real 3-node NATS JetStream cluster (issue 13's
//! acceptance): three `s3tap` proxies commit events to a stream with 3
//! replicas, two `s3tap deliver` processes deliver them to a webhook
//! receiver, while a steady load of PUTs and DELETEs runs and the faults
//! hit: a proxy killed with `kill -9` and its spool directory deleted, a
//! deliverer killed mid-batch, a NATS node stopped and started again, the
//! receiver down for a while. At the end every event the clients caused
//! (each PUT and DELETE they got a 2xx for) was delivered at least once.
#![cfg(all(feature = "proxy", feature = "outbox-nats"))]

mod notify_support;
mod signing;
mod support;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use notify_support::{Receiver, Reply, Seen};
use support::binary::{S3tap, S3tapCommand};
use support::nats_cluster::NatsCluster;
use support::upstreams::{S3sFs, UpstreamPeer};
use support::Creds;

const CLIENT_KEY: &str = "S3TAPFLEETCLIENT0001";
const CLIENT_SECRET: &str = "fleet-client-secret-0123456789abcdefghij";
const UPSTREAM_KEY: &str = "S3SFSFLEETUPSTREAM01";
const UPSTREAM_SECRET: &str = "fleet-upstream-secret-0123456789abcdefgh";
const B2_SECRET: &str = "b2-signing-secret-for-the-fleet-test-01";

fn config(upstream: &str, nats: &str, hook: &str, spool: &Path) -> String {
    format!(
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

[outbox]
url = "{nats}"
replicas = 3
stream = "FLEET_TEST"
subject_prefix = "fleet.events"
dead_letter_stream = "FLEET_TEST_DEAD"
dead_letter_subject_prefix = "fleet.dead"
ack_wait_secs = 3

[[sinks]]
type = "webhook"
name = "hook"
url = "{hook}"
format = "b2"
b2_secret = "{B2_SECRET}"
timeout_secs = 2

[[rules]]
name = "changes"
events = ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]
status = "success"
sinks = ["hook"]
"#,
        spool = spool.display(),
    )
}

/// What the clients saw: each request they got a 2xx for, as the event it
/// must cause (event type prefix, key), and each request's latency.
#[derive(Default)]
struct Load {
    caused: Mutex<Vec<(&'static str, String)>>,
    latencies: Mutex<Vec<(Instant, Duration)>>,
    errors: Mutex<u64>,
}

async fn send(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    proxy: SocketAddr,
    method: http::Method,
    path: &str,
    body: &[u8],
) -> Result<u16, String> {
    let request = signing::signed_now(
        method,
        &proxy.to_string(),
        path,
        body,
        (CLIENT_KEY, CLIENT_SECRET),
    )
    .map(Full::new);
    let response = tokio::time::timeout(Duration::from_secs(10), client.request(request))
        .await
        .map_err(|_| "timeout".to_string())?
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let _ = response.into_body().collect().await;
    Ok(status)
}

/// One client: PUT a new key, and every other time DELETE the previous
/// one, on the live proxies in turn, until `stop`.
async fn client_loop(
    n: usize,
    proxies: Arc<Mutex<Vec<Option<SocketAddr>>>>,
    load: Arc<Load>,
    stop: Arc<AtomicBool>,
) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut i = 0usize;
    let mut last_key: Option<String> = None;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let live: Vec<SocketAddr> = proxies.lock().unwrap().iter().flatten().copied().collect();
        let proxy = live[(n + i) % live.len()];
        let (method, key, kind) = match (&last_key, i % 2) {
            (Some(key), 0) => (http::Method::DELETE, key.clone(), "ObjectRemoved"),
            _ => (http::Method::PUT, format!("c{n}/k{i:06}"), "ObjectCreated"),
        };
        let body = if method == http::Method::PUT {
            format!("object {key}").into_bytes()
        } else {
            Vec::new()
        };
        let started = Instant::now();
        match send(
            &client,
            proxy,
            method.clone(),
            &format!("/fleet/{key}"),
            &body,
        )
        .await
        {
            Ok(status) if (200..300).contains(&status) => {
                load.latencies
                    .lock()
                    .unwrap()
                    .push((started, started.elapsed()));
                load.caused.lock().unwrap().push((kind, key.clone()));
                last_key = (method == http::Method::PUT).then_some(key);
            }
            // A proxy killed under the request, or refusing: the client saw
            // no success, so no event is owed.
            _ => {
                *load.errors.lock().unwrap() += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

fn p99(mut latencies: Vec<Duration>) -> Duration {
    if latencies.is_empty() {
        return Duration::ZERO;
    }
    latencies.sort();
    latencies[(latencies.len() * 99 / 100).min(latencies.len() - 1)]
}

/// Delivered events from the receiver's 2xx-answered B2 messages: event id
/// → (type, key), and how many deliveries each id had.
fn delivered(receiver_log: &notify_support::Log) -> (HashMap<String, (String, String)>, usize) {
    let mut events = HashMap::new();
    let mut deliveries = 0;
    for record in receiver_log.records() {
        if !record.status.is_some_and(|s| (200..300).contains(&s)) {
            continue;
        }
        let json: serde_json::Value = serde_json::from_slice(&record.seen.body).unwrap_or_default();
        for event in json["events"].as_array().cloned().unwrap_or_default() {
            deliveries += 1;
            events.insert(
                event["eventId"].as_str().unwrap_or_default().to_owned(),
                (
                    event["eventType"].as_str().unwrap_or_default().to_owned(),
                    event["objectName"].as_str().unwrap_or_default().to_owned(),
                ),
            );
        }
    }
    (events, deliveries)
}

fn start_proxy(dir: &Path, name: &str, toml: &str) -> S3tap {
    let home = dir.join(name);
    std::fs::create_dir_all(&home).unwrap();
    S3tapCommand::new().config(&home, toml).start(&home)
}

fn start_deliverer(dir: &Path, name: &str, toml: &str) -> S3tap {
    let home = dir.join(name);
    std::fs::create_dir_all(&home).unwrap();
    S3tapCommand::new()
        .config(&home, toml)
        .arg("deliver")
        .env("RUST_LOG", "info")
        .start_until_logged(&home, "s3tap deliver is running")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_proxies_two_deliverers_lose_nothing_through_the_faults() {
    let Some(upstream) = S3sFs::start(&Creds::new(UPSTREAM_KEY, UPSTREAM_SECRET)).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = NatsCluster::start(dir.path());
    cluster.wait_jetstream().await;
    std::fs::create_dir_all(upstream.data_dir().join("fleet")).unwrap();

    let receiver_log = Arc::new(notify_support::Log::default());
    // A receiver that takes its time: deliveries are always in flight, so
    // the deliverer killed below dies with a batch in hand (checked below:
    // POSTs it had open are cut, and their events must come from the other).
    let ok: notify_support::Behaviour =
        Arc::new(|_: &Seen| Reply::After(Duration::from_millis(100)));
    let receiver =
        Receiver::start_with_log(notify_support::free(), ok.clone(), receiver_log.clone()).await;
    let receiver_addr = receiver.addr;
    let hook = receiver.url();

    let toml_for = |spool: &Path| config(upstream.endpoint(), &cluster.url(), &hook, spool);
    let mut proxies: Vec<S3tap> = (0..3)
        .map(|i| {
            let spool = dir.path().join(format!("proxy{i}/spool"));
            start_proxy(dir.path(), &format!("proxy{i}"), &toml_for(&spool))
        })
        .collect();
    let deliver_toml = toml_for(&dir.path().join("deliverer-spool"));
    let mut deliverers: Vec<S3tap> = (0..2)
        .map(|i| start_deliverer(dir.path(), &format!("deliverer{i}"), &deliver_toml))
        .collect();

    let addresses = Arc::new(Mutex::new(
        proxies.iter().map(|p| Some(p.addr)).collect::<Vec<_>>(),
    ));
    let load = Arc::new(Load::default());
    let stop = Arc::new(AtomicBool::new(false));
    let load_start = Instant::now();
    let clients: Vec<_> = (0..6)
        .map(|n| {
            tokio::spawn(client_loop(
                n,
                addresses.clone(),
                load.clone(),
                stop.clone(),
            ))
        })
        .collect();

    // Steady load first: the baseline for the latencies.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let faults_start = Instant::now();

    // A proxy dies with its disk.
    addresses.lock().unwrap()[0] = None;
    proxies[0].signal("KILL");
    let _ = proxies[0].wait_exit(Duration::from_secs(10));
    std::fs::remove_dir_all(dir.path().join("proxy0/spool")).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;

    // A deliverer dies mid-batch (under load it always has one in hand).
    // Deliverer 1 is frozen for a moment, so that the POSTs open when
    // deliverer 0 dies are surely deliverer 0's.
    deliverers[1].signal("STOP");
    let frozen = Instant::now();
    let open_from_deliverer_0 = || {
        receiver_log
            .records()
            .iter()
            .any(|r| r.status.is_none() && r.seen.received > frozen)
    };
    assert!(
        notify_support::wait_until(Duration::from_secs(10), open_from_deliverer_0).await,
        "deliverer 0 had nothing to deliver"
    );
    let deliverer_killed = Instant::now();
    deliverers[0].signal("KILL");
    deliverers[1].signal("CONT");
    let _ = deliverers[0].wait_exit(Duration::from_secs(10));
    tokio::time::sleep(Duration::from_secs(1)).await;

    // A NATS node stops, and comes back.
    cluster.stop(2);
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.restart(2);
    tokio::time::sleep(Duration::from_secs(1)).await;

    // The receiver goes away for a while.
    receiver.stop();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let receiver = Receiver::start_with_log(receiver_addr, ok, receiver_log.clone()).await;
    let faults_end = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;

    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    let caused: Vec<(&str, String)> = load.caused.lock().unwrap().clone();
    assert!(
        caused.len() > 200,
        "too little load: {} requests",
        caused.len()
    );

    // Every caused event delivered at least once.
    let expected: HashSet<(String, String)> = caused
        .iter()
        .map(|(kind, key)| (kind.to_string(), key.clone()))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    let missing = loop {
        let (events, _) = delivered(&receiver_log);
        let seen: HashSet<(String, String)> = events
            .values()
            .map(|(kind, key)| {
                let kind = if kind.contains("Created") {
                    "ObjectCreated"
                } else {
                    "ObjectRemoved"
                };
                (kind.to_owned(), key.clone())
            })
            .collect();
        let missing: Vec<_> = expected.difference(&seen).cloned().collect();
        if missing.is_empty() || Instant::now() > deadline {
            break missing;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let (events, deliveries) = delivered(&receiver_log);
    let cut = receiver_log
        .records()
        .iter()
        .filter(|r| r.status.is_none())
        .count();
    // POSTs deliverer 0 had open when it died (the receiver's own stop
    // cuts others, later).
    let cut_by_deliverer_kill = receiver_log
        .records()
        .iter()
        .filter(|r| {
            r.status.is_none() && r.seen.received > frozen && r.seen.received <= deliverer_killed
        })
        .count();
    let latencies = load.latencies.lock().unwrap().clone();
    let before: Vec<Duration> = latencies
        .iter()
        // The first second warms connections and the stream up.
        .filter(|(at, _)| *at >= load_start + Duration::from_secs(1) && *at < faults_start)
        .map(|(_, d)| *d)
        .collect();
    let during: Vec<Duration> = latencies
        .iter()
        .filter(|(at, _)| *at >= faults_start && *at < faults_end)
        .map(|(_, d)| *d)
        .collect();
    eprintln!(
        "fleet: {} events caused by {} successful requests ({} client errors); {} distinct events delivered in {} deliveries ({} duplicates, {} POSTs cut by the kills, {} by the deliverer's); lost {}; PUT/DELETE p99 before the faults {:?} ({} requests), during {:?} ({} requests)",
        expected.len(),
        caused.len(),
        load.errors.lock().unwrap(),
        events.len(),
        deliveries,
        deliveries - events.len(),
        cut,
        cut_by_deliverer_kill,
        missing.len(),
        p99(before.clone()),
        before.len(),
        p99(during.clone()),
        during.len(),
    );
    let logs = |p: &S3tap| p.logs();
    assert!(
        missing.is_empty(),
        "{} caused events never delivered, e.g. {:?}\nproxy1 log:\n{}\ndeliverer1 log:\n{}",
        missing.len(),
        &missing[..missing.len().min(5)],
        logs(&proxies[1]),
        logs(&deliverers[1]),
    );
    assert!(
        cut_by_deliverer_kill > 0,
        "the deliverer was killed with no delivery in flight: the test did not test that"
    );
    // A hang would show here; the figures themselves are the bench's.
    assert!(
        p99(during) < Duration::from_secs(3),
        "clients waited during the faults"
    );
    drop(receiver);
}

/// The stream's message count, read from the cluster.
async fn stream_messages(js: &async_nats::jetstream::Context, stream: &str) -> u64 {
    js.get_stream(stream)
        .await
        .expect("stream")
        .info()
        .await
        .expect("stream info")
        .state
        .messages
}

async fn jetstream(cluster: &NatsCluster) -> async_nats::jetstream::Context {
    let url = cluster.url();
    let servers: Vec<&str> = url.split(',').collect();
    async_nats::jetstream::new(async_nats::connect(servers.as_slice()).await.unwrap())
}

/// A client that has its answer knows its events are in the stream: after
/// each 2xx (a PUT, whose event is held with the head; a DeleteObjects,
/// whose events are read from the result and held with its last bytes) the
/// stream already counts them. No deliverer runs, so nothing else moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_comes_after_its_events_are_in_the_stream() {
    let Some(upstream) = S3sFs::start(&Creds::new(UPSTREAM_KEY, UPSTREAM_SECRET)).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cluster = NatsCluster::start(dir.path());
    cluster.wait_jetstream().await;
    std::fs::create_dir_all(upstream.data_dir().join("fleet")).unwrap();
    let toml = config(
        upstream.endpoint(),
        &cluster.url(),
        // Never called: no deliverer runs.
        "http://127.0.0.1:9/hook",
        &dir.path().join("spool"),
    );
    let proxy = start_proxy(dir.path(), "proxy", &toml);
    let js = jetstream(&cluster).await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();

    for i in 1..=30u64 {
        let path = format!("/fleet/committed/{i:03}");
        let status = send(&client, proxy.addr, http::Method::PUT, &path, b"data")
            .await
            .unwrap();
        assert_eq!(status, 200);
        assert_eq!(
            stream_messages(&js, "FLEET_TEST").await,
            i,
            "PUT {i} was answered before its event was in the stream"
        );
    }

    let mut delete = String::from("<Delete>");
    for i in 1..=5 {
        delete.push_str(&format!("<Object><Key>committed/{i:03}</Key></Object>"));
    }
    delete.push_str("</Delete>");
    let md5 = {
        use base64::Engine as _;
        use md5::Digest as _;
        base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(delete.as_bytes()))
    };
    let authority = proxy.addr.to_string();
    let mut request = http::Request::post(format!("http://{authority}/fleet?delete"))
        .header("host", &authority)
        .header("content-length", delete.len())
        .header("content-md5", md5)
        .body(Bytes::from(delete.clone()))
        .unwrap();
    signing::sign_with(
        &mut request,
        aws_sigv4::http_request::SignableBody::Bytes(delete.as_bytes()),
        &signing::SignOptions {
            access_key: CLIENT_KEY,
            secret: CLIENT_SECRET,
            time: std::time::SystemTime::now(),
            ..signing::SignOptions::default()
        },
    );
    let response = client.request(request.map(Full::new)).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("<Deleted>"));
    assert_eq!(
        stream_messages(&js, "FLEET_TEST").await,
        35,
        "DeleteObjects was answered before its 5 events were in the stream"
    );
}

/// Runs `s3tap <args> --config <file>` to the end: (success, stdout, stderr).
fn s3tap_command(config: &Path, args: &[&str]) -> (bool, String, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_s3tap"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .output()
        .expect("run s3tap");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// One proxy running both roles (`[outbox] deliver = true`); the receiver
/// refuses one object's event for good (400): it goes to the dead-letter
/// stream, which `s3tap dead-letters` lists and redrives once the receiver
/// accepts it; then `s3tap replay` delivers everything again with the same
/// event ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_and_redriven_and_the_log_replays() {
    let Some(upstream) = S3sFs::start(&Creds::new(UPSTREAM_KEY, UPSTREAM_SECRET)).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cluster = NatsCluster::start(dir.path());
    cluster.wait_jetstream().await;
    std::fs::create_dir_all(upstream.data_dir().join("fleet")).unwrap();

    let refuse_poison = Arc::new(AtomicBool::new(true));
    let behaviour: notify_support::Behaviour = {
        let refuse = refuse_poison.clone();
        Arc::new(move |seen: &Seen| {
            let poisoned = seen.keys.iter().flatten().any(|k| k.contains("poison"));
            if poisoned && refuse.load(Ordering::Relaxed) {
                Reply::Status(400)
            } else {
                Reply::Status(200)
            }
        })
    };
    let receiver = Receiver::start(notify_support::free(), behaviour).await;
    let toml = config(
        upstream.endpoint(),
        &cluster.url(),
        &receiver.url(),
        &dir.path().join("spool"),
    )
    .replace("ack_wait_secs = 3", "ack_wait_secs = 3\ndeliver = true")
    .replace(
        "[notify]\n",
        "[admin]\ntoken = \"fleet-admin-token\"\n\n[notify]\n",
    );
    let proxy = start_proxy(dir.path(), "proxy", &toml);
    let config_file = dir.path().join("proxy/s3tap.toml");
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    for key in ["good/1", "good/2", "good/3", "poison/1"] {
        let status = send(
            &client,
            proxy.addr,
            http::Method::PUT,
            &format!("/fleet/{key}"),
            b"x",
        )
        .await
        .unwrap();
        assert_eq!(status, 200);
    }

    // The dead letter shows, with its reason.
    let deadline = Instant::now() + Duration::from_secs(30);
    let listed = loop {
        let (ok, stdout, stderr) = s3tap_command(&config_file, &["dead-letters", "list", "--json"]);
        assert!(ok, "{stderr}");
        let listed: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        if listed["count"] == 1 || Instant::now() > deadline {
            break listed;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(listed["count"], 1, "{listed}\n{}", proxy.logs());
    let letter = &listed["dead_letters"][0];
    assert_eq!(letter["sink"], "hook");
    assert_eq!(letter["key"], "poison/1");
    assert!(
        letter["reason"].as_str().unwrap().contains("400"),
        "{letter}"
    );
    let poison_id = letter["id"].as_str().unwrap().to_owned();
    assert_eq!(receiver.log.acked_ids().len(), 3, "the good events");

    // The proxy's admin API shows the stream's dead letters too.
    let request = http::Request::get(format!("http://{}/admin/dead-letters", proxy.admin))
        .header("authorization", "Bearer fleet-admin-token")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let from_api: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        from_api["dead_letters"][0]["id"], letter["id"],
        "{from_api}"
    );

    // The table form names it too.
    let (ok, table, stderr) = s3tap_command(&config_file, &["dead-letters", "list"]);
    assert!(
        ok && table.contains(&poison_id) && table.contains("1 dead letter"),
        "{table}{stderr}"
    );

    // Fixed receiver, redrive: delivered, and the dead letters are empty.
    refuse_poison.store(false, Ordering::Relaxed);
    let (ok, stdout, stderr) = s3tap_command(
        &config_file,
        &["dead-letters", "redrive", "--sink", "hook", "--json"],
    );
    assert!(ok, "{stderr}");
    let redriven: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(redriven["redriven"], 1, "{redriven}");
    assert!(
        notify_support::wait_until(Duration::from_secs(20), || receiver
            .log
            .acked_ids()
            .contains(&poison_id))
        .await,
        "the redriven event was not delivered\n{}",
        proxy.logs()
    );
    let (_, stdout, _) = s3tap_command(&config_file, &["dead-letters", "list", "--json"]);
    let listed: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(listed["count"], 0, "{listed}");

    // Replay from the log: every event again, same ids (the poisoned one
    // twice: its first publish and its redrive are both in the stream).
    let before: HashMap<String, usize> = receiver.log.acked.lock().unwrap().clone();
    let (ok, stdout, stderr) = s3tap_command(
        &config_file,
        &["replay", "--since", "10m", "--sink", "hook", "--json"],
    );
    assert!(ok, "{stdout}{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["selected"], 5, "{report}");
    assert_eq!(report["delivered"]["hook"], 5, "{report}");
    let after = receiver.log.acked.lock().unwrap().clone();
    assert_eq!(after.len(), 4, "no new ids: {after:?}");
    for (id, count) in &before {
        assert!(after[id] > *count, "{id} was not replayed");
    }
    // A rule filter that matches nothing selects nothing.
    let (ok, stdout, _) = s3tap_command(
        &config_file,
        &["replay", "--since", "10m", "--rule", "other", "--json"],
    );
    assert!(ok);
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["selected"], 0, "{report}");
}

/// The README's `[outbox]` example names every key and loads as written.
#[test]
fn the_readme_outbox_example_loads() {
    let example = support::readme_toml_example(|block| block.contains("[outbox]"));
    for key in [
        "url",
        "replicas",
        "max_age_secs",
        "max_bytes",
        "stream",
        "subject_prefix",
        "dead_letter_stream",
        "dead_letter_subject_prefix",
        "duplicate_window_secs",
        "commit",
        "commit_timeout_ms",
        "ack_wait_secs",
        "deliver",
        "readyz_max_buffer_fill",
    ] {
        assert!(
            example.contains(&format!("{key} =")),
            "{key} is not in the README example"
        );
    }
    use clap::Parser;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s3tap.toml");
    std::fs::write(&path, &example).unwrap();
    let args = s3tap::proxy::Args::parse_from(["s3tap", "--config", path.to_str().unwrap()]);
    let config = s3tap::proxy::Config::load(&args, |_| None)
        .unwrap_or_else(|e| panic!("the README example: {e}"));
    let outbox = config.outbox.expect("[outbox]");
    assert!(outbox.commit && !outbox.deliver);
    assert_eq!(outbox.commit_timeout, Duration::from_millis(500));
    assert_eq!(outbox.ack_wait, Duration::from_secs(30));
    // A misspelt key is refused, as everywhere in the file.
    std::fs::write(&path, example.replace("replicas =", "replica =")).unwrap();
    let error = s3tap::proxy::Config::load(&args, |_| None).unwrap_err();
    assert!(error.to_string().contains("replica"), "{error}");
}

/// With the whole cluster down, changing requests still get their answers
/// (nothing waits for an outbox that is away), their events wait in the
/// local spool, and once that is fuller than `readyz_max_buffer_fill`,
/// `/readyz` says why; when the cluster is back the spool drains into the
/// stream and the proxy is ready again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_outbox_with_a_full_buffer_fails_readyz_then_drains() {
    let Some(upstream) = S3sFs::start(&Creds::new(UPSTREAM_KEY, UPSTREAM_SECRET)).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = NatsCluster::start(dir.path());
    cluster.wait_jetstream().await;
    std::fs::create_dir_all(upstream.data_dir().join("fleet")).unwrap();
    let toml = config(
        upstream.endpoint(),
        &cluster.url(),
        "http://127.0.0.1:9/hook",
        &dir.path().join("spool"),
    )
    .replace("[notify]\n", "[notify]\nspool_max_events = 20\n")
    .replace(
        "replicas = 3",
        "replicas = 1\nreadyz_max_buffer_fill = 0.25",
    );
    let proxy = start_proxy(dir.path(), "proxy", &toml);
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let status = send(
        &client,
        proxy.addr,
        http::Method::PUT,
        "/fleet/before",
        b"x",
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    let (status, body) = proxy.admin_get("/readyz").await;
    assert_eq!(status, 200, "{body}");

    for node in 0..3 {
        cluster.stop(node);
    }
    for i in 0..10 {
        let started = Instant::now();
        let status = send(
            &client,
            proxy.addr,
            http::Method::PUT,
            &format!("/fleet/while-down/{i}"),
            b"x",
        )
        .await
        .unwrap();
        assert_eq!(status, 200);
        eprintln!("PUT {i} with the cluster down: {:?}", started.elapsed());
    }
    let (status, body) = proxy.admin_get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("the outbox is unreachable"), "{body}");

    for node in 0..3 {
        cluster.restart(node);
    }
    let js = jetstream(&cluster).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, _) = proxy.admin_get("/readyz").await;
        let stored = match js.get_stream("FLEET_TEST").await {
            Ok(mut stream) => stream.info().await.map(|i| i.state.messages).unwrap_or(0),
            Err(_) => 0,
        };
        if status == 200 && stored == 11 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not drained: /readyz {status}, {stored} of 11 events in the stream\n{}",
            proxy.logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A receiver that answers `410 Gone` makes a deliverer stop delivering to
/// that sink, and nothing is lost: the events stay in the stream, and a
/// deliverer started once the receiver is back delivers them. Without
/// `[outbox]`, `s3tap deliver` refuses to start and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gone_receiver_parks_the_sink_and_its_events_wait_in_the_stream() {
    let Some(upstream) = S3sFs::start(&Creds::new(UPSTREAM_KEY, UPSTREAM_SECRET)).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cluster = NatsCluster::start(dir.path());
    cluster.wait_jetstream().await;
    std::fs::create_dir_all(upstream.data_dir().join("fleet")).unwrap();
    let gone = Arc::new(AtomicBool::new(true));
    let behaviour: notify_support::Behaviour = {
        let gone = gone.clone();
        Arc::new(move |_: &Seen| {
            if gone.load(Ordering::Relaxed) {
                Reply::Status(410)
            } else {
                Reply::Status(200)
            }
        })
    };
    let receiver = Receiver::start(notify_support::free(), behaviour).await;
    let toml = config(
        upstream.endpoint(),
        &cluster.url(),
        &receiver.url(),
        &dir.path().join("spool"),
    );
    let proxy = start_proxy(dir.path(), "proxy", &toml);
    let mut deliverer = start_deliverer(dir.path(), "deliverer", &toml);
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    for i in 0..5 {
        let path = format!("/fleet/gone/{i}");
        assert_eq!(
            send(&client, proxy.addr, http::Method::PUT, &path, b"x")
                .await
                .unwrap(),
            200
        );
    }
    assert!(
        deliverer.wait_log("410 Gone", Duration::from_secs(20)),
        "{}",
        deliverer.logs()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let asked = receiver.log.records().len();
    assert!(asked >= 1);
    // Parked: nothing more is sent to it, nothing is acknowledged.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(receiver.log.records().len(), asked, "sent to a gone sink");
    assert!(receiver.log.acked_ids().is_empty());

    deliverer.signal("TERM");
    let _ = deliverer.wait_exit(Duration::from_secs(20));
    gone.store(false, Ordering::Relaxed);
    let _deliverer = start_deliverer(dir.path(), "deliverer-again", &toml);
    assert!(
        notify_support::wait_until(Duration::from_secs(30), || receiver.log.acked_ids().len()
            == 5)
        .await,
        "{} of 5 delivered after the restart",
        receiver.log.acked_ids().len()
    );

    let (code, stderr) = S3tapCommand::new()
        .config(
            &dir.path().join("proxy"),
            &toml.replace("[outbox]", "[unused]"),
        )
        .arg("deliver")
        .refused(&dir.path().join("proxy"));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("unknown field"), "{stderr}");
    let plain = toml[..toml.find("[outbox]").unwrap()].to_owned()
        + &toml[toml.find("[[sinks]]").unwrap()..];
    let (code, stderr) = S3tapCommand::new()
        .config(&dir.path().join("proxy"), &plain)
        .arg("deliver")
        .refused(&dir.path().join("proxy"));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("needs an [outbox] section"), "{stderr}");
}
