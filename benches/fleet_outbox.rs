//! Fleet mode's cost, in one run (issue 13's benchmark): one `s3tap` proxy
//! in front of s3s-fs under a mixed load (PUT 1 KiB, GET it, DELETE it) from
//! 32 connections, its PUT and DELETE events routed to a webhook receiver
//! that answers at once (B2 format, one event per POST), in three phases:
//!
//! - `direct`: the proxy delivers from its own spool (no `[outbox]`);
//! - `outbox`: `[outbox]` on a 3-node NATS cluster (3 replicas), commit
//!   before the answer, 2 `s3tap deliver` processes delivering;
//! - `outbox, no commit`: the same with `commit = false` (events published
//!   behind the answer), to show what the commit itself costs.
//!
//! For each: the proxy's req/s, its CPU per request (`/proc/<pid>/stat`),
//! PUT latency p50/p99, and events/s end to end (from the load's start to
//! the receiver having every event the load caused). Ratios are against
//! `direct` in the same run; the goal is req/s ≥ 0.95 × direct with the
//! outbox on.
//!
//! `cargo bench --features proxy --bench fleet_outbox` (needs the test
//! peers: `bash scripts/setup-peers.sh; source .peers/env`, and
//! `nats-server`); knobs `FLEET_SECONDS` (20), `FLEET_CONNECTIONS` (32).

#[path = "support/cpu.rs"]
mod cpu;
#[path = "../tests/notify_support/mod.rs"]
mod notify_support;
#[path = "../tests/signing/mod.rs"]
mod signing;
#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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

const CLIENT: (&str, &str) = (
    "S3TAPBENCHFLEET00001",
    "bench-fleet-client-secret-0123456789ab",
);
const UPSTREAM: (&str, &str) = (
    "S3SFSBENCHFLEET00001",
    "bench-fleet-upstream-secret-0123456789",
);

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn config(upstream: &str, hook: &str, spool: &Path, outbox: Option<(&str, bool)>) -> String {
    let outbox = match outbox {
        Some((url, commit)) => format!(
            "[outbox]\nurl = \"{url}\"\nreplicas = 3\nstream = \"BENCH_{commit}\"\n\
             subject_prefix = \"bench{commit}.events\"\ndead_letter_stream = \"BENCH_DEAD_{commit}\"\n\
             dead_letter_subject_prefix = \"bench{commit}.dead\"\ncommit = {commit}\n"
        ),
        None => String::new(),
    };
    format!(
        r#"
[upstream]
endpoint = "{upstream}"
region = "us-east-1"
credentials = "fixed"
access_key_id = "{}"
secret_access_key = "{}"

[[clients]]
access_key_id = "{}"
secret_access_key = "{}"

[log]
format = "text"

[notify]
spool_dir = "{spool}"

{outbox}
[[sinks]]
type = "webhook"
name = "hook"
url = "{hook}"
format = "b2"

[[rules]]
name = "changes"
events = ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]
status = "success"
sinks = ["hook"]
"#,
        UPSTREAM.0,
        UPSTREAM.1,
        CLIENT.0,
        CLIENT.1,
        spool = spool.display(),
    )
}

#[derive(Default)]
struct Counts {
    requests: AtomicU64,
    events: AtomicU64,
    errors: AtomicU64,
    put_latencies: Mutex<Vec<Duration>>,
}

async fn request(
    client: &HttpClient,
    proxy: &str,
    method: http::Method,
    path: &str,
    body: &[u8],
) -> bool {
    let request = signing::signed_now(method, proxy, path, body, CLIENT).map(Full::new);
    match client.request(request).await {
        Ok(response) => {
            let ok = response.status().is_success();
            let _ = response.into_body().collect().await;
            ok
        }
        Err(_) => false,
    }
}

async fn connection(n: usize, proxy: String, counts: Arc<Counts>, stop: Arc<AtomicBool>) {
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1)
        .build_http::<Full<Bytes>>();
    let body = vec![b'x'; 1024];
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let path = format!("/bench/c{n}/k{i}");
        let started = Instant::now();
        if request(&client, &proxy, http::Method::PUT, &path, &body).await {
            counts.put_latencies.lock().unwrap().push(started.elapsed());
            counts.events.fetch_add(1, Ordering::Relaxed);
        } else {
            counts.errors.fetch_add(1, Ordering::Relaxed);
        }
        let got = request(&client, &proxy, http::Method::GET, &path, b"").await;
        let deleted = request(&client, &proxy, http::Method::DELETE, &path, b"").await;
        if deleted {
            counts.events.fetch_add(1, Ordering::Relaxed);
        }
        counts.requests.fetch_add(3, Ordering::Relaxed);
        if !got || !deleted {
            counts.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

struct Phase {
    name: &'static str,
    req_per_s: f64,
    cpu_us_per_req: f64,
    put_p50: Duration,
    put_p99: Duration,
    events_per_s: f64,
    deliverer_cpu_us_per_event: Option<f64>,
    nats_cpu_us_per_event: Option<f64>,
    errors: u64,
}

async fn phase(
    name: &'static str,
    dir: &Path,
    upstream: &S3sFs,
    cluster: Option<(&NatsCluster, bool)>,
    seconds: u64,
    connections: usize,
) -> Phase {
    let receiver = Receiver::start(
        notify_support::free(),
        Arc::new(|_: &Seen| Reply::Status(200)),
    )
    .await;
    let home = dir.join(name.replace([' ', ','], "-"));
    std::fs::create_dir_all(&home).unwrap();
    let url = cluster.map(|(c, commit)| (c.url(), commit));
    let toml = config(
        upstream.endpoint(),
        &receiver.url(),
        &home.join("spool"),
        url.as_ref().map(|(u, commit)| (u.as_str(), *commit)),
    );
    let proxy = S3tapCommand::new()
        .config(&home, &toml)
        .env("RUST_LOG", "warn,s3tap=info")
        .start(&home);
    let deliverers: Vec<S3tap> = if cluster.is_some() {
        (0..2)
            .map(|i| {
                let d = home.join(format!("deliverer{i}"));
                std::fs::create_dir_all(&d).unwrap();
                S3tapCommand::new()
                    .config(&d, &toml)
                    .arg("deliver")
                    .env("RUST_LOG", "info")
                    .start_until_logged(&d, "s3tap deliver is running")
            })
            .collect()
    } else {
        Vec::new()
    };
    // For `perf record -g -p <pid>` from another shell.
    println!("{name}: proxy pid {}", proxy.pid());
    let counts = Arc::new(Counts::default());
    let stop = Arc::new(AtomicBool::new(false));
    let cpu_before = cpu::cpu_seconds(proxy.pid());
    let deliverers_before: f64 = deliverers.iter().map(|d| cpu::cpu_seconds(d.pid())).sum();
    let nats_cpu = || -> f64 {
        cluster
            .map(|(c, _)| {
                c.nodes
                    .iter()
                    .filter_map(|n| n.pid())
                    .map(cpu::cpu_seconds)
                    .sum()
            })
            .unwrap_or(0.0)
    };
    let nats_before = nats_cpu();
    let started = Instant::now();
    let tasks: Vec<_> = (0..connections)
        .map(|n| {
            tokio::spawn(connection(
                n,
                proxy.addr.to_string(),
                counts.clone(),
                stop.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    let load_time = started.elapsed();
    let cpu = cpu::cpu_seconds(proxy.pid()) - cpu_before;
    let requests = counts.requests.load(Ordering::Relaxed);
    let events = counts.events.load(Ordering::Relaxed) as usize;
    let all_delivered = notify_support::wait_until(Duration::from_secs(300), || {
        receiver.log.acked_ids().len() >= events
    })
    .await;
    let delivered_after = started.elapsed();
    assert!(
        all_delivered,
        "{name}: {} of {events} events delivered",
        receiver.log.acked_ids().len()
    );
    let deliverer_cpu: f64 = deliverers
        .iter()
        .map(|d| cpu::cpu_seconds(d.pid()))
        .sum::<f64>()
        - deliverers_before;
    let nats_used = nats_cpu() - nats_before;
    let mut latencies = counts.put_latencies.lock().unwrap().clone();
    latencies.sort();
    Phase {
        name,
        req_per_s: requests as f64 / load_time.as_secs_f64(),
        cpu_us_per_req: cpu * 1e6 / requests.max(1) as f64,
        put_p50: percentile(&latencies, 50),
        put_p99: percentile(&latencies, 99),
        events_per_s: events as f64 / delivered_after.as_secs_f64(),
        deliverer_cpu_us_per_event: (!deliverers.is_empty())
            .then(|| deliverer_cpu * 1e6 / events.max(1) as f64),
        nats_cpu_us_per_event: cluster.map(|_| nats_used * 1e6 / events.max(1) as f64),
        errors: counts.errors.load(Ordering::Relaxed),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let seconds = env_or("FLEET_SECONDS", 20);
    let connections = env_or("FLEET_CONNECTIONS", 32) as usize;
    let upstream = S3sFs::start(&Creds::new(UPSTREAM.0, UPSTREAM.1))
        .await
        .expect("s3s-fs: run `bash scripts/setup-peers.sh` and `source .peers/env` first");
    std::fs::create_dir_all(upstream.data_dir().join("bench")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cluster = NatsCluster::start(&dir.path().join("nats"));
    cluster.wait_jetstream().await;
    println!(
        "fleet_outbox: {connections} connections, {seconds} s per phase, mixed PUT 1 KiB / GET / DELETE, \
         s3s-fs upstream, B2 webhook receiver answering at once, 3-node NATS cluster (R3)"
    );
    let mut phases = Vec::new();
    // `FLEET_PHASES=outbox` runs one phase alone (to profile it); the
    // ratios need `direct` first.
    let only = std::env::var("FLEET_PHASES").ok();
    for (name, mode) in [
        ("direct", None),
        ("outbox", Some(true)),
        ("outbox, no commit", Some(false)),
    ] {
        if only
            .as_deref()
            .is_some_and(|only| !only.split(',').any(|o| o == name))
        {
            continue;
        }
        let cluster = mode.map(|commit| (&cluster, commit));
        phases.push(phase(name, dir.path(), &upstream, cluster, seconds, connections).await);
    }
    let base = &phases[0];
    println!(
        "\n| phase | req/s | × direct | proxy CPU µs/req | × direct | PUT p50 | PUT p99 | events/s end to end | deliverers CPU µs/event | NATS CPU µs/event | errors |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for p in &phases {
        println!(
            "| {} | {:.0} | {:.2} | {:.0} | {:.2} | {:.2} ms | {:.2} ms | {:.0} | {} | {} | {} |",
            p.name,
            p.req_per_s,
            p.req_per_s / base.req_per_s,
            p.cpu_us_per_req,
            p.cpu_us_per_req / base.cpu_us_per_req,
            p.put_p50.as_secs_f64() * 1e3,
            p.put_p99.as_secs_f64() * 1e3,
            p.events_per_s,
            p.deliverer_cpu_us_per_event
                .map_or("-".to_owned(), |c| format!("{c:.0}")),
            p.nats_cpu_us_per_event
                .map_or("-".to_owned(), |c| format!("{c:.0}")),
            p.errors,
        );
    }
    let (Some(outbox), true) = (phases.get(1), base.name == "direct") else {
        return;
    };
    let ratio = outbox.req_per_s / base.req_per_s;
    println!(
        "\nPUT latency the commit adds: p50 {:+.2} ms, p99 {:+.2} ms (outbox vs direct)",
        (outbox.put_p50.as_secs_f64() - base.put_p50.as_secs_f64()) * 1e3,
        (outbox.put_p99.as_secs_f64() - base.put_p99.as_secs_f64()) * 1e3,
    );
    println!(
        "goal req/s with the outbox ≥ 0.95 × direct: {:.2} — {}",
        ratio,
        if ratio >= 0.95 { "met" } else { "MISSED" }
    );
    // On one machine the cluster and the deliverers take cores from the
    // proxy; the proxy's own CPU per request is the figure that carries
    // over to a fleet whose engine runs elsewhere.
    println!(
        "the proxy's own CPU per request with the outbox: {:.2} × direct ({:.0} vs {:.0} µs), i.e. {:.2} × direct's req/s on equal cores",
        outbox.cpu_us_per_req / base.cpu_us_per_req,
        outbox.cpu_us_per_req,
        base.cpu_us_per_req,
        base.cpu_us_per_req / outbox.cpu_us_per_req,
    );
}
