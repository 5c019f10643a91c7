//! Criterion benches of SigV4 verification: header auth per request through
//! `SigV4VerifyLayer` (and its pure parts), and payload verification
//! throughput in every payload mode next to plain SHA-256 over the same bytes
//! in the same run. After the run the ratios are printed from criterion's
//! estimates, and once more from interleaved runs timed in on-CPU time
//! (fastest of several), which a busy shared machine skews far less.
//!
//! `S3TAP_BENCH_MIB` sets the payload size of the throughput group (default 64).

mod support;

use std::convert::Infallible;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput};
use http::{Request, Response};
use http_body_util::Empty;
use s3tap::body::{BoxError, ResponseBody};
use s3tap::sigv4::{
    AuthorizationHeader, CanonicalRequest, ChecksumAlgorithm, SigningKey, SigningKeyCache,
    UriEncoding,
};
use s3tap::verify::VerifyBody;
use sha2::{Digest, Sha256};
use tower::{Layer, ServiceExt};

use support::{Mode, FRAME_SIZE};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
}

fn header_auth(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("header_auth");

    let inner = tower::service_fn(|_: Request<VerifyBody<Empty<Bytes>>>| async {
        Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new()))
    });
    let verify = support::layer().layer(inner);
    let head = support::get_object();
    let get_object = || head.request(Empty::<Bytes>::new());
    // The request must pass, or the bench would time the rejection path.
    let response = rt.block_on(verify.clone().oneshot(get_object())).unwrap();
    assert!(response.status().is_success() && !response.body().is_error());

    // The same request handed to the same kind of inner service, no layer:
    // what a request costs before any SigV4 work.
    let bare = tower::service_fn(|_: Request<Empty<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new()))
    });
    group.bench_function("no_layer_baseline", |b| {
        b.to_async(&rt).iter_batched(
            get_object,
            |request| bare.oneshot(request),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("verify_get_object", |b| {
        b.to_async(&rt).iter_batched(
            get_object,
            |request| verify.clone().oneshot(request),
            BatchSize::SmallInput,
        )
    });

    // The pure parts, on the same request.
    let request = get_object();
    let authorization = request.headers()["authorization"]
        .to_str()
        .unwrap()
        .to_owned();
    let auth = AuthorizationHeader::parse(&authorization).unwrap();
    let names = auth.signed_headers.names();
    let canonical = CanonicalRequest {
        method: request.method().as_str(),
        path: request.uri().path(),
        query: request.uri().query(),
        skip_query_param: None,
        headers: request.headers(),
        authority: None,
        signed_headers: &names,
        payload_hash: s3tap::sigv4::chunked::EMPTY_SHA256_HEX,
        uri_encoding: UriEncoding::S3,
    };
    group.bench_function("parse_authorization", |b| {
        b.iter(|| AuthorizationHeader::parse(black_box(&authorization)))
    });
    group.bench_function("canonical_request", |b| {
        b.iter(|| black_box(&canonical).to_bytes())
    });
    let key = support::signing_key();
    let date = support::date();
    let scope = support::scope();
    group.bench_function("sign_request", |b| {
        b.iter(|| s3tap::sigv4::sign_request(black_box(&canonical), &key, &date, &scope))
    });
    let date_stamp = date.date_stamp();
    group.bench_function("signing_key_derive", |b| {
        b.iter(|| SigningKey::derive(black_box(support::SECRET), &date_stamp, "us-east-1", "s3"))
    });
    let cache = SigningKeyCache::default();
    cache.get(support::SECRET, &date_stamp, "us-east-1", "s3");
    group.bench_function("signing_key_cache_hit", |b| {
        b.iter(|| cache.get(black_box(support::SECRET), &date_stamp, "us-east-1", "s3"))
    });
    group.finish();
}

fn payload_mib() -> usize {
    std::env::var("S3TAP_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&mib: &usize| mib > 0)
        .unwrap_or(64)
}

const MODES: [(&str, Mode); 6] = [
    ("signed_chunked_64KiB", Mode::SignedChunked(64 * 1024)),
    ("signed_chunked_1MiB", Mode::SignedChunked(1024 * 1024)),
    ("hex_sha256", Mode::Hex),
    (
        "unsigned_trailer_crc32",
        Mode::UnsignedTrailer(ChecksumAlgorithm::Crc32),
    ),
    (
        "unsigned_trailer_crc64nvme",
        Mode::UnsignedTrailer(ChecksumAlgorithm::Crc64Nvme),
    ),
    ("unsigned_passthrough", Mode::Unsigned),
];

/// The layer in front of a service that reads the body to its end and
/// checks that it got `len` payload bytes.
fn draining_verify(
    len: usize,
) -> impl tower::Service<
    Request<support::SliceBody>,
    Response = Response<ResponseBody<Empty<Bytes>>>,
    Error = BoxError,
> + Clone {
    let inner = tower::service_fn(
        move |request: Request<VerifyBody<support::SliceBody>>| async move {
            let received = support::drain(request.into_body()).await?;
            assert_eq!(received, len as u64);
            Ok::<_, BoxError>(Response::new(Empty::<Bytes>::new()))
        },
    );
    support::layer().layer(inner)
}

fn chunked_throughput(c: &mut Criterion) {
    let rt = runtime();
    let len = payload_mib() * 1024 * 1024;
    let payload = support::payload(len);
    let mut group = c.benchmark_group("chunked_throughput");
    group
        .throughput(Throughput::Bytes(len as u64))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));

    group.bench_function("sha256_baseline", |b| {
        b.iter(|| {
            let mut hasher = Sha256::new();
            for frame in black_box(&payload).chunks(FRAME_SIZE) {
                hasher.update(frame);
            }
            hasher.finalize()
        })
    });
    group.bench_function("drain_no_layer", |b| {
        b.to_async(&rt).iter(|| async {
            let received = support::drain(support::SliceBody::new(payload.clone(), FRAME_SIZE))
                .await
                .unwrap();
            assert_eq!(received, len as u64);
        })
    });

    let verify = draining_verify(len);
    for (name, mode) in MODES {
        let (headers, wire) = support::put_object(mode, &payload);
        let response = rt
            .block_on(
                verify
                    .clone()
                    .oneshot(support::put_request(&headers, &wire, FRAME_SIZE)),
            )
            .expect("payload verifies");
        assert!(response.status().is_success() && !response.body().is_error());
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.to_async(&rt).iter(|| {
                verify
                    .clone()
                    .oneshot(support::put_request(&headers, &wire, FRAME_SIZE))
            })
        });
    }
    group.finish();
}

/// Where criterion writes its estimates (as criterion itself decides).
fn criterion_home() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return home.into();
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("criterion")
}

/// Median time per iteration, in nanoseconds, of one bench of this run
/// (estimates left by earlier runs are ignored).
fn median_ns(group: &str, id: &str) -> Option<f64> {
    let path = criterion_home()
        .join(group)
        .join(id)
        .join("new")
        .join("estimates.json");
    let written = std::fs::metadata(&path).and_then(|m| m.modified()).ok()?;
    if written < *RUN_STARTED.get()? {
        return None;
    }
    let text = std::fs::read_to_string(path).ok()?;
    let estimates: serde_json::Value = serde_json::from_str(&text).ok()?;
    estimates["median"]["point_estimate"].as_f64()
}

fn print_ratios() {
    let len = (payload_mib() * 1024 * 1024) as f64;
    let group = "chunked_throughput";
    let Some(sha) = median_ns(group, "sha256_baseline") else {
        return;
    };
    let mib_s = |ns: f64| len / (ns / 1e9) / (1024.0 * 1024.0);
    println!("\nthroughput vs sha256_baseline (medians, {len:.0} bytes, this run):");
    println!(
        "  {:<28} {:>10.0} MiB/s  1.000",
        "sha256_baseline",
        mib_s(sha)
    );
    let ids = ["drain_no_layer"]
        .into_iter()
        .chain(MODES.iter().map(|(name, _)| *name));
    for id in ids {
        if let Some(ns) = median_ns(group, id) {
            println!("  {id:<28} {:>10.0} MiB/s  {:.3}", mib_s(ns), sha / ns);
        }
    }
    let group = "header_auth";
    if let (Some(bare), Some(verify)) = (
        median_ns(group, "no_layer_baseline"),
        median_ns(group, "verify_get_object"),
    ) {
        println!(
            "\nheader auth: {verify:.0} ns/request through the layer, {bare:.0} ns without \
             (layer adds {:.0} ns)",
            verify - bare
        );
    }
}

static RUN_STARTED: std::sync::OnceLock<std::time::SystemTime> = std::sync::OnceLock::new();

/// CPU time of this thread (`CLOCK_THREAD_CPUTIME_ID`), so that other
/// processes sharing the cores do not count.
fn on_cpu() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec for the call's duration.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    assert_eq!(status, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// The same ratios again, robust to other load on the machine: each mode
/// runs alternately with the SHA-256 baseline, each run is timed in on-CPU
/// time of this (only) thread, and the fastest of `rounds` runs of each is
/// compared.
fn interleaved_ratios(rounds: usize) {
    let rt = runtime();
    let len = payload_mib() * 1024 * 1024;
    let payload = support::payload(len);
    let verify = draining_verify(len);
    let sha256 = || {
        let started = on_cpu();
        let mut hasher = Sha256::new();
        for frame in black_box(&payload).chunks(FRAME_SIZE) {
            hasher.update(frame);
        }
        black_box(hasher.finalize());
        on_cpu() - started
    };
    let mib_s = |time: Duration| len as f64 / time.as_secs_f64() / (1024.0 * 1024.0);
    println!("\ninterleaved with sha256_baseline, on-CPU time, fastest of {rounds} runs each:");
    println!(
        "  {:<28} {:>10} {:>14} {:>7}",
        "mode", "MiB/s", "sha256 MiB/s", "ratio"
    );
    for (name, mode) in MODES {
        let (headers, wire) = support::put_object(mode, &payload);
        let (mut best_sha, mut best_mode) = (Duration::MAX, Duration::MAX);
        for _ in 0..rounds {
            best_sha = best_sha.min(sha256());
            let started = on_cpu();
            let response = rt
                .block_on(
                    verify
                        .clone()
                        .oneshot(support::put_request(&headers, &wire, FRAME_SIZE)),
                )
                .expect("payload verifies");
            best_mode = best_mode.min(on_cpu() - started);
            assert!(!response.body().is_error());
        }
        println!(
            "  {name:<28} {:>10.0} {:>14.0} {:>7.3}",
            mib_s(best_mode),
            mib_s(best_sha),
            best_sha.as_secs_f64() / best_mode.as_secs_f64()
        );
    }
}

fn main() {
    RUN_STARTED.get_or_init(std::time::SystemTime::now);
    let mut criterion = Criterion::default().configure_from_args();
    header_auth(&mut criterion);
    chunked_throughput(&mut criterion);
    criterion.final_summary();
    print_ratios();
    // Only when the throughput group ran (not filtered out, not `--test`).
    if median_ns("chunked_throughput", "sha256_baseline").is_some() {
        interleaved_ratios(15);
    }
}
