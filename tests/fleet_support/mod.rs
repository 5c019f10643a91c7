//! What the fleet tests share, whatever the outbox engine: the fleet's
//! configuration around an `[outbox]` section, the client load and what it
//! caused, the receiver's view of what was delivered, the processes, and
//! the fault run of issue 13's acceptance (`lose_nothing_through_the_faults`).
//! Each fleet test file brings `mod notify_support; mod signing; mod
//! support;` beside it.
#![allow(dead_code)]

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

use crate::notify_support::{self, Receiver, Reply, Seen};
use crate::signing;
use crate::support::binary::{S3tap, S3tapCommand};

pub const CLIENT_KEY: &str = "S3TAPFLEETCLIENT0001";
pub const CLIENT_SECRET: &str = "fleet-client-secret-0123456789abcdefghij";
pub const UPSTREAM_KEY: &str = "S3SFSFLEETUPSTREAM01";
pub const UPSTREAM_SECRET: &str = "fleet-upstream-secret-0123456789abcdefgh";
const B2_SECRET: &str = "b2-signing-secret-for-the-fleet-test-01";

/// A fleet member's configuration: s3s-fs upstream, one client, the
/// `[outbox]` section given, a B2 webhook sink and a rule for changes.
pub fn config(upstream: &str, outbox: &str, hook: &str, spool: &Path) -> String {
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

{outbox}

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

pub type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

pub fn http_client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>()
}

/// What the clients saw: each request they got a 2xx for, as the event it
/// must cause (event type prefix, key), and each request's latency.
#[derive(Default)]
pub struct Load {
    pub caused: Mutex<Vec<(&'static str, String)>>,
    pub latencies: Mutex<Vec<(Instant, Duration)>>,
    pub errors: Mutex<u64>,
}

pub async fn send(
    client: &HttpClient,
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
pub async fn client_loop(
    n: usize,
    proxies: Arc<Mutex<Vec<Option<SocketAddr>>>>,
    load: Arc<Load>,
    stop: Arc<AtomicBool>,
) {
    let client = http_client();
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

pub fn p99(mut latencies: Vec<Duration>) -> Duration {
    if latencies.is_empty() {
        return Duration::ZERO;
    }
    latencies.sort();
    latencies[(latencies.len() * 99 / 100).min(latencies.len() - 1)]
}

/// Delivered events from the receiver's 2xx-answered B2 messages: event id
/// → (type, key), and how many deliveries each id had.
pub fn delivered(receiver_log: &notify_support::Log) -> (HashMap<String, (String, String)>, usize) {
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

pub fn start_proxy(dir: &Path, name: &str, toml: &str) -> S3tap {
    let home = dir.join(name);
    std::fs::create_dir_all(&home).unwrap();
    S3tapCommand::new().config(&home, toml).start(&home)
}

pub fn start_deliverer(dir: &Path, name: &str, toml: &str) -> S3tap {
    let home = dir.join(name);
    std::fs::create_dir_all(&home).unwrap();
    S3tapCommand::new()
        .config(&home, toml)
        .arg("deliver")
        .env("RUST_LOG", "info")
        .start_until_logged(&home, "s3tap deliver is running")
}

/// Runs `s3tap <args> --config <file>` to the end: (success, stdout, stderr).
pub fn s3tap_command(config: &Path, args: &[&str]) -> (bool, String, String) {
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

/// Issue 13's acceptance run, on the engine `outbox` configures: 3 proxies
/// and 2 deliverers under a steady load of PUTs and DELETEs while a proxy
/// is killed with `kill -9` and its spool deleted, a deliverer is killed
/// mid-batch, the engine loses a node (`engine_fault(true)`, then
/// `engine_fault(false)` 3 s later) and the receiver is down for 3 s. Every
/// event the clients got a 2xx for must be delivered; prints the figures
/// as `<engine>: ...`.
pub async fn lose_nothing_through_the_faults(
    engine: &str,
    dir: &Path,
    upstream: &str,
    outbox: &str,
    mut engine_fault: impl FnMut(bool),
) {
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

    let toml_for = |spool: &Path| config(upstream, outbox, &hook, spool);
    let mut proxies: Vec<S3tap> = (0..3)
        .map(|i| {
            let spool = dir.join(format!("proxy{i}/spool"));
            start_proxy(dir, &format!("proxy{i}"), &toml_for(&spool))
        })
        .collect();
    let deliver_toml = toml_for(&dir.join("deliverer-spool"));
    let mut deliverers: Vec<S3tap> = (0..2)
        .map(|i| start_deliverer(dir, &format!("deliverer{i}"), &deliver_toml))
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
    std::fs::remove_dir_all(dir.join("proxy0/spool")).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;

    // A deliverer dies mid-batch. Deliverer 1 is frozen for a moment, so
    // that the POSTs open when deliverer 0 dies are surely deliverer 0's.
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

    // The engine loses a node, and gets it back.
    engine_fault(true);
    tokio::time::sleep(Duration::from_secs(3)).await;
    engine_fault(false);
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
        // The first second warms connections and the log up.
        .filter(|(at, _)| *at >= load_start + Duration::from_secs(1) && *at < faults_start)
        .map(|(_, d)| *d)
        .collect();
    let during: Vec<Duration> = latencies
        .iter()
        .filter(|(at, _)| *at >= faults_start && *at < faults_end)
        .map(|(_, d)| *d)
        .collect();
    eprintln!(
        "{engine}: {} events caused by {} successful requests ({} client errors); {} distinct events delivered in {} deliveries ({} duplicates, {} POSTs cut by the kills, {} by the deliverer's); lost {}; PUT/DELETE p99 before the faults {:?} ({} requests), during {:?} ({} requests)",
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

/// A client that has its answer knows its events are in the log: after
/// each 2xx (30 PUTs, whose events are held with the head; a DeleteObjects
/// of 5 keys, whose events are read from the result and held with its
/// last bytes) `count` (the log's messages, read from the engine) already
/// counts them. `proxy` runs no deliverer, so nothing else moves.
/// `count_batch` counts after the DeleteObjects: the same as `count`
/// unless the engine miscounts a batch that way (see `fleet_kafka.rs`).
pub async fn an_answer_comes_after_its_events<F, Fut, G, Gut>(
    proxy: SocketAddr,
    what: &str,
    count: F,
    count_batch: G,
) where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = u64>,
    G: Fn() -> Gut,
    Gut: std::future::Future<Output = u64>,
{
    let client = http_client();
    for i in 1..=30u64 {
        let path = format!("/fleet/committed/{i:03}");
        let status = send(&client, proxy, http::Method::PUT, &path, b"data")
            .await
            .unwrap();
        assert_eq!(status, 200);
        assert_eq!(
            count().await,
            i,
            "PUT {i} was answered before its event was in the {what}"
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
    let authority = proxy.to_string();
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
        count_batch().await,
        35,
        "DeleteObjects was answered before its 5 events were in the {what}"
    );
}

/// One proxy running both roles (`[outbox] deliver = true` added to
/// `outbox`); the receiver refuses one object's event for good (400): it
/// goes to the dead letters, which `s3tap dead-letters` lists and redrives
/// once the receiver accepts it; then `s3tap replay` delivers everything
/// again with the same event ids; last, a new dead letter is purged.
pub async fn dead_letters_are_listed_and_redriven_and_the_log_replays(
    dir: &Path,
    upstream: &str,
    outbox: &str,
) {
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
    let outbox = format!("{outbox}\ndeliver = true");
    let toml = config(upstream, &outbox, &receiver.url(), &dir.join("spool")).replace(
        "[notify]\n",
        "[admin]\ntoken = \"fleet-admin-token\"\n\n[notify]\n",
    );
    let proxy = start_proxy(dir, "proxy", &toml);
    let config_file = dir.join("proxy/s3tap.toml");
    let client = http_client();
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

    // The proxy's admin API shows the log's dead letters too.
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
    // twice: its first publish and its redrive are both in the log).
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

    // Purge: a new dead letter, purged, is no longer listed.
    refuse_poison.store(true, Ordering::Relaxed);
    let status = send(
        &client,
        proxy.addr,
        http::Method::PUT,
        "/fleet/poison/2",
        b"x",
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, stdout, _) = s3tap_command(&config_file, &["dead-letters", "list", "--json"]);
        let listed: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        if listed["count"] == 1 {
            assert_eq!(listed["dead_letters"][0]["key"], "poison/2", "{listed}");
            break;
        }
        assert!(Instant::now() < deadline, "no second dead letter: {listed}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (ok, stdout, stderr) = s3tap_command(
        &config_file,
        &["dead-letters", "purge", "--sink", "hook", "--json"],
    );
    assert!(ok, "{stderr}");
    let purged: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(purged["purged"], 1, "{purged}");
    let (_, stdout, _) = s3tap_command(&config_file, &["dead-letters", "list", "--json"]);
    let listed: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(listed["count"], 0, "purged but still listed: {listed}");
}
