//! What zstd and gzip compression in the proxy cost and save (issue 17
//! item 2):
//! a real text corpus (a tarball of this repository's `src/` and the cargo
//! registry's unpacked crate sources) uploaded and downloaded with aws-cli
//! through the `s3tap` binary in front of s3s-fs, into a bucket under a
//! `[[transforms]]` zstd rule, one under a gzip rule, and one outside both.
//! Reported:
//! the proxy process's CPU-seconds per GiB of plaintext (utime + stime from
//! `/proc/<pid>/stat`) up and down, the compression ratio (plaintext over
//! the bytes s3s-fs stored), and, as baseline, one SHA-256 pass over the
//! same bytes in this process (CPU-seconds per GiB).
//!
//! Run with `scripts/bench.sh transform`. Knobs: `BENCH_CORPUS_MIB` (size
//! of the corpus, default 512), `BENCH_LEVEL` (zstd level, default 3),
//! `BENCH_GZIP_LEVEL` (default 6).

#[path = "support/cpu.rs"]
mod cpu;
#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use sha2::{Digest, Sha256};

use support::binary::S3tapCommand;
use support::clients::{aws_cli_s3, aws_cli_s3api};
use support::upstreams::{S3sFs, UpstreamPeer};
use support::{Creds, Peers};

const MIB: u64 = 1024 * 1024;
const GIB: f64 = (1u64 << 30) as f64;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `tar` of the sources, cut at `bytes`.
fn corpus(path: &Path, bytes: u64) {
    let registry = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(&std::env::var_os("HOME").unwrap()).join(".cargo"))
        .join("registry/src");
    let script = format!(
        "tar cf - -C {root} src -C {registry} . 2>/dev/null | head -c {bytes} > {out}",
        root = env!("CARGO_MANIFEST_DIR"),
        registry = registry.display(),
        out = path.display(),
    );
    let status = Command::new("sh").args(["-c", &script]).status().unwrap();
    assert!(status.success(), "building the corpus failed");
}

/// One thread's CPU time, immune to the other load on shared cores.
fn thread_cpu() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

fn sha256_cpu_per_gib(path: &Path) -> f64 {
    use std::io::Read;
    let mut file = std::fs::File::open(path).unwrap();
    let mut buf = vec![0u8; MIB as usize];
    let mut hasher = Sha256::new();
    let mut total = 0u64;
    let start = thread_cpu();
    loop {
        let n = file.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    std::hint::black_box(hasher.finalize());
    (thread_cpu() - start) / (total as f64 / GIB)
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let peers = Peers::get().expect("the test peers (scripts/setup-peers.sh)");
    let corpus_bytes = env_u64("BENCH_CORPUS_MIB", 512) * MIB;
    let level = env_u64("BENCH_LEVEL", 3);
    let gzip_level = env_u64("BENCH_GZIP_LEVEL", 6);
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("corpus.tar");
    corpus(&plain, corpus_bytes);
    let size = std::fs::metadata(&plain).unwrap().len();
    let gib = size as f64 / GIB;

    let upstream = Creds::new("BENCHUPSTREAM", "bench/upstream-secret");
    let client = Creds::new("BENCHCLIENT", "bench/client-secret");
    let s3s = S3sFs::start(&upstream).await.expect("s3s-fs");
    for bucket in ["zbucket", "gzbucket", "plain"] {
        std::fs::create_dir(s3s.data_dir().join(bucket)).unwrap();
    }
    let proxy = S3tapCommand::new()
        .config(
            dir.path(),
            &format!(
                r#"
[upstream]
endpoint = "{endpoint}"
credentials = "fixed"
access_key_id = "{up_key}"
secret_access_key = "{up_secret}"

[[clients]]
access_key_id = "{client_key}"
secret_access_key = "{client_secret}"

[[transforms]]
buckets = ["zbucket"]
codec = "zstd"
level = {level}

[[transforms]]
buckets = ["gzbucket"]
codec = "gzip"
level = {gzip_level}
"#,
                endpoint = s3s.endpoint(),
                up_key = upstream.access_key,
                up_secret = upstream.secret_key,
                client_key = client.access_key,
                client_secret = client.secret_key,
            ),
        )
        .start(dir.path());
    let pid = proxy.pid();

    let sha = sha256_cpu_per_gib(&plain);
    println!(
        "corpus: {:.0} MiB (tar of src/ and ~/.cargo/registry/src), zstd level {level}, gzip level {gzip_level}",
        size as f64 / MIB as f64
    );
    println!("| bucket | upload | proxy CPU-s/GiB up | proxy CPU-s/GiB down (s3 cp) | stored/plain | ratio | wall up | wall down |");
    println!("|---|---|---|---|---|---|---|---|");
    // `put-object` is one PUT (the proxy turns it into an upstream
    // multipart upload of 8 MiB compressed parts: zstd's own ratio);
    // `s3 cp` sends 8 MiB client parts, each padded to 5 MiB upstream.
    for (bucket, how) in [
        ("zbucket", "put-object"),
        ("zbucket", "s3 cp"),
        ("gzbucket", "put-object"),
        ("plain", "s3 cp"),
    ] {
        let key = format!("corpus-{}.tar", how.replace(' ', "-"));
        let uri = format!("s3://{bucket}/{key}");
        let back = dir.path().join("back.tar");
        let (cpu0, t0) = (cpu::cpu_seconds(pid), Instant::now());
        let up = if how == "put-object" {
            aws_cli_s3api(
                peers,
                &proxy.endpoint,
                &client,
                &[
                    "put-object",
                    "--bucket",
                    bucket,
                    "--key",
                    &key,
                    "--body",
                    plain.to_str().unwrap(),
                ],
            )
            .await
        } else {
            aws_cli_s3(
                peers,
                &proxy.endpoint,
                &client,
                &["cp".as_ref(), plain.as_os_str(), uri.as_ref()],
            )
            .await
        };
        assert!(up.success(), "upload: {}", up.stderr);
        let (cpu1, t1) = (cpu::cpu_seconds(pid), Instant::now());
        let down = aws_cli_s3(
            peers,
            &proxy.endpoint,
            &client,
            &["cp".as_ref(), uri.as_ref(), back.as_os_str()],
        )
        .await;
        assert!(down.success(), "download: {}", down.stderr);
        let (cpu2, t2) = (cpu::cpu_seconds(pid), Instant::now());
        let stored = std::fs::metadata(s3s.data_dir().join(bucket).join(&key))
            .unwrap()
            .len();
        assert_eq!(
            std::fs::metadata(&back).unwrap().len(),
            size,
            "the download's length"
        );
        std::fs::remove_file(&back).unwrap();
        println!(
            "| {bucket} | {how} | {:.2} | {:.2} | {:.3} | {:.2}x | {:.1} s | {:.1} s |",
            (cpu1 - cpu0) / gib,
            (cpu2 - cpu1) / gib,
            stored as f64 / size as f64,
            size as f64 / stored as f64,
            (t1 - t0).as_secs_f64(),
            (t2 - t1).as_secs_f64(),
        );
    }
    println!("baseline: one SHA-256 pass over the corpus in this process: {sha:.2} CPU-s/GiB");
}
