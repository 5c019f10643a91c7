//! Does webhook delivery keep up with the proxy it serves? The `s3tap`
//! binary (embedded store, every request an event, as the original Worker's
//! `WEBHOOK_URL`) with one webhook sink in a format of one event per POST
//! (`seed` by default), under signed 1 KiB GETs from many clients at the
//! proxy's full rate. Each phase runs one sink `concurrency`, baseline 1
//! (one POST at a time, what s3tap did before) first, in the same run.
//!
//! With nginx installed (`scripts/bench.sh webhook` installs it), one nginx
//! is both the S3 upstream (it serves the object; it checks no signature,
//! s3tap still verifies the client's and signs its own) and the receiver
//! (`return 204`), as the issue measured it. Without nginx, the embedded
//! store and an in-process hyper receiver stand in (said in the output; the
//! embedded store's file I/O then bounds the request rate). Delivered events
//! and spool bytes are read from the proxy's own `/metrics` every second.
//!
//! A phase keeps up when delivered/s ≥ 0.99 × the request rate over the load
//! and the spool is as small at the end as it was a third of the way in.
//!
//! `cargo bench --features proxy --bench webhook_keeps_up`; knobs:
//! `WEBHOOK_SECONDS` (30), `WEBHOOK_CLIENTS` (32), `WEBHOOK_CONCURRENCY`
//! (`1,64`: before and the default), `WEBHOOK_FORMAT` (`seed`; `b2` sends B2's default of one event
//! per POST).

#[path = "../tests/notify_support/mod.rs"]
mod notify_support;
#[path = "../tests/signing/mod.rs"]
mod signing;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use signing::*;

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// A receiver that answers every POST with 204 at once, and with nginx the
/// upstream that serves the object.
enum Receiver {
    Nginx {
        child: Child,
        url: String,
        upstream: String,
    },
    InProcess(notify_support::Receiver),
}

impl Receiver {
    fn url(&self) -> String {
        match self {
            Receiver::Nginx { url, .. } => url.clone(),
            Receiver::InProcess(receiver) => receiver.url(),
        }
    }

    /// The `[upstream]` endpoint; `None`: the embedded store.
    fn upstream(&self) -> Option<&str> {
        match self {
            Receiver::Nginx { upstream, .. } => Some(upstream),
            Receiver::InProcess(_) => None,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Receiver::Nginx { .. } => "nginx `return 204`; upstream: nginx serving the object",
            Receiver::InProcess(_) => {
                "in-process hyper receiver; upstream: the embedded store (nginx not found)"
            }
        }
    }
}

/// The object every GET reads (1 KiB).
const OBJECT: &[u8] = &[7u8; 1024];

async fn receiver(dir: &Path) -> Receiver {
    let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let Some(nginx) = nginx else {
        return Receiver::InProcess(
            notify_support::Receiver::start(
                notify_support::free(),
                Arc::new(|_: &notify_support::Seen| notify_support::Reply::Status(204)),
            )
            .await,
        );
    };
    let port = notify_support::closed_port();
    let upstream_port = notify_support::closed_port();
    std::fs::create_dir_all(dir.join("objects/bench")).unwrap();
    std::fs::write(dir.join("objects/bench/object.bin"), OBJECT).unwrap();
    let conf = dir.join("nginx.conf");
    let d = dir.display();
    std::fs::write(
        &conf,
        format!(
            "worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/nginx.error.log;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  \
             fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  \
             keepalive_requests 1000000;\n  server {{ listen {port}; location / {{ return 204; }} }}\n  \
             server {{ listen {upstream_port}; root {d}/objects; }}\n}}\n"
        ),
    )
    .unwrap();
    let child = Command::new(nginx)
        .args(["-c"])
        .arg(&conf)
        .args(["-p"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nginx");
    let started = Instant::now();
    while tokio::net::TcpStream::connect(port).await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "nginx did not listen"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Receiver::Nginx {
        child,
        url: format!("http://{port}/hook"),
        upstream: format!("http://{upstream_port}"),
    }
}

/// A request signed now with the default key. GETs are signed once and
/// reused by every client: S3 accepts a signature again within its
/// clock-skew window, and the harness then spends no CPU on signing.
fn signed(
    method: http::Method,
    endpoint: &str,
    path: &str,
    payload: &[u8],
) -> http::Request<Full<Bytes>> {
    signed_now(
        method,
        endpoint.trim_start_matches("http://"),
        path,
        payload,
        (ACCESS_KEY, SECRET),
    )
    .map(Full::new)
}

/// `name{sink="hook"} value` or `name value` from a Prometheus scrape.
fn metric(scrape: &str, name: &str) -> f64 {
    scrape
        .lines()
        .find(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

async fn scrape(client: &HttpClient, admin: &str) -> String {
    let uri: http::Uri = format!("http://{admin}/metrics").parse().unwrap();
    match client.get(uri).await {
        Ok(response) => {
            let body = response.into_body().collect().await.unwrap().to_bytes();
            String::from_utf8_lossy(&body).into_owned()
        }
        Err(_) => String::new(),
    }
}

struct Phase {
    concurrency: usize,
    requests: u64,
    errors: u64,
    seconds: f64,
    delivered_during_load: f64,
    spool_bytes: Vec<(u64, f64)>,
    catch_up: Option<f64>,
}

async fn phase(
    concurrency: usize,
    format: &str,
    receiver: &Receiver,
    seconds: u64,
    clients: usize,
) -> Phase {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("s3tap.toml");
    let upstream = receiver.upstream().map_or(String::new(), |endpoint| {
        format!(
            "[upstream]\nendpoint = \"{endpoint}\"\ncredentials = \"fixed\"\naccess_key_id = \"UPSTREAMKEY\"\nsecret_access_key = \"upstream-secret\"\n\n\
             [[clients]]\naccess_key_id = \"{ACCESS_KEY}\"\nsecret_access_key = \"{SECRET}\"\n\n"
        )
    });
    std::fs::write(
        &config,
        format!(
            "{upstream}[notify]\nspool_dir = \"{}\"\n\n[[sinks]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \"{}\"\nformat = \"{format}\"\nconcurrency = {concurrency}\n",
            dir.path().join("spool").display(),
            receiver.url(),
        ),
    )
    .unwrap();
    let listen = notify_support::closed_port().to_string();
    let admin = notify_support::closed_port().to_string();
    let mut proxy = Command::new(env!("CARGO_BIN_EXE_s3tap"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .arg("--config")
        .arg(&config)
        .args(["--listen", &listen, "--admin-listen", &admin, "--data-dir"])
        .arg(dir.path().join("data"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("start the s3tap binary");
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let ready: http::Uri = format!("http://{admin}/readyz").parse().unwrap();
    let waiting = Instant::now();
    loop {
        match client.get(ready.clone()).await {
            Ok(response) if response.status().is_success() => break,
            _ if waiting.elapsed() > Duration::from_secs(30) => {
                panic!("s3tap did not become ready")
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let endpoint = format!("http://{listen}");
    if receiver.upstream().is_none() {
        // The embedded store starts empty; nginx serves the object already.
        for request in [
            signed(http::Method::PUT, &endpoint, "/bench", b""),
            signed(http::Method::PUT, &endpoint, "/bench/object.bin", OBJECT),
        ] {
            let response = client.request(request).await.unwrap();
            assert!(
                response.status().is_success(),
                "setup: {}",
                response.status()
            );
        }
    }
    let get = signed(http::Method::GET, &endpoint, "/bench/object.bin", b"");
    let delivered_before = metric(&scrape(&client, &admin).await, "s3tap_sink_delivered_total");

    let requests = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let client = client.clone();
        let (parts, body) = clone_request(&get);
        let requests = requests.clone();
        let errors = errors.clone();
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let request = http::Request::from_parts(parts.clone(), body.clone());
                match client.request(request).await {
                    Ok(response) if response.status().is_success() => {
                        let _ = response.into_body().collect().await;
                        requests.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    let mut spool_bytes = Vec::new();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let scrape = scrape(&client, &admin).await;
        spool_bytes.push((
            started.elapsed().as_secs(),
            metric(&scrape, "s3tap_spool_bytes"),
        ));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let load_seconds = started.elapsed().as_secs_f64();
    let requests = requests.load(Ordering::Relaxed);
    let delivered_during_load =
        metric(&scrape(&client, &admin).await, "s3tap_sink_delivered_total") - delivered_before;
    // Every request was an event, and so was each setup PUT (delivered
    // before the count started).
    let expected = requests as f64 + delivered_before;
    let after = Instant::now();
    let mut catch_up = None;
    while after.elapsed() < Duration::from_secs(120) {
        let delivered = metric(&scrape(&client, &admin).await, "s3tap_sink_delivered_total");
        if delivered >= expected {
            catch_up = Some(after.elapsed().as_secs_f64());
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = Command::new("kill")
        .args(["-TERM", &proxy.id().to_string()])
        .status();
    let _ = proxy.wait();
    Phase {
        concurrency,
        requests,
        errors: errors.load(Ordering::Relaxed),
        seconds: load_seconds,
        delivered_during_load,
        spool_bytes,
        catch_up,
    }
}

fn clone_request(request: &http::Request<Full<Bytes>>) -> (http::request::Parts, Full<Bytes>) {
    let mut builder = http::Request::builder()
        .method(request.method().clone())
        .uri(request.uri().clone());
    for (name, value) in request.headers() {
        builder = builder.header(name, value);
    }
    builder.body(Full::new(Bytes::new())).unwrap().into_parts()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let seconds: u64 = env_or("WEBHOOK_SECONDS", "30").parse().unwrap();
        let clients: usize = env_or("WEBHOOK_CLIENTS", "32").parse().unwrap();
        let format = env_or("WEBHOOK_FORMAT", "seed");
        let concurrencies: Vec<usize> = env_or("WEBHOOK_CONCURRENCY", "1,64")
            .split(',')
            .map(|c| c.trim().parse().expect("WEBHOOK_CONCURRENCY: numbers"))
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let mut receiver = receiver(dir.path()).await;
        let mut phases = Vec::new();
        for &concurrency in &concurrencies {
            phases.push(phase(concurrency, &format, &receiver, seconds, clients).await);
        }
        if let Receiver::Nginx { child, .. } = &mut receiver {
            let _ = child.kill();
            let _ = child.wait();
        }
        println!(
            "## Webhook delivery vs the proxy's request rate ({format} format, one event per POST; \
             {clients} clients of signed 1 KiB GETs for {seconds} s; receiver: {})\n",
            receiver.name()
        );
        println!("| concurrency | req/s | errors | delivered/s during load | delivered / requests | spool bytes at 1/3, 2/3, end | catch-up after load | keeps up |");
        println!("|---|---|---|---|---|---|---|---|");
        for p in &phases {
            let rate = p.requests as f64 / p.seconds;
            let delivered_rate = p.delivered_during_load / p.seconds;
            let at = |fraction: f64| {
                let i = ((p.spool_bytes.len() as f64 * fraction) as usize)
                    .min(p.spool_bytes.len().saturating_sub(1));
                p.spool_bytes.get(i).map_or(0.0, |s| s.1)
            };
            let (third, two_thirds, end) = (at(1.0 / 3.0), at(2.0 / 3.0), at(1.0));
            let flat = end <= third.max(64.0 * 1024.0);
            let keeps_up = delivered_rate >= 0.99 * rate && flat;
            println!(
                "| {} | {rate:.0} | {} | {delivered_rate:.0} | {:.3} | {:.0} KiB, {:.0} KiB, {:.0} KiB | {} | {} |",
                p.concurrency,
                p.errors,
                p.delivered_during_load / p.requests.max(1) as f64,
                third / 1024.0,
                two_thirds / 1024.0,
                end / 1024.0,
                p.catch_up.map_or("not within 120 s".to_owned(), |s| format!("{s:.1} s")),
                if keeps_up { "yes" } else { "**no**" }
            );
        }
    });
}
