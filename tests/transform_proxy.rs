//! Issue 17 item 2's acceptance: the `s3tap` binary with a `[[transforms]]`
//! zstd rule (and a gzip one) in front of s3s-fs. boto3, aws-cli and rclone
//! round-trip files of 0 B, 1 B, 5 MiB and 1 GiB (zstd; gzip up to 64 MiB)
//! byte-exact through it; the files s3s-fs holds are read straight from its
//! directory and must be smaller than the plaintext and decompress to it
//! with the format's command line tool (`zstd -d`, `gzip -d`); the
//! clients see the plaintext's length and never the layer's metadata;
//! `Range` reads (boto3's, and the parallel 8 MiB ranges of aws-cli's and
//! boto3's downloads) are byte-exact; objects outside the rule read through
//! unchanged; and the proxy's peak RSS during the 1 GiB transfers stays
//! under a bound that does not depend on the object size.
#![cfg(feature = "proxy")]

mod signing;
mod support;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde_json::Value;

use support::binary::{S3tap, S3tapCommand};
use support::clients::{aws_cli_s3, boto3_script, rclone};
use support::upstreams::{S3sFs, UpstreamPeer};
use support::{Creds, Peers};

const MIB: usize = 1024 * 1024;
const GIB: usize = 1024 * MIB;

const CLIENT_KEY: &str = "TRANSFORMCLIENT";
const CLIENT_SECRET: &str = "transform-client/secret";

/// Peak RSS allowed to the proxy over all the 1 GiB transfers: aws-cli and
/// boto3 send up to 10 parts at once, each held encoded (at most its 8 MiB,
/// padded to 5 MiB) while the next arrives; downloads hold a 256 KiB window
/// each. Nothing in it grows with the object.
const RSS_BOUND_KIB: u64 = 256 * 1024;

fn upstream_creds() -> Creds {
    Creds::new("TRANSFORMUPSTREAM", "transform/upstream+secret")
}

fn client_creds() -> Creds {
    Creds::new(CLIENT_KEY, CLIENT_SECRET)
}

struct Setup {
    peers: &'static Peers,
    s3s: S3sFs,
    proxy: S3tap,
    dir: tempfile::TempDir,
}

/// The codecs under test: the bucket whose rule uses each, and the format's
/// own command line decoder.
#[derive(Clone, Copy, Debug)]
enum Format {
    Zstd,
    Gzip,
}

impl Format {
    fn bucket(self) -> &'static str {
        match self {
            Format::Zstd => "zbucket",
            Format::Gzip => "gzbucket",
        }
    }

    /// `zstd -d` / `gzip -d` of the stored file must give back `plain`
    /// exactly.
    fn cli_decodes(self, stored: &Path, plain: &Path, scratch: &Path) {
        let out = scratch.join("cli-decoded.out");
        let (tool, package) = match self {
            Format::Zstd => ("zstd", "zstd"),
            Format::Gzip => ("gzip", "gzip"),
        };
        let status = Command::new(tool)
            .args(["-d", "-c"])
            .arg(stored)
            .stdout(std::fs::File::create(&out).unwrap())
            .status()
            .unwrap_or_else(|e| {
                panic!("the {tool} command line tool (Debian package {package}): {e}")
            });
        assert!(status.success(), "{tool} -d {} failed", stored.display());
        same_file(plain, &out).unwrap_or_else(|e| panic!("{tool} -d of {}: {e}", stored.display()));
        std::fs::remove_file(out).unwrap();
    }
}

/// s3s-fs with buckets `zbucket` and `gzbucket` (compressed by the rules,
/// zstd and gzip) and `plain` (not), and the proxy in front of it.
async fn setup() -> Option<Setup> {
    let peers = Peers::get()?;
    let s3s = S3sFs::start(&upstream_creds()).await?;
    for bucket in ["zbucket", "gzbucket", "plain"] {
        std::fs::create_dir(s3s.data_dir().join(bucket)).expect("bucket directory");
    }
    let dir = tempfile::tempdir().unwrap();
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
access_key_id = "{CLIENT_KEY}"
secret_access_key = "{CLIENT_SECRET}"

[[transforms]]
buckets = ["zbucket"]
codec = "zstd"
level = 3

[[transforms]]
buckets = ["gzbucket"]
codec = "gzip"
"#,
                endpoint = s3s.endpoint(),
                up_key = upstream_creds().access_key,
                up_secret = upstream_creds().secret_key,
            ),
        )
        .start(dir.path());
    Some(Setup {
        peers,
        s3s,
        proxy,
        dir,
    })
}

/// Compressible but not trivial: lines of words picked by a PRNG, numbers,
/// and every few lines a run of random bytes (about a third of the size
/// survives zstd -3). Written in 1 MiB blocks, so 1 GiB takes seconds.
fn corpus_file(path: &Path, len: usize, seed: u64) {
    const WORDS: &[&str] = &[
        "bucket",
        "object",
        "upload",
        "stream",
        "frame",
        "zstd",
        "proxy",
        "tower",
        "layer",
        "signature",
        "payload",
        "range",
        "index",
        "part",
        "complete",
        "the",
        "a",
        "of",
        "and",
        "request",
        "response",
        "header",
        "metadata",
        "checksum",
        "length",
        "error",
        "retry",
    ];
    let mut state = seed | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut block = Vec::with_capacity(MIB + 256);
    let mut written = 0;
    while written < len {
        block.clear();
        while block.len() < MIB {
            let r = next();
            if r % 7 == 0 {
                for _ in 0..4 {
                    block.extend_from_slice(&next().to_le_bytes());
                }
            } else {
                for i in 0..(r % 12 + 3) {
                    block.extend_from_slice(
                        WORDS[((r >> (i * 4)) as usize + i as usize) % WORDS.len()].as_bytes(),
                    );
                    block.push(b' ');
                }
                block.extend_from_slice(format!("{}", next() % 100_000).as_bytes());
            }
            block.push(b'\n');
        }
        let take = block.len().min(len - written);
        file.write_all(&block[..take]).unwrap();
        written += take;
    }
    file.flush().unwrap();
}

/// Whether two files hold the same bytes (read side by side, 1 MiB at a
/// time: 1 GiB files are never held whole).
fn same_file(a: &Path, b: &Path) -> Result<(), String> {
    let (la, lb) = (
        std::fs::metadata(a)
            .map_err(|e| format!("{}: {e}", a.display()))?
            .len(),
        std::fs::metadata(b)
            .map_err(|e| format!("{}: {e}", b.display()))?
            .len(),
    );
    if la != lb {
        return Err(format!(
            "{} has {la} bytes, {} has {lb}",
            a.display(),
            b.display()
        ));
    }
    let (mut fa, mut fb) = (
        std::fs::File::open(a).unwrap(),
        std::fs::File::open(b).unwrap(),
    );
    let (mut ba, mut bb) = (vec![0u8; MIB], vec![0u8; MIB]);
    let mut offset = 0u64;
    loop {
        let n = read_full(&mut fa, &mut ba);
        let m = read_full(&mut fb, &mut bb);
        if n != m || ba[..n] != bb[..m] {
            let at = ba[..n]
                .iter()
                .zip(&bb[..m])
                .position(|(x, y)| x != y)
                .unwrap_or(n.min(m));
            return Err(format!("first difference at byte {}", offset + at as u64));
        }
        if n == 0 {
            return Ok(());
        }
        offset += n as u64;
    }
}

fn read_full(file: &mut std::fs::File, buf: &mut [u8]) -> usize {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]).unwrap() {
            0 => break,
            n => filled += n,
        }
    }
    filled
}

/// The object file s3s-fs keeps for `bucket/key`.
fn stored(s3s: &S3sFs, bucket: &str, key: &str) -> PathBuf {
    s3s.data_dir().join(bucket).join(key)
}

fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

async fn boto3(setup: &Setup, args: &[&str]) -> Value {
    let mut all: Vec<&std::ffi::OsStr> = vec![setup.proxy.endpoint.as_ref()];
    all.extend(args.iter().map(|a| std::ffi::OsStr::new(*a)));
    let out = boto3_script(setup.peers, "transform_boto3.py", &all, &client_creds()).await;
    assert!(
        out.success(),
        "boto3 {args:?} failed: {}\nproxy log tail:\n{}",
        out.stderr,
        tail(&setup.proxy.logs())
    );
    serde_json::from_str(out.stdout.trim()).unwrap_or(Value::Null)
}

async fn aws_cli(setup: &Setup, args: &[&str]) {
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| std::ffi::OsStr::new(*a)).collect();
    let out = aws_cli_s3(setup.peers, &setup.proxy.endpoint, &client_creds(), &args).await;
    assert!(
        out.success(),
        "aws s3 {args:?} failed: {}\nproxy log tail:\n{}",
        out.stderr,
        tail(&setup.proxy.logs())
    );
}

async fn rclone_run(setup: &Setup, args: &[&str]) {
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| std::ffi::OsStr::new(*a)).collect();
    let out = rclone(setup.peers, &setup.proxy.endpoint, &client_creds(), &args).await;
    assert!(
        out.success(),
        "rclone {args:?} failed: {}{}\nproxy log tail:\n{}",
        out.stdout,
        out.stderr,
        tail(&setup.proxy.logs())
    );
}

fn tail(text: &str) -> &str {
    let start = text.len().saturating_sub(4000);
    let start = (start..text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    &text[start..]
}

/// What a client must see of a transformed object: the plaintext length,
/// none of the layer's metadata.
fn assert_client_view(head: &Value, len: usize) {
    assert_eq!(head["ContentLength"], len as u64, "HEAD: {head}");
    let metadata = head["Metadata"].as_object().expect("Metadata");
    assert!(
        metadata.keys().all(|k| !k.starts_with("s3tap")),
        "the layer's metadata shows: {head}"
    );
}

/// boto3 (one PUT, HEAD, GET, a range), aws-cli and rclone, up and down,
/// with files of 0 B, 1 B and 5 MiB in `format`'s bucket.
async fn small_files_round_trip(setup: &Setup, format: Format) {
    let scratch = setup.dir.path();
    let bucket = format.bucket();
    for (len, name) in [(0, "zero"), (1, "one"), (5 * MIB, "five")] {
        let plain = scratch.join(format!("{name}.txt"));
        corpus_file(&plain, len, 0x5eed + len as u64);
        let back = scratch.join(format!("{name}.back"));

        // boto3: put_object (one PUT), head, get, a range.
        let key = format!("boto3/{name}");
        boto3(setup, &["put", bucket, &key, plain.to_str().unwrap()]).await;
        let on_disk = stored(&setup.s3s, bucket, &key);
        format.cli_decodes(&on_disk, &plain, scratch);
        if len == 5 * MIB {
            let size = std::fs::metadata(&on_disk).unwrap().len();
            assert!(
                size < len as u64 / 2,
                "5 MiB of text stored as {size} bytes: not compressed"
            );
        }
        let head = boto3(setup, &["head", bucket, &key]).await;
        assert_client_view(&head, len);
        assert_eq!(head["ContentType"], "text/plain", "{head}");
        let got = boto3(setup, &["get", bucket, &key, back.to_str().unwrap()]).await;
        assert_client_view(&got, len);
        same_file(&plain, &back).unwrap_or_else(|e| panic!("boto3 GET {key}: {e}"));
        if len > 0 {
            let first = len / 3;
            let last = (first + 100_000).min(len - 1);
            let range = format!("bytes={first}-{last}");
            let got = boto3(
                setup,
                &["range", bucket, &key, back.to_str().unwrap(), &range],
            )
            .await;
            assert_eq!(
                got["ContentRange"],
                format!("bytes {first}-{last}/{len}"),
                "{got}"
            );
            let all = std::fs::read(&plain).unwrap();
            assert_eq!(
                std::fs::read(&back).unwrap(),
                all[first..=last],
                "boto3 {range} of {key} ({format:?})"
            );
        }

        // aws-cli: up and down.
        let uri = format!("s3://{bucket}/cli/{name}");
        aws_cli(setup, &["cp", plain.to_str().unwrap(), &uri]).await;
        format.cli_decodes(
            &stored(&setup.s3s, bucket, &format!("cli/{name}")),
            &plain,
            scratch,
        );
        aws_cli(setup, &["cp", &uri, back.to_str().unwrap()]).await;
        same_file(&plain, &back).unwrap_or_else(|e| panic!("aws-cli {uri}: {e}"));

        // rclone: up and down.
        let remote = format!("e2e:{bucket}/rclone/{name}");
        rclone_run(setup, &["copyto", plain.to_str().unwrap(), &remote]).await;
        format.cli_decodes(
            &stored(&setup.s3s, bucket, &format!("rclone/{name}")),
            &plain,
            scratch,
        );
        std::fs::remove_file(&back).unwrap();
        rclone_run(setup, &["copyto", &remote, back.to_str().unwrap()]).await;
        same_file(&plain, &back).unwrap_or_else(|e| panic!("rclone {remote}: {e}"));
    }
}

#[tokio::test]
async fn small_files_round_trip_compressed_with_boto3_aws_cli_and_rclone() {
    let Some(setup) = setup().await else { return };
    small_files_round_trip(&setup, Format::Zstd).await;

    // Outside the rule nothing changes: the upstream holds the plaintext,
    // and it reads back as it is.
    let scratch = setup.dir.path();
    let plain = scratch.join("plain.txt");
    corpus_file(&plain, MIB, 7);
    boto3(&setup, &["put", "plain", "as-is", plain.to_str().unwrap()]).await;
    same_file(&plain, &stored(&setup.s3s, "plain", "as-is")).expect("stored as sent");
    let back = scratch.join("plain.back");
    let got = boto3(&setup, &["get", "plain", "as-is", back.to_str().unwrap()]).await;
    same_file(&plain, &back).expect("read as stored");
    assert_eq!(got["ContentLength"], MIB as u64);
}

#[tokio::test]
async fn one_gib_files_round_trip_with_aws_cli_boto3_and_rclone_in_bounded_memory() {
    let Some(setup) = setup().await else { return };
    let scratch = setup.dir.path();
    let plain = scratch.join("big.txt");
    let started = Instant::now();
    corpus_file(&plain, GIB, 0xb16);
    eprintln!("1 GiB corpus written in {:?}", started.elapsed());
    let back = scratch.join("big.back");
    let pid = setup.proxy.pid();

    // aws-cli: 8 MiB parts up, parallel 8 MiB ranges down.
    let started = Instant::now();
    aws_cli(
        &setup,
        &["cp", plain.to_str().unwrap(), "s3://zbucket/big/cli"],
    )
    .await;
    let on_disk = stored(&setup.s3s, "zbucket", "big/cli");
    let size = std::fs::metadata(&on_disk).unwrap().len();
    eprintln!(
        "aws-cli up: {:?}, stored {size} bytes ({:.2}x)",
        started.elapsed(),
        GIB as f64 / size as f64
    );
    // 128 client parts of 8 MiB each compress to under 5 MiB and are
    // padded to the upstream's 5 MiB minimum: the padding, not zstd, sets
    // the stored size (the README says so).
    assert!(
        size <= 128 * 5 * MIB as u64 + MIB as u64,
        "stored {size} bytes: more than the padded parts"
    );
    Format::Zstd.cli_decodes(&on_disk, &plain, scratch);
    let started = Instant::now();
    aws_cli(
        &setup,
        &["cp", "s3://zbucket/big/cli", back.to_str().unwrap()],
    )
    .await;
    eprintln!("aws-cli down: {:?}", started.elapsed());
    same_file(&plain, &back).unwrap_or_else(|e| panic!("aws-cli 1 GiB: {e}"));
    std::fs::remove_file(&back).unwrap();

    // boto3: upload_file / download_file (managed, multipart and ranges).
    let started = Instant::now();
    boto3(
        &setup,
        &["upload", "zbucket", "big/boto3", plain.to_str().unwrap()],
    )
    .await;
    Format::Zstd.cli_decodes(&stored(&setup.s3s, "zbucket", "big/boto3"), &plain, scratch);
    let head = boto3(&setup, &["head", "zbucket", "big/boto3"]).await;
    assert_client_view(&head, GIB);
    boto3(
        &setup,
        &["download", "zbucket", "big/boto3", back.to_str().unwrap()],
    )
    .await;
    eprintln!("boto3 up and down: {:?}", started.elapsed());
    same_file(&plain, &back).unwrap_or_else(|e| panic!("boto3 1 GiB: {e}"));
    std::fs::remove_file(&back).unwrap();

    // rclone: multipart above its 200 MiB cutoff.
    let started = Instant::now();
    rclone_run(
        &setup,
        &["copyto", plain.to_str().unwrap(), "e2e:zbucket/big/rclone"],
    )
    .await;
    Format::Zstd.cli_decodes(
        &stored(&setup.s3s, "zbucket", "big/rclone"),
        &plain,
        scratch,
    );
    rclone_run(
        &setup,
        &["copyto", "e2e:zbucket/big/rclone", back.to_str().unwrap()],
    )
    .await;
    eprintln!("rclone up and down: {:?}", started.elapsed());
    same_file(&plain, &back).unwrap_or_else(|e| panic!("rclone 1 GiB: {e}"));

    let peak = vm_hwm_kib(pid);
    eprintln!(
        "proxy peak RSS (VmHWM) over 3 GiB up and 3 GiB down: {} MiB",
        peak / 1024
    );
    assert!(
        peak < RSS_BOUND_KIB,
        "the proxy's peak RSS was {peak} KiB, above the {RSS_BOUND_KIB} KiB bound"
    );
}

#[tokio::test]
async fn a_put_that_outgrows_one_part_becomes_an_upstream_multipart_upload() {
    let Some(setup) = setup().await else { return };
    // 64 MiB of text compresses to well over one 8 MiB part: one client
    // PUT, several upstream parts, no plaintext length in the metadata (the
    // HEAD reads it from the index).
    let len = 64 * MIB;
    let plain = setup.dir.path().join("put.txt");
    corpus_file(&plain, len, 0x64);
    for format in [Format::Zstd, Format::Gzip] {
        one_put_in_upstream_parts(&setup, format, &plain, len).await;
    }
}

async fn one_put_in_upstream_parts(setup: &Setup, format: Format, plain: &Path, len: usize) {
    let scratch = setup.dir.path();
    let bucket = format.bucket();
    boto3(setup, &["put", bucket, "one-put", plain.to_str().unwrap()]).await;
    let on_disk = stored(&setup.s3s, bucket, "one-put");
    let size = std::fs::metadata(&on_disk).unwrap().len();
    assert!(
        size > 8 * MIB as u64 && size < len as u64 / 2,
        "{format:?}: stored {size} bytes: not compressed, or small enough for one part"
    );
    format.cli_decodes(&on_disk, plain, scratch);
    let head = boto3(setup, &["head", bucket, "one-put"]).await;
    assert_client_view(&head, len);
    assert!(
        head["ETag"].as_str().unwrap().contains('-'),
        "the upstream multipart ETag: {head}"
    );
    let back = scratch.join("put.back");
    boto3(setup, &["get", bucket, "one-put", back.to_str().unwrap()]).await;
    same_file(plain, &back).unwrap_or_else(|e| panic!("{format:?} GET: {e}"));
    // Ranges across frame boundaries (frames end every 8 MiB of plaintext),
    // and at the end.
    let ranges = [
        (8 * MIB - 10, 8 * MIB + 10),
        (20 * MIB, 37 * MIB),
        (len - 5, len - 1),
    ];
    ranges_read_back(setup, bucket, "one-put", plain, &ranges).await;
}

/// boto3 `get_object` with each `Range` of `ranges` must give those bytes
/// of `plain`.
async fn ranges_read_back(
    setup: &Setup,
    bucket: &str,
    key: &str,
    plain: &Path,
    ranges: &[(usize, usize)],
) {
    let all = std::fs::read(plain).unwrap();
    let back = setup.dir.path().join("range.back");
    for &(first, last) in ranges {
        let range = format!("bytes={first}-{last}");
        boto3(
            setup,
            &["range", bucket, key, back.to_str().unwrap(), &range],
        )
        .await;
        assert!(
            std::fs::read(&back).unwrap() == all[first..=last],
            "boto3 {range} of {bucket}/{key}"
        );
    }
}

/// gzip, the second built-in codec: the small files of the zstd test, and
/// a client multipart upload whose parts compress below the upstream's
/// 5 MiB minimum and are padded with empty gzip members (about 80 per
/// part: a member carries at most 64 KiB in its header), which `gzip -d`
/// and the layer's own decoder and index reader pass over.
#[tokio::test]
async fn gzip_objects_round_trip_and_the_gzip_tool_reads_them() {
    let Some(setup) = setup().await else { return };
    small_files_round_trip(&setup, Format::Gzip).await;

    let scratch = setup.dir.path();
    let len = 20 * MIB + 12_345;
    let plain = scratch.join("parts.txt");
    corpus_file(&plain, len, 0x9219);
    aws_cli(
        &setup,
        &["cp", plain.to_str().unwrap(), "s3://gzbucket/parts"],
    )
    .await;
    let on_disk = stored(&setup.s3s, "gzbucket", "parts");
    let size = std::fs::metadata(&on_disk).unwrap().len();
    assert!(
        size >= 2 * 5 * MIB as u64 && size < len as u64,
        "three 8 MiB-or-less client parts, the first two padded to 5 MiB: stored {size} bytes"
    );
    Format::Gzip.cli_decodes(&on_disk, &plain, scratch);
    let head = boto3(&setup, &["head", "gzbucket", "parts"]).await;
    assert_client_view(&head, len);
    let back = scratch.join("parts.back");
    aws_cli(
        &setup,
        &["cp", "s3://gzbucket/parts", back.to_str().unwrap()],
    )
    .await;
    same_file(&plain, &back).unwrap_or_else(|e| panic!("aws-cli GET: {e}"));
    // Across the padded parts, and at the end.
    let ranges = [(8 * MIB - 3, 16 * MIB + 3), (len - 1, len - 1)];
    ranges_read_back(&setup, "gzbucket", "parts", &plain, &ranges).await;
}

/// A stored object damaged on the upstream's disk must fail the download:
/// a client never takes damaged bytes for the object. The plaintext is
/// random (it does not compress), so both codecs store it as it is and the
/// flipped byte still decodes, to a wrong byte: only the frame's checksum
/// (zstd's XXH64, gzip's CRC-32) finds it, and the proxy withholds the
/// download's last bytes until that checksum is checked.
#[tokio::test]
async fn a_stored_object_damaged_upstream_fails_the_download_for_boto3_and_aws_cli() {
    let Some(setup) = setup().await else { return };
    let scratch = setup.dir.path();
    let len = 3 * MIB;
    let (plain, _) = support::random_file(scratch, "random.bin", len, 0x2545_f491_4f6c_dd1d);
    for format in [Format::Zstd, Format::Gzip] {
        let bucket = format.bucket();
        boto3(&setup, &["put", bucket, "damaged", plain.to_str().unwrap()]).await;
        let on_disk = stored(&setup.s3s, bucket, "damaged");
        let back = scratch.join("damaged.back");
        // Sound, it reads back.
        boto3(&setup, &["get", bucket, "damaged", back.to_str().unwrap()]).await;
        same_file(&plain, &back).unwrap_or_else(|e| panic!("{format:?} before the damage: {e}"));
        std::fs::remove_file(&back).unwrap();

        let mut bytes = std::fs::read(&on_disk).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 0x10;
        std::fs::write(&on_disk, &bytes).unwrap();

        let words = [
            setup.proxy.endpoint.as_str(),
            "get",
            bucket,
            "damaged",
            back.to_str().unwrap(),
        ];
        let args: Vec<&std::ffi::OsStr> = words.iter().map(std::ffi::OsStr::new).collect();
        let out = boto3_script(setup.peers, "transform_boto3.py", &args, &client_creds()).await;
        assert!(
            !out.success(),
            "boto3 read a damaged {format:?} object as whole: {}",
            out.stdout
        );
        let got = std::fs::read(&back).unwrap_or_default();
        assert!(got.len() < len, "{format:?}: boto3 got every byte");

        let uri = format!("s3://{bucket}/damaged");
        let cli_back = scratch.join("damaged.cli");
        let words = ["cp", uri.as_str(), cli_back.to_str().unwrap()];
        let cli_args: Vec<&std::ffi::OsStr> = words.iter().map(std::ffi::OsStr::new).collect();
        let out = aws_cli_s3(
            setup.peers,
            &setup.proxy.endpoint,
            &client_creds(),
            &cli_args,
        )
        .await;
        assert!(!out.success(), "aws-cli read a damaged {format:?} object");
        assert!(
            !cli_back.exists(),
            "aws-cli left a file from a failed download of {format:?}"
        );
        assert!(
            setup.proxy.logs().contains("does not decode"),
            "the proxy's log names the damage: {}",
            tail(&setup.proxy.logs())
        );
    }
}

#[tokio::test]
async fn the_readme_example_loads_and_bad_rules_stop_the_start() {
    let example = support::readme_toml_example(|block| block.contains("[[transforms]]"));
    let base = r#"
[upstream]
endpoint = "http://127.0.0.1:9"
credentials = "fixed"
access_key_id = "UP"
secret_access_key = "upstream-secret"

[[clients]]
access_key_id = "CLIENT"
secret_access_key = "client-secret"
"#;
    let dir = tempfile::tempdir().unwrap();
    let mut proxy = S3tapCommand::new()
        .config(dir.path(), &format!("{base}\n{example}"))
        .start(dir.path());
    assert!(proxy.alive(), "the README's [[transforms]] example");
    drop(proxy);
    for (rule, says) in [
        ("codec = \"brotli\"", "unknown codec \"brotli\""),
        ("codec = \"zstd\"\nlevel = 40", "level = 40"),
        ("codec = \"gzip\"\nlevel = 12", "outside gzip's 1..=9"),
        ("codec = \"zstd\"\nlevle = 3", "levle"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (code, stderr) = S3tapCommand::new()
            .config(dir.path(), &format!("{base}\n[[transforms]]\n{rule}\n"))
            .refused(dir.path());
        assert_eq!(code, Some(2), "{rule}: {stderr}");
        assert!(stderr.contains(says), "{rule}: {stderr}");
    }
}

#[tokio::test]
async fn an_upload_whose_payload_hash_is_forged_stores_nothing() {
    use aws_sigv4::http_request::SignableBody;
    use sha2::{Digest, Sha256};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let Some(setup) = setup().await else { return };
    let addr = setup.proxy.addr;
    // 12 MiB of one byte compresses to almost nothing: one PUT upstream,
    // sent only after the body ended, so the forged hash is known first.
    // 40 MiB of text outgrows one part: the upstream multipart upload is
    // opened, then aborted.
    let repetitive = vec![b'x'; 12 * MIB];
    let text = {
        let path = setup.dir.path().join("text");
        corpus_file(&path, 40 * MIB, 9);
        std::fs::read(path).unwrap()
    };
    for (key, payload) in [("forged-small", repetitive), ("forged-large", text)] {
        let mut request = http::Request::builder()
            .method("PUT")
            .uri(format!("http://{addr}/zbucket/{key}"))
            .header("host", addr.to_string())
            .header("content-length", payload.len())
            .body(bytes::Bytes::new())
            .unwrap();
        let other = hex::encode(Sha256::digest(b"other bytes"));
        signing::sign_with(
            &mut request,
            SignableBody::Precomputed(other),
            &signing::SignOptions {
                access_key: CLIENT_KEY,
                secret: CLIENT_SECRET,
                time: std::time::SystemTime::now(),
                ..signing::SignOptions::default()
            },
        );
        let mut head = format!("PUT /zbucket/{key} HTTP/1.1\r\n");
        for (name, value) in request.headers() {
            head.push_str(&format!("{name}: {}\r\n", value.to_str().unwrap()));
        }
        head.push_str("connection: close\r\n\r\n");
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        let _ = stream.write_all(&payload).await;
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.starts_with("HTTP/1.1 400") && answer.contains("XAmzContentSHA256Mismatch"),
            "{key}: {answer}"
        );
        assert!(
            !stored(&setup.s3s, "zbucket", key).exists(),
            "{key}: a forged upload was stored"
        );
    }
    // Nothing of the aborted upload is left either (s3s-fs keeps open
    // uploads' parts beside the buckets).
    let leftovers: Vec<String> = setup
        .s3s
        .files()
        .into_iter()
        .filter(|f| f.contains("forged"))
        .collect();
    assert!(leftovers.is_empty(), "left upstream: {leftovers:?}");
}
