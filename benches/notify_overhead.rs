//! What event notifications cost the proxy: requests/s and latency of small
//! PUTs through the `s3tap` proxy (the binary's library: `Config::load`,
//! `Proxy::bind`, `serve`) with notifications on and off, in one run.
//!
//! - **off**: no event reaches any sink (one `[[rules]]` entry matching no
//!   event type, a JSON-lines sink to `/dev/null` that never gets anything).
//!   The proxy has no switch that removes `NotifyLayer` itself, so its
//!   classification of each request is in both rows.
//! - **on**: every PutObject becomes an `s3:ObjectCreated:Put` event routed
//!   to a `[[sinks]]` webhook (B2 format, signed) to a loopback receiver,
//!   through the dispatcher's redb spool (`fsync = "interval"`, group commit
//!   every 5 ms).
//!
//! The two configurations alternate for `NOTIFY_ROUNDS` rounds (default 3) of
//! `NOTIFY_SECONDS` each (default 5), so drift in the shared machine's load
//! hits both; many short rounds (`NOTIFY_ROUNDS=40 NOTIFY_SECONDS=2`) give a
//! tighter figure than a few long ones on a noisy machine. Everything runs
//! in this process on loopback: the upstream (it drains PUTs and answers
//! 200; it checks no signature), both proxies, the webhook receiver and the
//! load generator (32 keep-alive connections replaying one signed request).
//!
//! The webhook sends up to `NOTIFY_B2_BATCH` events per POST (default 50,
//! what this bench measured before B2's own default of 1 became the sink's:
//! with one event per POST the sink's single in-flight request is what
//! limits it, which issue 14's webhook goal is about).
//!
//! `cargo bench --bench notify_overhead --features proxy`

#[path = "../tests/signing/mod.rs"]
mod signing;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use s3tap::notify::Dispatcher;
use s3tap::proxy::{Args, Config, Proxy};
use signing::*;

/// The allocator the `s3tap` binary ships with (src/bin/s3tap.rs), so the
/// proxy here allocates as the one operators run.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const SMALL: usize = 4096;
const CONNECTIONS: usize = 32;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The events in one B2 Event Notifications message: a full parse of the
/// JSON that builds nothing but the count. The receiver stands in for a
/// service on another machine; here it shares the proxy's two cores, so it
/// should not spend more than a real one would need to accept the message.
fn count_b2_events(body: &[u8]) -> u64 {
    #[derive(serde::Deserialize)]
    struct Message {
        events: Vec<serde::de::IgnoredAny>,
    }
    serde_json::from_slice::<Message>(body).map_or(0, |m| m.events.len() as u64)
}

/// Serves `handler` on 127.0.0.1 with HTTP/1.1 keep-alive; counts requests.
async fn serve(events: Arc<AtomicU64>, count_events: bool) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let events = events.clone();
            let service =
                hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                    let events = events.clone();
                    async move {
                        let body = request.into_body().collect().await.map(|b| b.to_bytes());
                        if count_events {
                            if let Ok(body) = body {
                                events.fetch_add(count_b2_events(&body), Ordering::Relaxed);
                            }
                        }
                        Ok::<_, Infallible>(
                            Response::builder()
                                .header("etag", "\"e\"")
                                .body(Full::new(Bytes::new()))
                                .unwrap(),
                        )
                    }
                });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    address
}

/// Starts the proxy with `notify` (the TOML after `[upstream]`).
async fn proxy(
    dir: &Path,
    name: &str,
    upstream: SocketAddr,
    notify: &str,
) -> (SocketAddr, Dispatcher) {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            r#"
[upstream]
endpoint = "http://{upstream}"
region = "{REGION}"
credentials = "fixed"
access_key_id = "UPSTREAMKEY"
secret_access_key = "upstream-secret"

[[clients]]
access_key_id = "{ACCESS_KEY}"
secret_access_key = "{SECRET}"
{notify}
"#
        ),
    )
    .unwrap();
    let args = Args {
        config: Some(path),
        listen: Some("127.0.0.1:0".into()),
        admin_listen: Some("127.0.0.1:0".into()),
        ..Args::default()
    };
    let config = Config::load(&args, |_| None).expect("bench config");
    let proxy = Proxy::bind(config).await.expect("bind the proxy");
    let address = proxy.local_addr();
    let dispatcher = proxy.dispatcher().clone();
    tokio::spawn(proxy.serve(std::future::pending()));
    (address, dispatcher)
}

struct Load {
    requests: u64,
    errors: u64,
    seconds: f64,
    latencies_us: Vec<u32>,
}

impl Load {
    fn rps(&self) -> f64 {
        self.requests as f64 / self.seconds
    }
    fn percentile(&mut self, p: f64) -> f64 {
        self.latencies_us.sort_unstable();
        let index = ((self.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        self.latencies_us.get(index).copied().unwrap_or(0) as f64 / 1000.0
    }
}

/// `CONNECTIONS` keep-alive connections replay `template` for `seconds`.
async fn load(address: SocketAddr, template: &Request<Bytes>, seconds: u64) -> Load {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let path = template.uri().path_and_query().unwrap().as_str().to_owned();
        let headers = template.headers().clone();
        let body = template.body().clone();
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(address).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .unwrap();
            tokio::spawn(connection);
            let (mut count, mut errors, mut latencies) = (0u64, 0u64, Vec::with_capacity(100_000));
            while Instant::now() < deadline {
                let mut request = Request::builder()
                    .method(http::Method::PUT)
                    .uri(path.as_str())
                    .body(Full::new(body.clone()))
                    .unwrap();
                *request.headers_mut() = headers.clone();
                let sent = Instant::now();
                if sender.ready().await.is_err() {
                    errors += 1;
                    break;
                }
                match sender.send_request(request).await {
                    Ok(response) => {
                        let ok = response.status().is_success();
                        let _ = response.into_body().collect().await;
                        if ok {
                            count += 1
                        } else {
                            errors += 1
                        }
                    }
                    Err(_) => errors += 1,
                }
                latencies.push(sent.elapsed().as_micros().min(u32::MAX as u128) as u32);
            }
            (count, errors, latencies)
        }));
    }
    let mut result = Load {
        requests: 0,
        errors: 0,
        seconds: 0.0,
        latencies_us: Vec::new(),
    };
    for task in tasks {
        let (count, errors, latencies) = task.await.unwrap();
        result.requests += count;
        result.errors += errors;
        result.latencies_us.extend(latencies);
    }
    result.seconds = started.elapsed().as_secs_f64();
    result
}

/// A signed PUT whose signature stays valid for this run.
fn signed_put(path: &str, payload: &[u8]) -> Request<Bytes> {
    let mut request = Request::builder()
        .method(http::Method::PUT)
        .uri(format!("http://bench.local{path}"))
        .header("host", "bench.local")
        .header("content-length", payload.len())
        .body(Bytes::copy_from_slice(payload))
        .unwrap();
    sign_with(
        &mut request,
        aws_sigv4::http_request::SignableBody::Bytes(payload),
        &SignOptions {
            time: SystemTime::now(),
            ..Default::default()
        },
    );
    request
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let seconds = env_number("NOTIFY_SECONDS", 5);
        let rounds = env_number("NOTIFY_ROUNDS", 3);
        let dir = tempfile::tempdir().unwrap();
        let upstream = serve(Arc::new(AtomicU64::new(0)), false).await;
        let delivered = Arc::new(AtomicU64::new(0));
        let receiver = serve(delivered.clone(), true).await;
        let (off, _) = proxy(
            dir.path(),
            "off",
            upstream,
            &format!(
                r#"
[notify]
spool_dir = "{spool}"

[[sinks]]
type = "jsonl"
name = "nowhere"
path = "/dev/null"

[[rules]]
name = "none"
events = ["s3:ObjectRestore:*"]
sinks = ["nowhere"]
"#,
                spool = dir.path().join("spool-off").display()
            ),
        )
        .await;
        let (on, dispatcher) = proxy(
            dir.path(),
            "on",
            upstream,
            &format!(
                r#"
[notify]
spool_dir = "{spool}"
fsync = "interval"

[[sinks]]
type = "webhook"
name = "hook"
url = "http://{receiver}/hook"
format = "b2"
b2_secret = "bench-b2-secret"
max_events_per_batch = {b2_batch}

[[rules]]
name = "created"
events = ["s3:ObjectCreated:*"]
status = "success"
sinks = ["hook"]
"#,
                spool = dir.path().join("spool").display(),
                b2_batch = env_number("NOTIFY_B2_BATCH", 50),
            ),
        )
        .await;
        let put = signed_put("/bench/small.bin", &vec![b's'; SMALL]);

        println!(
            "# s3tap proxy with and without notifications ({rounds} rounds × {seconds} s per configuration, \
             {CONNECTIONS} connections, {SMALL}-byte PUTs)\n"
        );
        println!("| round | notifications | PUT req/s | p50 ms | p99 ms | errors | events delivered |");
        println!("|---|---|---|---|---|---|---|");
        let (mut total_off, mut total_on) = (0.0, 0.0);
        let mut ratios = Vec::new();
        for round in 1..=rounds {
            let mut results = [0.0f64; 2];
            for (i, (name, address)) in [("off", off), ("on", on)].into_iter().enumerate() {
                let before = delivered.load(Ordering::Relaxed);
                let mut result = load(address, &put, seconds).await;
                // Let the dispatcher catch up so the next phase starts clean.
                if name == "on" {
                    let target = before + result.requests;
                    let deadline = Instant::now() + Duration::from_secs(60);
                    while delivered.load(Ordering::Relaxed) < target && Instant::now() < deadline {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
                println!(
                    "| {round} | {name} | {:.0} | {:.2} | {:.2} | {} | {} |",
                    result.rps(),
                    result.percentile(0.5),
                    result.percentile(0.99),
                    result.errors,
                    delivered.load(Ordering::Relaxed) - before
                );
                results[i] = result.rps();
            }
            total_off += results[0];
            total_on += results[1];
            ratios.push(results[1] / results[0]);
        }
        let stats = dispatcher.stats();
        println!(
            "\n{} of {} delivered events were acknowledged before they were due for the spool; \
             {} group commits",
            stats.delivered_unspooled,
            stats.delivered(),
            stats.commits
        );
        // On a shared VM single rounds swing by several percent either way:
        // the standard error of the per-round ratios says how far the
        // overall figure can be trusted.
        let n = ratios.len() as f64;
        let mean = ratios.iter().sum::<f64>() / n;
        let spread = if ratios.len() > 1 {
            let variance = ratios.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (n - 1.0);
            (variance / n).sqrt()
        } else {
            f64::NAN
        };
        let ratios: Vec<String> = ratios.iter().map(|r| format!("{r:.3}")).collect();
        println!(
            "\nratio on / off: {:.3} over all rounds (per round: {}); goal ≥ 0.95",
            total_on / total_off,
            ratios.join(", ")
        );
        println!("mean of the per-round ratios: {mean:.3} ± {spread:.3} (standard error)");
    });
}
