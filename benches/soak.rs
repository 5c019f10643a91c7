//! Soak: a bounded load run through the full stack (the proxy's library: the
//! notify, verify and re-sign layers in front of the embedded S3 store, with
//! a webhook sink to a loopback receiver): mixed PUT/GET/LIST/DELETE from many
//! concurrent clients for `SOAK_SECONDS` (default 600), loopback only, then
//! it stops by itself and reports errors, resident memory and open file
//! descriptors at start and end, and whether every event was delivered.
//!
//! `cargo bench --features proxy --bench soak`

#[path = "../tests/notify_support/mod.rs"]
mod notify_support;
#[path = "../tests/signing/mod.rs"]
mod signing;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use aws_sigv4::http_request::SignableBody;
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use s3tap::proxy::{Args, Config, Proxy};
use signing::*;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn status_field(name: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

#[derive(Default)]
struct Counters {
    puts: AtomicU64,
    gets: AtomicU64,
    lists: AtomicU64,
    deletes: AtomicU64,
    errors: AtomicU64,
    mismatches: AtomicU64,
}

fn signed(
    method: http::Method,
    endpoint: &str,
    path_and_query: &str,
    payload: &[u8],
) -> http::Request<Full<Bytes>> {
    let mut request = http::Request::builder()
        .method(method)
        .uri(format!("{endpoint}{path_and_query}"))
        .header("host", endpoint.trim_start_matches("http://"))
        .header("content-length", payload.len())
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
    request.map(Full::new)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let seconds = env_number("SOAK_SECONDS", 600);
        let clients = env_number("SOAK_CLIENTS", 32) as usize;
        let receiver = notify_support::Receiver::ok().await;
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("s3tap.toml");
        std::fs::write(
            &config_path,
            format!(
                "[notify]\nspool_dir = \"{spool}\"\n\n[[sinks]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \"{url}\"\nformat = \"b2\"\nb2_secret = \"soak\"\n\n[[rules]]\nname = \"changes\"\nevents = [\"s3:ObjectCreated:*\", \"s3:ObjectRemoved:*\"]\nsinks = [\"hook\"]\n",
                spool = dir.path().join("spool").display(),
                url = receiver.url(),
            ),
        )
        .unwrap();
        let args = Args::parse_from([
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
        let config = Config::load(&args, |name| match name {
            "AWS_ACCESS_KEY_ID" => Some(ACCESS_KEY.to_owned()),
            "AWS_SECRET_ACCESS_KEY" => Some(SECRET.to_owned()),
            _ => None,
        })
        .unwrap();
        let proxy = Proxy::bind(config).await.unwrap();
        let endpoint = format!("http://{}", proxy.local_addr());
        tokio::spawn(proxy.serve(std::future::pending()));

        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let response = client.request(signed(http::Method::PUT, &endpoint, "/soak", b"")).await.unwrap();
        assert!(response.status().is_success(), "create bucket: {}", response.status());

        let counters = Arc::new(Counters::default());
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let started = Instant::now();
        let mut samples: Vec<(u64, u64, usize)> = Vec::new();
        let mut tasks = Vec::new();
        for worker in 0..clients {
            let client = client.clone();
            let endpoint = endpoint.clone();
            let counters = counters.clone();
            tasks.push(tokio::spawn(async move {
                let mut round = 0u64;
                while Instant::now() < deadline {
                    round += 1;
                    let key = format!("/soak/w{worker}/object-{round}.bin");
                    let payload: Vec<u8> = (0..(1024 + (round % 7) * 1000)).map(|i| (i as u8) ^ (worker as u8)).collect();
                    let mut ok = true;
                    for (method, path, body) in [
                        (http::Method::PUT, key.clone(), payload.clone()),
                        (http::Method::GET, key.clone(), Vec::new()),
                        (http::Method::GET, format!("/soak?list-type=2&prefix=w{worker}/"), Vec::new()),
                        (http::Method::DELETE, key.clone(), Vec::new()),
                    ] {
                        let is_get_object = method == http::Method::GET && !path.contains('?');
                        let counter = match (&method, path.contains('?')) {
                            (&http::Method::PUT, _) => &counters.puts,
                            (&http::Method::DELETE, _) => &counters.deletes,
                            (_, true) => &counters.lists,
                            _ => &counters.gets,
                        };
                        match client.request(signed(method, &endpoint, &path, &body)).await {
                            Ok(response) if response.status().is_success() => {
                                let bytes = response.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
                                if is_get_object && bytes[..] != payload[..] {
                                    counters.mismatches.fetch_add(1, Ordering::Relaxed);
                                }
                                counter.fetch_add(1, Ordering::Relaxed);
                            }
                            _ => {
                                counters.errors.fetch_add(1, Ordering::Relaxed);
                                ok = false;
                            }
                        }
                        if !ok {
                            break;
                        }
                    }
                }
            }));
        }
        let sampler = {
            let receiver_log = receiver.log.clone();
            let interval = Duration::from_secs((seconds / 20).max(1));
            async move {
                let mut samples = Vec::new();
                while Instant::now() < deadline {
                    // The receiver keeps every message it got; only the ids
                    // matter here, so its copies of the bodies are dropped to
                    // keep the harness's own memory out of the figures.
                    receiver_log.records.lock().unwrap().clear();
                    samples.push((started.elapsed().as_secs(), status_field("VmRSS:"), open_fds()));
                    tokio::time::sleep(interval).await;
                }
                samples.push((started.elapsed().as_secs(), status_field("VmRSS:"), open_fds()));
                samples
            }
        };
        samples.extend(sampler.await);
        for task in tasks {
            task.await.unwrap();
        }
        let load_seconds = started.elapsed().as_secs_f64();
        let expected = counters.puts.load(Ordering::Relaxed) + counters.deletes.load(Ordering::Relaxed);
        let delivery_started = Instant::now();
        while (receiver.log.acked_ids().len() as u64) < expected && delivery_started.elapsed() < Duration::from_secs(120) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let delivered = receiver.log.acked_ids().len() as u64;
        let total = counters.puts.load(Ordering::Relaxed)
            + counters.gets.load(Ordering::Relaxed)
            + counters.lists.load(Ordering::Relaxed)
            + counters.deletes.load(Ordering::Relaxed);
        println!("## Soak ({seconds} s, {clients} concurrent clients, mixed PUT/GET/LIST/DELETE, notifications to a webhook)\n");
        println!("| requests | req/s | errors | GET mismatches | events expected | events delivered (unique ids) | catch-up after load |");
        println!("|---|---|---|---|---|---|---|");
        println!(
            "| {total} | {:.0} | {} | {} | {expected} | {delivered} | {:.1} s |",
            total as f64 / load_seconds,
            counters.errors.load(Ordering::Relaxed),
            counters.mismatches.load(Ordering::Relaxed),
            delivery_started.elapsed().as_secs_f64()
        );
        println!("\n| t (s) | RSS (MiB) | open fds |\n|---|---|---|");
        for (t, rss, fds) in &samples {
            println!("| {t} | {:.1} | {fds} |", *rss as f64 / 1024.0);
        }
    });
}
