//! Soak: a bounded load run through the full stack (the `s3tap` binary in its
//! own process: the notify, verify and re-sign layers in front of the
//! embedded S3 store, with a webhook sink to a loopback receiver in this
//! process): mixed PUT/GET/LIST/DELETE from many concurrent clients for
//! `SOAK_SECONDS` (default 600), loopback only, then it stops by itself and
//! reports errors, the proxy process's resident memory and open file
//! descriptors over time, and whether every event was delivered.
//!
//! The proxy runs as a separate process so that its memory is measured
//! alone: the load generator and the receiver (which keeps every event id it
//! sees) would otherwise grow the figures with the harness's own state.
//!
//! `cargo bench --features proxy --bench soak`

#[path = "../tests/notify_support/mod.rs"]
mod notify_support;
#[path = "../tests/signing/mod.rs"]
mod signing;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use signing::*;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn status_field(pid: &str, name: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn open_fds(pid: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
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
    signed_now(
        method,
        endpoint.trim_start_matches("http://"),
        path_and_query,
        payload,
        (ACCESS_KEY, SECRET),
    )
    .map(Full::new)
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
        // SOAK_NOTIFY=off routes no event anywhere (one rule matching no event
        // type), to tell the notification path's memory from the rest.
        let notify = std::env::var("SOAK_NOTIFY").map_or(true, |v| v != "off");
        let rule_events = if notify {
            r#"["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]"#
        } else {
            r#"["s3:ObjectRestore:*"]"#
        };
        std::fs::write(
            &config_path,
            format!(
                "[notify]\nspool_dir = \"{spool}\"\n\n[[sinks]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \"{url}\"\nformat = \"b2\"\nb2_secret = \"soak\"\n\n[[rules]]\nname = \"changes\"\nevents = {rule_events}\nsinks = [\"hook\"]\n",
                spool = dir.path().join("spool").display(),
                url = receiver.url(),
            ),
        )
        .unwrap();
        let listen = notify_support::closed_port().to_string();
        let admin = notify_support::closed_port().to_string();
        // SOAK_PROXY_WRAPPER runs the proxy under a tool (for example
        // `heaptrack -o /tmp/soak`); the RSS figures are then the tool's.
        let wrapper = std::env::var("SOAK_PROXY_WRAPPER").unwrap_or_default();
        let mut command = wrapper.split_whitespace().chain([env!("CARGO_BIN_EXE_s3tap")]);
        let mut proxy = std::process::Command::new(command.next().unwrap())
            .args(command)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", "warn")
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .arg("--config")
            .arg(&config_path)
            .args(["--listen", &listen, "--admin-listen", &admin, "--data-dir"])
            .arg(dir.path().join("data"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start the s3tap binary");
        let pid = proxy.id().to_string();
        let ready_url: http::Uri = format!("http://{admin}/readyz").parse().unwrap();
        let probe: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let waiting = Instant::now();
        loop {
            match probe.get(ready_url.clone()).await {
                Ok(response) if response.status().is_success() => break,
                _ if waiting.elapsed() > Duration::from_secs(30) => panic!("s3tap did not become ready"),
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        let endpoint = format!("http://{listen}");

        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let response = client.request(signed(http::Method::PUT, &endpoint, "/soak", b"")).await.unwrap();
        assert!(response.status().is_success(), "create bucket: {}", response.status());

        let counters = Arc::new(Counters::default());
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let started = Instant::now();
        let mut samples: Vec<(u64, u64, usize, u64)> = Vec::new();
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
            let pid = pid.clone();
            let receiver_log = receiver.log.clone();
            let interval = Duration::from_secs((seconds / 20).max(1));
            async move {
                let sample = || {
                    (
                        started.elapsed().as_secs(),
                        status_field(&pid, "VmRSS:"),
                        open_fds(&pid),
                        status_field("self", "VmRSS:"),
                    )
                };
                let mut samples = Vec::new();
                while Instant::now() < deadline {
                    // The receiver keeps every message it got; only the ids
                    // matter here, so its copies of the bodies are dropped to
                    // keep the harness's own memory out of the figures.
                    receiver_log.records.lock().unwrap().clear();
                    samples.push(sample());
                    tokio::time::sleep(interval).await;
                }
                samples.push(sample());
                samples
            }
        };
        samples.extend(sampler.await);
        for task in tasks {
            task.await.unwrap();
        }
        let load_seconds = started.elapsed().as_secs_f64();
        let expected = if notify {
            counters.puts.load(Ordering::Relaxed) + counters.deletes.load(Ordering::Relaxed)
        } else {
            0
        };
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
        let proxy_peak = status_field(&pid, "VmHWM:");
        // SIGTERM: the proxy drains its dispatcher and must exit cleanly.
        let _ = std::process::Command::new("kill").args(["-TERM", &pid]).status();
        let exit = proxy.wait().expect("wait for s3tap");
        println!("\n| t (s) | proxy RSS (MiB) | proxy open fds | harness RSS (MiB) |\n|---|---|---|---|");
        for (t, rss, fds, harness) in &samples {
            println!("| {t} | {:.1} | {fds} | {:.1} |", *rss as f64 / 1024.0, *harness as f64 / 1024.0);
        }
        println!("\nproxy peak RSS (VmHWM): {:.1} MiB; exit after SIGTERM: {exit}", proxy_peak as f64 / 1024.0);
    });
}
