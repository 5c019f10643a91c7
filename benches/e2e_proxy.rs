//! End-to-end proxy benchmark: requests/s and latency for small objects,
//! throughput per payload mode for large objects, and peak memory with many
//! concurrent large uploads: through s3tap, directly to the upstream, and
//! through a plain hyper pass-through proxy, all measured in one run.
//!
//! Everything runs in this process on loopback: a sink upstream (drains
//! PUTs, serves GETs from memory; it checks no signature, so it costs the
//! same for every path), the two proxies, and the load generator. Requests
//! are signed once and replayed (SigV4 allows it within the skew window), so
//! the client spends no time signing.
//!
//! `cargo bench --bench e2e_proxy` (env: `E2E_SECONDS` per load phase,
//! default 5; `E2E_LARGE_MIB`, default 512; `E2E_RSS_UPLOADS`, default 16;
//! `E2E_RSS_MIB` per upload, default 1024).

#[path = "../tests/signing/mod.rs"]
mod signing;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Frame;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use s3tap::body::BoxError;
use s3tap::credentials::{StaticCredentials, UpstreamCredentials};
use s3tap::resign::{ResignLayer, Upstream};
use s3tap::sigv4::chunked::{chunk_header, empty_sha256};
use s3tap::verify::{PayloadHashing, SigV4VerifyLayer};
use sha2::{Digest, Sha256};
use signing::*;
use tower::ServiceBuilder;
use tower::ServiceExt as _;

type BoxBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

static BLOCK: [u8; 65_536] = [b'x'; 65_536];
const SMALL: usize = 4096;

/// Serves `service` on 127.0.0.1 with HTTP/1.1 keep-alive.
async fn serve<S, B>(service: S) -> SocketAddr
where
    S: tower::Service<Request<hyper::body::Incoming>, Response = Response<B>>
        + Clone
        + Send
        + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let service = hyper_util::service::TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    address
}

/// The sink upstream: drains request bodies, answers GETs with `object`.
async fn upstream(object: Bytes) -> SocketAddr {
    serve(tower::service_fn(
        move |request: Request<hyper::body::Incoming>| {
            let object = object.clone();
            async move {
                let is_get = request.method() == http::Method::GET;
                let mut body = request.into_body();
                while let Some(frame) = body.frame().await {
                    if frame.is_err() {
                        break;
                    }
                }
                let response = if is_get {
                    Response::builder()
                        .header("etag", "\"e\"")
                        .body(Full::new(object))
                        .unwrap()
                } else {
                    Response::builder()
                        .header("etag", "\"e\"")
                        .body(Full::new(Bytes::new()))
                        .unwrap()
                };
                Ok::<_, Infallible>(response)
            }
        },
    ))
    .await
}

fn upstream_client() -> Client<hyper_util::client::legacy::connect::HttpConnector, BoxBody> {
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(256)
        .build(connector)
}

/// A plain reverse proxy: rewrites the target, streams both ways, no checks.
async fn passthrough(to: SocketAddr) -> SocketAddr {
    let client = upstream_client();
    serve(tower::service_fn(
        move |request: Request<hyper::body::Incoming>| {
            let client = client.clone();
            async move {
                let (mut parts, body) = request.into_parts();
                let path = parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str().to_owned())
                    .unwrap_or_default();
                parts.uri = format!("http://{to}{path}").parse().unwrap();
                let body = BodyExt::map_err(body, BoxError::from).boxed_unsync();
                match client.request(Request::from_parts(parts, body)).await {
                    Ok(response) => Ok::<_, Infallible>(
                        response.map(|b| BodyExt::map_err(b, BoxError::from).boxed_unsync()),
                    ),
                    Err(_) => Ok(Response::builder()
                        .status(502)
                        .body(Empty::new().map_err(|e| match e {}).boxed_unsync())
                        .unwrap()),
                }
            }
        },
    ))
    .await
}

/// The s3tap stack: verify → re-sign → upstream client.
async fn s3tap_proxy(to: SocketAddr, hashing: PayloadHashing) -> SocketAddr {
    let client = upstream_client();
    let stack = ServiceBuilder::new()
        .layer(
            SigV4VerifyLayer::new(StaticCredentials::new().with_key(ACCESS_KEY, SECRET))
                .payload_hashing(hashing)
                .publish_chunk_digests(true),
        )
        .layer(
            ResignLayer::new(Upstream::parse(&format!("http://{to}")).unwrap())
                .sign_with(UpstreamCredentials::new("UPSTREAM", "upstream-secret")),
        )
        .service(tower::service_fn(
            move |request: Request<
                s3tap::resign::ResignBody<s3tap::verify::VerifyBody<hyper::body::Incoming>>,
            >| {
                let client = client.clone();
                async move {
                    let request = request.map(|b| b.boxed_unsync());
                    client.request(request).await.map_err(BoxError::from)
                }
            },
        ));
    let stack = stack.map_response(|response: Response<_>| {
        response.map(
            |b: s3tap::body::ResponseBody<s3tap::body::ResponseBody<hyper::body::Incoming>>| {
                BodyExt::map_err(b, BoxError::from).boxed_unsync()
            },
        )
    });
    serve(tower::util::BoxCloneService::new(stack)).await
}

struct Load {
    requests: u64,
    seconds: f64,
    latencies_us: Vec<u32>,
    errors: u64,
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

/// `concurrency` connections replay `template` for `seconds`.
async fn load(
    address: SocketAddr,
    template: &Request<Bytes>,
    concurrency: usize,
    seconds: u64,
) -> Load {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let method = template.method().clone();
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
                    .method(method.clone())
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
        seconds: 0.0,
        latencies_us: Vec::new(),
        errors: 0,
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

/// A signed request whose signature stays valid for this run.
fn signed(method: http::Method, path: &str, payload: &[u8]) -> Request<Bytes> {
    let mut request = Request::builder()
        .method(method)
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

#[derive(Clone, Copy, Debug)]
enum Mode {
    Hex,
    Unsigned,
    SignedChunked,
}

/// Sends one upload of `total` bytes made of the static block, streamed
/// without ever holding the object, in the given payload mode. Returns
/// seconds taken.
async fn large_upload(address: SocketAddr, key: &str, total: u64, mode: Mode) -> f64 {
    let blocks = total / BLOCK.len() as u64;
    let total = blocks * BLOCK.len() as u64;
    let block_digest: [u8; 32] = Sha256::digest(BLOCK).into();
    let now = SystemTime::now();
    let (mut request, frames): (Request<Bytes>, Box<dyn Iterator<Item = Bytes> + Send>) = match mode
    {
        Mode::Hex | Mode::Unsigned => {
            let mut request = Request::put(format!("http://bench.local/bench/{key}"))
                .header("host", "bench.local")
                .header("content-length", total)
                .body(Bytes::new())
                .unwrap();
            let body_kind = match mode {
                Mode::Hex => {
                    let mut hasher = Sha256::new();
                    for _ in 0..blocks {
                        hasher.update(BLOCK);
                    }
                    aws_sigv4::http_request::SignableBody::Precomputed(hex::encode(
                        hasher.finalize(),
                    ))
                }
                _ => aws_sigv4::http_request::SignableBody::UnsignedPayload,
            };
            sign_with(
                &mut request,
                body_kind,
                &SignOptions {
                    time: now,
                    ..Default::default()
                },
            );
            (
                request,
                Box::new((0..blocks).map(|_| Bytes::from_static(&BLOCK))),
            )
        }
        Mode::SignedChunked => {
            let mut request = Request::put(format!("http://bench.local/bench/{key}"))
                .header("host", "bench.local")
                .header("content-encoding", "aws-chunked")
                .header("x-amz-decoded-content-length", total)
                .header("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD")
                .body(Bytes::new())
                .unwrap();
            sign_with(
                &mut request,
                aws_sigv4::http_request::SignableBody::Precomputed(
                    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD".into(),
                ),
                &SignOptions {
                    time: now,
                    ..Default::default()
                },
            );
            let mut signer = chunk_signer_seeded_by(
                &request,
                &SignOptions {
                    time: now,
                    ..SignOptions::default()
                },
            );
            let encoded =
                s3tap::sigv4::chunked::encoded_length(total, BLOCK.len() as u64, true, None);
            request
                .headers_mut()
                .insert("content-length", encoded.into());
            let mut remaining = blocks;
            let mut final_sent = false;
            let frames = std::iter::from_fn(move || {
                if remaining > 0 {
                    remaining -= 1;
                    let signature = signer.next_chunk(&block_digest);
                    let mut framed = Vec::with_capacity(BLOCK.len() + 100);
                    framed.extend_from_slice(&chunk_header(BLOCK.len() as u64, Some(&signature)));
                    framed.extend_from_slice(&BLOCK);
                    framed.extend_from_slice(b"\r\n");
                    Some(Bytes::from(framed))
                } else if !final_sent {
                    final_sent = true;
                    let signature = signer.next_chunk(&empty_sha256());
                    let mut tail = chunk_header(0, Some(&signature)).to_vec();
                    tail.extend_from_slice(b"\r\n");
                    Some(Bytes::from(tail))
                } else {
                    None
                }
            });
            (request, Box::new(frames))
        }
    };
    let stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let body = StreamBody::new(futures_util::stream::iter(
        frames.map(|b| Ok::<_, Infallible>(Frame::data(b))),
    ));
    let (parts, _) = std::mem::take(&mut request).into_parts();
    let mut parts = parts;
    parts.uri = parts
        .uri
        .path_and_query()
        .unwrap()
        .as_str()
        .parse()
        .unwrap();
    let started = Instant::now();
    let response = sender
        .send_request(Request::from_parts(parts, body))
        .await
        .unwrap();
    let status = response.status();
    let _ = response.into_body().collect().await;
    assert!(status.is_success(), "{key} ({mode:?}) failed: {status}");
    started.elapsed().as_secs_f64()
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn reset_peak_rss() {
    // Writing 5 to clear_refs resets VmHWM to the current RSS (Linux ≥ 4.0).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn sha256_rate_mib_s(total: u64) -> f64 {
    let started = Instant::now();
    let mut hasher = Sha256::new();
    for _ in 0..total / BLOCK.len() as u64 {
        hasher.update(BLOCK);
    }
    std::hint::black_box(hasher.finalize());
    total as f64 / 1048576.0 / started.elapsed().as_secs_f64()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let seconds = env_number("E2E_SECONDS", 5);
        let large = env_number("E2E_LARGE_MIB", 512) * 1048576;
        let rss_uploads = env_number("E2E_RSS_UPLOADS", 16);
        let rss_size = env_number("E2E_RSS_MIB", 1024) * 1048576;
        let object = Bytes::from(vec![b'o'; SMALL]);
        let upstream = upstream(object).await;
        let passthrough = passthrough(upstream).await;
        let s3tap = s3tap_proxy(upstream, PayloadHashing::Verify).await;
        let s3tap_deferred = s3tap_proxy(upstream, PayloadHashing::DeferToUpstream).await;
        println!("# s3tap end-to-end benchmark ({seconds} s per phase, 32 connections, {SMALL}-byte objects)");
        println!();
        println!("| path | PUT req/s | PUT p50 ms | PUT p99 ms | GET req/s | GET p50 ms | GET p99 ms | errors |");
        println!("|---|---|---|---|---|---|---|---|");
        let put = signed(http::Method::PUT, "/bench/small.bin", &vec![b's'; SMALL]);
        let get = signed(http::Method::GET, "/bench/small.bin", b"");
        let mut rows = Vec::new();
        for (name, address) in [("direct", upstream), ("pass-through proxy", passthrough), ("s3tap (hash verified)", s3tap), ("s3tap (hash deferred)", s3tap_deferred)] {
            let mut puts = load(address, &put, 32, seconds).await;
            let mut gets = load(address, &get, 32, seconds).await;
            println!(
                "| {name} | {:.0} | {:.2} | {:.2} | {:.0} | {:.2} | {:.2} | {} |",
                puts.rps(), puts.percentile(0.5), puts.percentile(0.99), gets.rps(), gets.percentile(0.5), gets.percentile(0.99), puts.errors + gets.errors
            );
            rows.push((name, puts.rps(), gets.rps()));
        }
        let base = rows[1];
        for (name, put, get) in &rows[2..] {
            println!("\nratio {name} / pass-through: PUT {:.2}, GET {:.2}", put / base.1, get / base.2);
        }

        println!("\n## Large uploads ({} MiB each, 64 KiB frames)\n", large / 1048576);
        let sha = sha256_rate_mib_s(large.min(256 * 1048576));
        println!("one core SHA-256: {sha:.0} MiB/s\n");
        println!("| path | mode | MiB/s | ratio |");
        println!("|---|---|---|---|");
        let mib = large as f64 / 1048576.0;
        let direct_hex = mib / large_upload(upstream, "direct-hex", large, Mode::Hex).await;
        let direct_unsigned = mib / large_upload(upstream, "direct-unsigned", large, Mode::Unsigned).await;
        println!("| direct | hex | {direct_hex:.0} | 1.00 |");
        println!("| direct | unsigned | {direct_unsigned:.0} | 1.00 |");
        let through_hex = mib / large_upload(passthrough, "through-hex", large, Mode::Hex).await;
        let through_unsigned = mib / large_upload(passthrough, "through-unsigned", large, Mode::Unsigned).await;
        println!("| pass-through proxy | hex | {through_hex:.0} | {:.2} × direct |", through_hex / direct_hex);
        println!("| pass-through proxy | unsigned | {through_unsigned:.0} | {:.2} × direct |", through_unsigned / direct_unsigned);
        let hex = mib / large_upload(s3tap_deferred, "hex", large, Mode::Hex).await;
        println!("| s3tap, hashing deferred | hex | {hex:.0} | {:.2} × direct, {:.2} × pass-through |", hex / direct_hex, hex / through_hex);
        let unsigned = mib / large_upload(s3tap_deferred, "unsigned", large, Mode::Unsigned).await;
        println!("| s3tap, hashing deferred | unsigned | {unsigned:.0} | {:.2} × direct, {:.2} × pass-through |", unsigned / direct_unsigned, unsigned / through_unsigned);
        let verified_hex = mib / large_upload(s3tap, "hex-verified", large, Mode::Hex).await;
        println!("| s3tap, hash verified | hex | {verified_hex:.0} | {:.2} × SHA-256 |", verified_hex / sha);
        let chunked = mib / large_upload(s3tap, "chunked", large, Mode::SignedChunked).await;
        println!("| s3tap | signed aws-chunked | {chunked:.0} | {:.2} × SHA-256 |", chunked / sha);

        println!("\n## Peak RSS, {rss_uploads} concurrent uploads of {} MiB (signed aws-chunked)\n", rss_size / 1048576);
        for (name, address) in [("direct", upstream), ("s3tap", s3tap)] {
            reset_peak_rss();
            let before = peak_rss_kib();
            let started = Instant::now();
            let tasks: Vec<_> = (0..rss_uploads)
                .map(|_| tokio::spawn(large_upload(address, "rss", rss_size, Mode::SignedChunked)))
                .collect();
            for task in tasks {
                task.await.unwrap();
            }
            let after = peak_rss_kib();
            println!(
                "{name}: peak RSS {:.1} MiB (before {:.1} MiB, growth {:.1} MiB) in {:.1} s",
                after as f64 / 1024.0, before as f64 / 1024.0, (after.saturating_sub(before)) as f64 / 1024.0, started.elapsed().as_secs_f64()
            );
        }
    });
}
