//! Browser form uploads (presigned POST) through the `s3tap` binary: boto3's
//! `generate_presigned_post` writes the forms and `requests` posts them as
//! a browser does (the file part last, no length on it). The stored objects
//! are compared byte for byte in s3s-fs and moto; refusals (a file over
//! `content-length-range`, a key outside the policy's prefix, a forged
//! signature, ...) are S3's codes and reach the upstream with no byte (the
//! proxy's upstream request count and the s3s-fs directory do not move);
//! `AuthorizeLayer` decides a form upload as `s3:PutObject` on its key; the
//! event is `PostObject` (`s3:ObjectCreated:Post`) with the key; a 1 GiB
//! form keeps the proxy's memory flat.

#![cfg(feature = "proxy")]

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use support::binary::{S3tap, S3tapCommand};
use support::clients::boto3_script;
use support::upstreams::{Moto, S3sFs, UpstreamPeer};
use support::{random_bytes, Creds, Peers};

const ADMIN: (&str, &str) = ("ADMINKEY", "admin-secret-5f1e");
const READER: (&str, &str) = ("READERKEY", "reader-secret-9a2b");
const WRITER: (&str, &str) = ("WRITERKEY", "writer-secret-2b8c");

fn creds((id, secret): (&str, &str)) -> Creds {
    Creds::new(id, secret)
}

fn proxy_in_front_of(upstream: &dyn UpstreamPeer, dir: &Path) -> S3tap {
    let up = upstream.creds();
    S3tapCommand::new()
        .config(
            dir,
            &format!(
                r#"
[upstream]
endpoint = "{endpoint}"
credentials = "fixed"
access_key_id = "{up_key}"
secret_access_key = "{up_secret}"

[[clients]]
access_key_id = "{admin}"
secret_access_key = "{admin_secret}"

[[clients]]
access_key_id = "{reader}"
secret_access_key = "{reader_secret}"
identity = "reader"
readonly = ["bkt"]

[[clients]]
access_key_id = "{writer}"
secret_access_key = "{writer_secret}"
identity = "photos-writer"
readwrite = ["bkt/photos/"]
"#,
                endpoint = upstream.endpoint(),
                up_key = up.access_key,
                up_secret = up.secret_key,
                admin = ADMIN.0,
                admin_secret = ADMIN.1,
                reader = READER.0,
                reader_secret = READER.1,
                writer = WRITER.0,
                writer_secret = WRITER.1,
            ),
        )
        .start(dir)
}

/// Posts `cases` with boto3 + requests as `ADMIN`; one result per case, by name.
async fn post(peers: &Peers, proxy: &S3tap, cases: &[Value]) -> BTreeMap<String, Value> {
    let cases = serde_json::to_string(cases).unwrap();
    let out = boto3_script(
        peers,
        "boto3_post.py",
        &[proxy.endpoint.as_ref(), cases.as_ref()],
        &creds(ADMIN),
    )
    .await;
    out.assert_success(&format!("boto3_post.py; proxy log:\n{}", proxy.logs()));
    out.stdout
        .lines()
        .map(|line| {
            let result: Value = serde_json::from_str(line).unwrap();
            (result["name"].as_str().unwrap().to_owned(), result)
        })
        .collect()
}

/// The object as boto3 reads it from `endpoint` with `who`'s key: size,
/// sha256, content type, metadata.
async fn stored(peers: &Peers, endpoint: &str, who: &Creds, key: &str) -> Value {
    let out = boto3_script(
        peers,
        "boto3_post.py",
        &[
            "get".as_ref(),
            endpoint.as_ref(),
            "bkt".as_ref(),
            key.as_ref(),
        ],
        who,
    )
    .await;
    out.assert_success(&format!("boto3 get {key}"));
    serde_json::from_str(out.stdout.trim()).unwrap()
}

async fn metric(proxy: &S3tap, prefix: &str) -> f64 {
    let (status, text) = proxy.admin_get("/metrics").await;
    assert_eq!(status, 200);
    text.lines()
        .find(|line| line.starts_with(prefix))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0)
}

async fn upstream_requests(proxy: &S3tap) -> f64 {
    metric(proxy, "s3tap_upstream_latency_seconds_count").await
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn write(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, data).unwrap();
    path
}

/// Every object file under the s3s-fs directory (not its metadata files).
fn objects(s3s: &S3sFs) -> Vec<String> {
    let mut files: Vec<String> = s3s
        .files()
        .into_iter()
        .filter(|name| !name.split('/').any(|part| part.starts_with('.')))
        .collect();
    files.sort();
    files
}

fn case(name: &str, key: &str, file: &Path) -> Value {
    json!({"name": name, "bucket": "bkt", "key": key, "file": file})
}

#[tokio::test]
async fn boto3_forms_through_the_binary_in_front_of_s3s_fs() {
    let Some(peers) = Peers::get() else { return };
    let upstream = Creds::new("UPSTREAMKEY", "upstream-secret-1d2e");
    let Some(s3s) = S3sFs::start(&upstream).await else {
        return;
    };
    std::fs::create_dir(s3s.data_dir().join("bkt")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let proxy = proxy_in_front_of(&s3s, dir.path());
    let photo = random_bytes(300_000, 0x5eed_0001);
    let photo_path = write(dir.path(), "photo.jpg", &photo);
    let small = random_bytes(10, 0x5eed_0002);
    let small_path = write(dir.path(), "small.bin", &small);

    // Accepted forms: 204 by default, 201 with the PostResponse, 303 to the
    // redirect; ${filename}, Content-Type and metadata reach the object.
    let mut photo_case = case("default", "uploads/${filename}", &photo_path);
    photo_case["filename"] = json!("cat.jpg");
    photo_case["fields"] = json!({"Content-Type": "image/jpeg", "x-amz-meta-owner": "alice"});
    photo_case["conditions"] = json!([
        ["starts-with", "$key", "uploads/"],
        ["content-length-range", 1, 1048576],
        {"Content-Type": "image/jpeg"},
        {"x-amz-meta-owner": "alice"}
    ]);
    let mut created = case("created", "uploads/created.bin", &small_path);
    created["fields"] = json!({"success_action_status": "201"});
    created["conditions"] = json!([{"success_action_status": "201"}]);
    let mut redirected = case("redirected", "uploads/redirected.bin", &small_path);
    redirected["fields"] = json!({"success_action_redirect": "http://app.example/done?x=1"});
    redirected["conditions"] = json!([[
        "starts-with",
        "$success_action_redirect",
        "http://app.example/"
    ]]);
    let results = post(peers, &proxy, &[photo_case, created, redirected]).await;
    let log = proxy.logs();
    assert_eq!(results["default"]["status"], 204, "{results:?}\n{log}");
    assert_eq!(
        std::fs::read(s3s.data_dir().join("bkt/uploads/cat.jpg")).unwrap(),
        photo,
        "the stored object is the file, byte for byte"
    );
    let md5 = |data: &[u8]| {
        use md5::Digest as _;
        format!("\"{}\"", hex::encode(md5::Md5::digest(data)))
    };
    assert_eq!(results["default"]["etag"], md5(&photo));
    let object = stored(peers, &proxy.endpoint, &creds(ADMIN), "uploads/cat.jpg").await;
    assert_eq!(object["sha256"], sha256_hex(&photo));
    assert_eq!(object["content_type"], "image/jpeg");
    assert_eq!(object["metadata"], json!({"owner": "alice"}));

    assert_eq!(results["created"]["status"], 201, "{results:?}");
    let body = results["created"]["body"].as_str().unwrap();
    for part in [
        "<PostResponse>",
        "<Bucket>bkt</Bucket>",
        "<Key>uploads/created.bin</Key>",
        &format!("<ETag>{}</ETag>", md5(&small).replace('"', "&quot;")),
        &format!(
            "<Location>{}/bkt/uploads/created.bin</Location>",
            proxy.endpoint
        ),
    ] {
        assert!(body.contains(part), "{part} not in {body}");
    }
    assert_eq!(results["redirected"]["status"], 303, "{results:?}");
    let etag = md5(&small).replace('"', "%22");
    assert_eq!(
        results["redirected"]["location"],
        format!("http://app.example/done?x=1&bucket=bkt&key=uploads%2Fredirected.bin&etag={etag}")
    );
    for key in ["uploads/created.bin", "uploads/redirected.bin"] {
        assert_eq!(
            std::fs::read(s3s.data_dir().join("bkt").join(key)).unwrap(),
            small
        );
    }

    // Refused forms: S3's codes, and not one request upstream.
    let before_objects = objects(&s3s);
    let before_upstream = upstream_requests(&proxy).await;
    let big = random_bytes(1000, 0x5eed_0003);
    let big_path = write(dir.path(), "big.bin", &big);
    let limited = |name: &str, file: &Path, min: u64, max: u64| {
        let mut c = case(name, "uploads/limited.bin", file);
        c["conditions"] = json!([["content-length-range", min, max]]);
        c
    };
    let mut wrong_prefix = case("wrong_prefix", "uploads/${filename}", &small_path);
    wrong_prefix["conditions"] = json!([["starts-with", "$key", "uploads/"]]);
    wrong_prefix["tamper"] = json!({"key": "private/stolen.bin"});
    let mut forged = case("forged", "uploads/forged.bin", &small_path);
    forged["tamper"] = json!({"x-amz-signature": "0".repeat(64)});
    let mut expired = case("expired", "uploads/expired.bin", &small_path);
    expired["expires"] = json!(-60);
    let mut extra = case("extra_field", "uploads/extra.bin", &small_path);
    extra["extra"] = json!({"x-amz-meta-unsigned": "1"});
    let mut unknown = case("unknown_key", "uploads/unknown.bin", &small_path);
    unknown["creds"] = json!(["NOSUCHKEY", "whatever-secret"]);
    let mut no_policy = case("no_policy", "uploads/anonymous.bin", &small_path);
    no_policy["tamper"] = json!({"policy": null, "x-amz-signature": null});
    let results = post(
        peers,
        &proxy,
        &[
            limited("too_large", &big_path, 0, 100),
            limited("too_small", &small_path, 512, 1000),
            wrong_prefix,
            forged,
            expired,
            extra,
            unknown,
            no_policy,
        ],
    )
    .await;
    let expect = |name: &str, status: u64, code: &str, message: &str| {
        let result = &results[name];
        assert_eq!(
            (result["status"].as_u64(), result["code"].as_str()),
            (Some(status), Some(code)),
            "{name}: {result}"
        );
        assert!(
            result["body"].as_str().unwrap().contains(message),
            "{name}: {result}"
        );
    };
    expect(
        "too_large",
        400,
        "EntityTooLarge",
        "exceeds the maximum allowed size",
    );
    expect(
        "too_small",
        400,
        "EntityTooSmall",
        "smaller than the minimum allowed size",
    );
    expect(
        "wrong_prefix",
        403,
        "AccessDenied",
        "Invalid according to Policy: Policy Condition failed: [&quot;starts-with&quot;, &quot;$key&quot;, &quot;uploads/&quot;]",
    );
    expect("forged", 403, "SignatureDoesNotMatch", "signature");
    expect("expired", 403, "AccessDenied", "Policy expired");
    expect(
        "extra_field",
        403,
        "AccessDenied",
        "Extra input fields: x-amz-meta-unsigned",
    );
    expect("unknown_key", 403, "InvalidAccessKeyId", "does not exist");
    expect("no_policy", 403, "AccessDenied", "Anonymous");
    assert_eq!(
        objects(&s3s),
        before_objects,
        "a refused form stored something"
    );
    assert_eq!(
        upstream_requests(&proxy).await,
        before_upstream,
        "a refused form went upstream; log:\n{}",
        proxy.logs()
    );
    // The request log names the key of a refused form.
    assert!(
        proxy
            .logs()
            .lines()
            .any(|l| l.contains("access_key_id=\"NOSUCHKEY\"") && l.contains("status=403")),
        "{}",
        proxy.logs()
    );
    let (_, metrics) = proxy.admin_get("/metrics").await;
    assert!(
        metrics.contains("post_too_large") && metrics.contains("signature_mismatch"),
        "refusals are counted by reason:\n{metrics}"
    );

    // AuthorizeLayer decides a form upload as PutObject on its key: a
    // readonly client is refused before the upstream, a prefix-scoped
    // writer uploads inside its prefix only.
    let mut reader = case("reader", "photos/r.bin", &small_path);
    reader["creds"] = json!([READER.0, READER.1]);
    let mut inside = case("writer_inside", "photos/w.bin", &small_path);
    inside["creds"] = json!([WRITER.0, WRITER.1]);
    let mut outside = case("writer_outside", "other/w.bin", &small_path);
    outside["creds"] = json!([WRITER.0, WRITER.1]);
    let before_upstream = upstream_requests(&proxy).await;
    let results = post(peers, &proxy, &[reader, outside]).await;
    for name in ["reader", "writer_outside"] {
        assert_eq!(
            (
                results[name]["status"].as_u64(),
                results[name]["code"].as_str()
            ),
            (Some(403), Some("AccessDenied")),
            "{name}: {}",
            results[name]
        );
    }
    assert_eq!(upstream_requests(&proxy).await, before_upstream);
    assert!(proxy.logs().contains("s3:PutObject"), "{}", proxy.logs());
    let results = post(peers, &proxy, &[inside]).await;
    assert_eq!(results["writer_inside"]["status"], 204, "{results:?}");
    assert_eq!(
        std::fs::read(s3s.data_dir().join("bkt/photos/w.bin")).unwrap(),
        small
    );

    // The event: PostObject with the form's key, size and content type.
    assert!(
        proxy.wait_stdout(Duration::from_secs(10), |out| out.contains("photos/w.bin")),
        "{}",
        proxy.stdout()
    );
    let events: Vec<Value> = proxy
        .stdout()
        .lines()
        .filter(|line| line.starts_with('{'))
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let event = events
        .iter()
        .find(|e| e["key"] == "uploads/cat.jpg")
        .unwrap_or_else(|| panic!("no event for the form upload in {events:?}"));
    assert_eq!(event["operation"], "PostObject", "{event}");
    assert_eq!(event["bucket"], "bkt");
    assert_eq!(event["status"], 204);
    assert_eq!(event["size"], photo.len());
    assert_eq!(event["content_type"], "image/jpeg", "{event}");
    assert_eq!(event["event_name"], "s3:ObjectCreated:Post");
}

#[tokio::test]
async fn boto3_form_through_the_binary_in_front_of_moto() {
    let Some(peers) = Peers::get() else { return };
    let Some(moto) = Moto::start().await else {
        return;
    };
    let make_bucket = boto3_script(
        peers,
        "boto3_post.py",
        &[
            "mkbucket".as_ref(),
            moto.endpoint().as_ref(),
            "bkt".as_ref(),
        ],
        moto.creds(),
    )
    .await;
    make_bucket.assert_success("create bucket in moto");
    let dir = tempfile::tempdir().unwrap();
    let proxy = proxy_in_front_of(&moto, dir.path());
    let data = random_bytes(2 * 1024 * 1024 + 17, 0x5eed_0004);
    let path = write(dir.path(), "doc.pdf", &data);
    let mut form = case("moto", "docs/${filename}", &path);
    form["filename"] = json!("doc.pdf");
    form["fields"] = json!({"Content-Type": "application/pdf", "success_action_status": "201"});
    form["conditions"] = json!([
        ["starts-with", "$key", "docs/"],
        ["content-length-range", 0, 10485760],
        ["eq", "$Content-Type", "application/pdf"],
        {"success_action_status": "201"}
    ]);
    let results = post(peers, &proxy, &[form]).await;
    assert_eq!(
        results["moto"]["status"],
        201,
        "{results:?}\n{}",
        proxy.logs()
    );
    // Read back from moto itself, with the upstream's key.
    let object = stored(peers, moto.endpoint(), moto.creds(), "docs/doc.pdf").await;
    assert_eq!(object["size"], data.len());
    assert_eq!(object["sha256"], sha256_hex(&data));
    assert_eq!(object["content_type"], "application/pdf");
}

#[tokio::test]
async fn a_real_browser_submits_the_form_through_headless_chromium() {
    let Some(peers) = Peers::get() else { return };
    let upstream = Creds::new("UPSTREAMKEY", "upstream-secret-1d2e");
    let Some(s3s) = S3sFs::start(&upstream).await else {
        return;
    };
    std::fs::create_dir(s3s.data_dir().join("bkt")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let proxy = proxy_in_front_of(&s3s, dir.path());
    let data = random_bytes(200_000, 0x5eed_0007);
    let path = write(dir.path(), "notes.txt", &data);
    let out = boto3_script(
        peers,
        "chromium_post.py",
        &[
            proxy.endpoint.as_ref(),
            "bkt".as_ref(),
            "browser/${filename}".as_ref(),
            path.as_os_str(),
            peers.chromium().as_os_str(),
        ],
        &creds(ADMIN),
    )
    .await;
    out.assert_success(&format!("chromium_post.py; proxy log:\n{}", proxy.logs()));
    // The browser followed the 303 to the page's own redirect target.
    let landed: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(landed["bucket"], "bkt");
    assert_eq!(landed["key"], "browser/notes.txt");
    let md5 = {
        use md5::Digest as _;
        format!("\"{}\"", hex::encode(md5::Md5::digest(&data)))
    };
    assert_eq!(landed["etag"], md5);
    assert_eq!(
        std::fs::read(s3s.data_dir().join("bkt/browser/notes.txt")).unwrap(),
        data
    );
}

/// Peak resident memory of a process (`VmHWM`), bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .expect("VmHWM")
}

/// A file of `len` pseudo-random bytes written 1 MiB at a time: eight
/// random MiB blocks in turn, each stamped with its index, so no two MiB are
/// alike (a misplaced or repeated piece shows) without generating a GiB of
/// random bytes in a debug build.
fn big_file(path: &Path, len: u64, seed: u64) {
    let blocks: Vec<Vec<u8>> = (0..8).map(|i| random_bytes(1 << 20, seed ^ i)).collect();
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut written = 0u64;
    let mut i = 0u64;
    while written < len {
        let size = (len - written).min(1 << 20) as usize;
        let mut piece = blocks[(i % 8) as usize][..size].to_vec();
        let stamp = i.to_le_bytes();
        let n = stamp.len().min(piece.len());
        piece[..n].copy_from_slice(&stamp[..n]);
        file.write_all(&piece).unwrap();
        written += piece.len() as u64;
        i += 1;
    }
    file.flush().unwrap();
}

/// Whether two files hold the same bytes (compared 1 MiB at a time: a
/// digest would cost more than the upload in a debug build).
fn same_bytes(a: &Path, b: &Path) -> bool {
    let (mut a, mut b) = (
        std::fs::File::open(a).unwrap(),
        std::fs::File::open(b).unwrap(),
    );
    let (mut x, mut y) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = read_full(&mut a, &mut x);
        let m = read_full(&mut b, &mut y);
        if n != m || x[..n] != y[..m] {
            return false;
        }
        if n == 0 {
            return true;
        }
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

#[tokio::test]
async fn a_one_gib_form_keeps_memory_bounded_spooled_or_streamed() {
    let Some(peers) = Peers::get() else { return };
    let upstream = Creds::new("UPSTREAMKEY", "upstream-secret-1d2e");
    let Some(s3s) = S3sFs::start(&upstream).await else {
        return;
    };
    std::fs::create_dir(s3s.data_dir().join("bkt")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let proxy = proxy_in_front_of(&s3s, dir.path());
    let warm = write(dir.path(), "warm.bin", &random_bytes(4 << 20, 7));
    let results = post(peers, &proxy, &[case("warm", "warm.bin", &warm)]).await;
    assert_eq!(results["warm"]["status"], 204, "{results:?}");
    let baseline = peak_rss(proxy.pid());

    const GIB: u64 = 1 << 30;
    let path = dir.path().join("big.bin");
    big_file(&path, GIB, 0x5eed_0005);
    // As a browser sends a big file: no length on the part, so it is spooled.
    let mut spooled = case("spooled", "big/spooled.bin", &path);
    spooled["sender"] = json!("stream");
    spooled["conditions"] = json!([["content-length-range", 0, 2 * GIB]]);
    // With the part's own Content-Length: streamed straight through.
    let mut streamed = case("streamed", "big/streamed.bin", &path);
    streamed["sender"] = json!("stream");
    streamed["part_length"] = json!(true);
    let started = std::time::Instant::now();
    let results = post(peers, &proxy, &[spooled, streamed]).await;
    let took = started.elapsed();
    for name in ["spooled", "streamed"] {
        assert_eq!(
            results[name]["status"],
            204,
            "{name}: {results:?}\n{}",
            proxy.logs()
        );
        assert!(
            same_bytes(
                &s3s.data_dir().join("bkt/big").join(format!("{name}.bin")),
                &path
            ),
            "{name}: the stored object is not the file"
        );
    }
    let peak = peak_rss(proxy.pid());
    eprintln!(
        "two 1 GiB form uploads in {took:?}; proxy peak RSS {} MiB before, {} MiB after",
        baseline >> 20,
        peak >> 20
    );
    assert!(
        peak < baseline + (64 << 20),
        "memory grew with the upload: {} MiB -> {} MiB",
        baseline >> 20,
        peak >> 20
    );
}

#[tokio::test]
async fn a_streamed_part_outside_its_range_or_its_stated_length_stores_nothing() {
    let Some(peers) = Peers::get() else { return };
    let upstream = Creds::new("UPSTREAMKEY", "upstream-secret-1d2e");
    let Some(s3s) = S3sFs::start(&upstream).await else {
        return;
    };
    std::fs::create_dir(s3s.data_dir().join("bkt")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let proxy = proxy_in_front_of(&s3s, dir.path());
    let data = random_bytes(3 << 20, 0x5eed_0006);
    let path = write(dir.path(), "part.bin", &data);

    // A stated length over the range is refused before any byte goes up.
    let before = upstream_requests(&proxy).await;
    let mut over = case("over", "s/over.bin", &path);
    over["sender"] = json!("stream");
    over["part_length"] = json!(true);
    over["conditions"] = json!([["content-length-range", 0, 1024]]);
    let results = post(peers, &proxy, &[over]).await;
    assert_eq!(results["over"]["status"], 400, "{results:?}");
    assert_eq!(
        results["over"]["code"],
        "EntityTooLarge",
        "{}",
        proxy.logs()
    );
    assert_eq!(upstream_requests(&proxy).await, before);

    // A part with more bytes than it stated: the upstream request is cut
    // before its last byte, so nothing is stored, and the client is told.
    let mut lying = case("lying", "s/lying.bin", &path);
    lying["sender"] = json!("stream");
    lying["part_length"] = json!(1 << 20);
    let results = post(peers, &proxy, &[lying]).await;
    assert_ne!(results["lying"]["status"], 204, "{results:?}");
    assert!(
        proxy.wait_log("post_length_mismatch", Duration::from_secs(10)),
        "{}",
        proxy.logs()
    );
    assert!(
        !s3s.data_dir().join("bkt/s/lying.bin").exists(),
        "an object was stored from a part that lied about its length"
    );
    assert!(objects(&s3s).is_empty(), "{:?}", objects(&s3s));
}
