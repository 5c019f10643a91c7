//! Peak memory of a 1 GiB signed aws-chunked upload through
//! `SigV4VerifyLayer`, against the same stream drained without the layer.
//!
//! The stream is generated lazily: every 16 KiB frame is a fresh allocation
//! (so a layer that kept frames would show in RSS), chunk signatures are
//! chained on the fly, and the generator itself holds no more than one frame.
//! Each case runs in its own child process and reports the growth of its
//! peak RSS (`VmHWM` of `/proc/self/status`) across the upload.
//!
//! `cargo bench --bench chunked_memory`; `S3TAP_MEMORY_MIB` changes the
//! object size (default 1024).

mod support;

use std::convert::Infallible;
use std::pin::Pin;
use std::process::Command;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Empty;
use s3tap::body::BoxError;
use s3tap::sigv4::chunked::{chunk_header, empty_sha256, encoded_length};
use s3tap::sigv4::ChunkSigner;
use s3tap::verify::VerifyBody;
use sha2::{Digest, Sha256};
use tower::{Layer, ServiceExt};

use support::FRAME_SIZE;

/// The cases, each in its own process: (name, chunk size, through the layer).
const CASES: [(&str, u64, bool); 4] = [
    ("baseline_64KiB", 64 * 1024, false),
    ("layer_64KiB", 64 * 1024, true),
    ("baseline_16MiB", 16 * 1024 * 1024, false),
    ("layer_16MiB", 16 * 1024 * 1024, true),
];

fn object_len() -> u64 {
    std::env::var("S3TAP_MEMORY_MIB")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&mib| mib > 0)
        .unwrap_or(1024)
        * 1024
        * 1024
}

/// Generates a signed aws-chunked stream of `chunk_count` chunks whose data
/// repeat one 16 KiB pattern, copied into a new buffer for every frame.
struct ChunkedGenerator {
    pattern: Bytes,
    chunk_size: u64,
    chunks_left: u64,
    chunk_sha256: [u8; 32],
    signer: ChunkSigner,
    // Bytes of the current chunk still to send; `None` between chunks.
    data_left: Option<u64>,
    done: bool,
}

impl ChunkedGenerator {
    fn new(object_len: u64, chunk_size: u64, seed: &[u8; 32]) -> Self {
        assert_eq!(chunk_size % FRAME_SIZE as u64, 0);
        assert_eq!(object_len % chunk_size, 0);
        let pattern = support::payload(FRAME_SIZE);
        let mut hasher = Sha256::new();
        for _ in 0..chunk_size / FRAME_SIZE as u64 {
            hasher.update(&pattern);
        }
        ChunkedGenerator {
            pattern,
            chunk_size,
            chunks_left: object_len / chunk_size,
            chunk_sha256: hasher.finalize().into(),
            signer: ChunkSigner::new(
                support::signing_key(),
                &support::date(),
                &support::scope(),
                seed,
            ),
            data_left: None,
            done: false,
        }
    }

    fn next_frame(&mut self) -> Option<Bytes> {
        if self.done {
            return None;
        }
        match self.data_left {
            None if self.chunks_left == 0 => {
                self.done = true;
                let signature = self.signer.next_chunk(&empty_sha256());
                let mut last = chunk_header(0, Some(&signature)).to_vec();
                last.extend_from_slice(b"\r\n");
                Some(Bytes::from(last))
            }
            None => {
                self.chunks_left -= 1;
                self.data_left = Some(self.chunk_size);
                let signature = self.signer.next_chunk(&self.chunk_sha256);
                Some(chunk_header(self.chunk_size, Some(&signature)))
            }
            Some(0) => {
                self.data_left = None;
                Some(Bytes::from_static(b"\r\n"))
            }
            Some(left) => {
                self.data_left = Some(left - FRAME_SIZE as u64);
                Some(Bytes::copy_from_slice(&self.pattern))
            }
        }
    }
}

impl Body for ChunkedGenerator {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.next_frame().map(|data| Ok(Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// A signed PUT head for `object_len` bytes in `chunk_size` chunks, and the
/// seed signature of its chain.
fn signed_head(object_len: u64, chunk_size: u64) -> (HeaderMap, [u8; 32]) {
    let hash = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static(support::HOST));
    headers.insert("x-amz-date", HeaderValue::from_static(support::AMZ_DATE));
    headers.insert("content-encoding", HeaderValue::from_static("aws-chunked"));
    headers.insert(
        "content-length",
        encoded_length(object_len, chunk_size, true, None).into(),
    );
    headers.insert("x-amz-content-sha256", HeaderValue::from_static(hash));
    headers.insert("x-amz-decoded-content-length", object_len.into());
    let seed = support::sign_head("PUT", "/uploads/bench/big.bin", None, &mut headers, hash);
    (headers, seed)
}

/// `VmHWM` (peak resident set) of this process, in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}

/// Runs one case in this process and prints one `key=value` line.
fn run_case(name: &str) {
    let &(_, chunk_size, through_layer) = CASES
        .iter()
        .find(|(case, _, _)| *case == name)
        .expect("known case");
    let object_len = object_len();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let (headers, seed) = signed_head(object_len, chunk_size);
    let inner = tower::service_fn(
        |request: Request<VerifyBody<ChunkedGenerator>>| async move {
            let received = support::drain(request.into_body()).await?;
            let mut response = Response::new(Empty::<Bytes>::new());
            response.headers_mut().insert("x-received", received.into());
            Ok::<_, BoxError>(response)
        },
    );
    let verify = support::layer().layer(inner);
    let generator = ChunkedGenerator::new(object_len, chunk_size, &seed);

    let before = peak_rss_kib();
    let started = Instant::now();
    let received = if through_layer {
        let mut request = Request::put("/uploads/bench/big.bin")
            .body(generator)
            .expect("request");
        *request.headers_mut() = headers;
        let response = runtime
            .block_on(verify.oneshot(request))
            .expect("the stream verifies");
        assert!(response.status().is_success() && !response.body().is_error());
        response.headers()["x-received"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap()
    } else {
        runtime
            .block_on(support::drain(generator))
            .expect("infallible")
    };
    let elapsed = started.elapsed();
    let after = peak_rss_kib();
    println!(
        "case={name} chunk_bytes={chunk_size} received={received} \
         hwm_before_kib={before} hwm_after_kib={after} seconds={:.3}",
        elapsed.as_secs_f64()
    );
}

fn field(line: &str, key: &str) -> u64 {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or_else(|| panic!("{key} missing in {line:?}"))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(position) = args.iter().position(|a| a == "--case") {
        run_case(&args[position + 1]);
        return;
    }
    // Under `cargo test --benches` there is nothing to time.
    if args.iter().any(|a| a == "--test") {
        return;
    }
    let object_len = object_len();
    println!(
        "peak RSS growth while streaming {} MiB of signed aws-chunked, {} KiB frames:",
        object_len / (1024 * 1024),
        FRAME_SIZE / 1024
    );
    println!(
        "  {:<16} {:>10} {:>14} {:>12} {:>16} {:>10}",
        "case", "chunk KiB", "HWM before KiB", "growth KiB", "growth - baseline", "wall MiB/s"
    );
    let mut baseline_growth = 0i64;
    for (name, chunk_size, through_layer) in CASES {
        let exe = std::env::current_exe().expect("current exe");
        let output = Command::new(exe)
            .args(["--case", name])
            .output()
            .expect("run case");
        assert!(output.status.success(), "case {name} failed: {output:?}");
        let line = String::from_utf8(output.stdout).expect("utf-8");
        let line = line.trim();
        // Through the layer the drain sees the decoded payload; without it,
        // the stream as sent.
        let expected = if through_layer {
            object_len
        } else {
            encoded_length(object_len, chunk_size, true, None)
        };
        assert_eq!(field(line, "received"), expected, "{line}");
        let before = field(line, "hwm_before_kib") as i64;
        let growth = field(line, "hwm_after_kib") as i64 - before;
        let seconds: f64 = line
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix("seconds="))
            .and_then(|v| v.parse().ok())
            .expect("seconds");
        if !through_layer {
            baseline_growth = growth;
        }
        println!(
            "  {name:<16} {:>10} {before:>14} {growth:>12} {:>16} {:>10.0}",
            chunk_size / 1024,
            if through_layer {
                (growth - baseline_growth).to_string()
            } else {
                "-".to_owned()
            },
            object_len as f64 / seconds / (1024.0 * 1024.0)
        );
    }
}
