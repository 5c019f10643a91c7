//! Issue 3's end-to-end acceptance: "Any S3 client that works with Backblaze
//! B2 must work unchanged through s3tap by changing only its endpoint, and
//! nothing may tell the two paths apart except the notifications."
//!
//! Real clients (boto3 over HTTP and HTTPS, aws-cli, rclone, aws-sdk-rust,
//! the AWS JS SDK v3, hand-signed aws-chunked uploads) talk to the proxy
//! stack of `support::proxy` in front of two real upstreams that check
//! SigV4 themselves: s3s-fs (one key pair, never the client's) and moto
//! server with signature checking on. What the upstream stored is read back
//! directly from it, and the everyday calls are compared with the same calls
//! sent directly. The upstream rejecting nothing the client signed correctly
//! is every success below; forged uploads must leave nothing upstream; and
//! where the client's key is not the upstream's, no request the upstream got
//! carries it.
#![cfg(feature = "upstream")]

mod signing;
mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sigv4::http_request::SignableBody;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use sha2::{Digest, Sha256};

use signing::{sign_with, signed_chunked_upload_with, SignOptions};
use support::clients::{aws_cli_s3, boto3_ops, rclone};
use support::proxy::{KeyMode, ProxyUnderTest, CLIENT_KEY, CLIENT_SECRET};
use support::upstreams::{Moto, S3sFs, UpstreamPeer};
use support::{boto3_put, fresh_seed, js_sdk_stream_put, random_bytes, random_file, Creds, Peers};

const MIB: usize = 1024 * 1024;

/// The only key s3s-fs knows: never the one clients of the proxy hold
/// (except in `KeyMode::ClientKeys`).
fn s3s_fs_creds() -> Creds {
    Creds::new("UPSTREAMKEY", "upstream/secret+value")
}

async fn s3s_fs() -> Option<S3sFs> {
    S3sFs::start(&s3s_fs_creds()).await
}

// ---------------------------------------------------------------------------
// Direct access to the upstream (aws-sdk-rust with the upstream's key), to
// read back what the proxy made it store.

fn sdk_client(endpoint: &str, creds: &Creds) -> aws_sdk_s3::Client {
    use aws_sdk_s3::config::{retry::RetryConfig, BehaviorVersion, Credentials, Region};
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(creds.region.clone()))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .credentials_provider(Credentials::new(
            &creds.access_key,
            &creds.secret_key,
            None,
            None,
            "e2e",
        ))
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        // A rejected request must fail the test at once, not be retried.
        .retry_config(RetryConfig::disabled())
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

fn direct(upstream: &dyn UpstreamPeer) -> aws_sdk_s3::Client {
    sdk_client(upstream.endpoint(), upstream.creds())
}

fn sdk_error(error: &impl std::error::Error) -> String {
    aws_sdk_s3::error::DisplayErrorContext(error).to_string()
}

async fn create_bucket(upstream: &dyn UpstreamPeer, bucket: &str) {
    direct(upstream)
        .create_bucket()
        .bucket(bucket)
        .send()
        .await
        .unwrap_or_else(|e| panic!("create {bucket} on {}: {}", upstream.name(), sdk_error(&e)));
}

/// The object's bytes as the upstream serves them, `None` for 404.
async fn direct_get(upstream: &dyn UpstreamPeer, bucket: &str, key: &str) -> Option<Vec<u8>> {
    match direct(upstream)
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
    {
        Ok(out) => Some(out.body.collect().await.unwrap().into_bytes().to_vec()),
        Err(e) if e.raw_response().map(|r| r.status().as_u16()) == Some(404) => None,
        Err(e) => panic!("direct GET {bucket}/{key}: {}", sdk_error(&e)),
    }
}

/// HEAD status straight from the upstream.
async fn direct_head_status(upstream: &dyn UpstreamPeer, bucket: &str, key: &str) -> u16 {
    match direct(upstream)
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
    {
        Ok(_) => 200,
        Err(e) => e
            .raw_response()
            .map(|r| r.status().as_u16())
            .unwrap_or_else(|| panic!("direct HEAD {bucket}/{key}: {}", sdk_error(&e))),
    }
}

/// Every key under `prefix`, as the upstream lists it.
async fn direct_keys(upstream: &dyn UpstreamPeer, bucket: &str, prefix: &str) -> Vec<String> {
    let client = direct(upstream);
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let out = client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_continuation_token(token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("direct list {bucket}/{prefix}: {}", sdk_error(&e)));
        keys.extend(
            out.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned)),
        );
        token = out.next_continuation_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    keys.sort();
    keys
}

#[track_caller]
fn assert_same_bytes(got: Option<Vec<u8>>, expected: &[u8], what: &str) {
    let got = got.unwrap_or_else(|| panic!("{what}: not found upstream"));
    assert_eq!(got.len(), expected.len(), "{what}: stored length");
    assert!(
        got == expected,
        "{what}: stored bytes differ from the source"
    );
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Where clients hold their own key, the upstream never sees it: not in an
/// Authorization header, not in a query, nowhere.
#[track_caller]
fn assert_client_key_never_upstream(proxy: &ProxyUnderTest, upstream: &dyn UpstreamPeer) {
    let seen = proxy.upstream_requests();
    assert!(!seen.is_empty(), "no request reached {}", upstream.name());
    if proxy.client_creds().access_key == upstream.creds().access_key {
        return;
    }
    for request in &seen {
        assert!(
            !request.mentions(CLIENT_KEY),
            "the client's key reached {}: {} {} {:?}",
            upstream.name(),
            request.method,
            request.uri,
            request.headers
        );
        let authorization = request.headers["authorization"].to_str().unwrap();
        assert!(
            authorization.contains(&format!("Credential={}/", upstream.creds().access_key)),
            "{authorization}"
        );
    }
}

/// The payload modes of the PUTs the upstream got for keys containing
/// `needle`, with their Content-Length.
fn upstream_put_modes(proxy: &ProxyUnderTest, needle: &str) -> Vec<(String, Option<String>)> {
    proxy
        .upstream_requests()
        .into_iter()
        .filter(|r| r.method == http::Method::PUT && r.uri.path().contains(needle))
        .map(|r| {
            let header = |name: &str| r.headers.get(name).map(|v| v.to_str().unwrap().to_owned());
            (
                header("x-amz-content-sha256").unwrap_or_default(),
                header("content-length"),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------
// boto3: the everyday calls through the proxy (HTTP and HTTPS) give what the
// same calls give directly.

async fn boto3_matches_direct(upstream: &dyn UpstreamPeer, mode: KeyMode) {
    let peers = Peers::get().expect("peers");
    let proxy = ProxyUnderTest::start(upstream.endpoint(), mode).await;
    let bucket = "e2e-boto3";
    create_bucket(upstream, bucket).await;
    let dir = tempfile::tempdir().unwrap();
    let (file, data) = random_file(dir.path(), "source.bin", 300_000, fresh_seed());

    let run = |endpoint: String, ca: Option<PathBuf>, prefix: &'static str, creds: Creds| {
        let file = file.clone();
        async move {
            let out = boto3_ops(
                peers,
                &endpoint,
                ca.as_deref(),
                bucket,
                prefix,
                &file,
                &creds,
            )
            .await;
            out.assert_success(&format!("boto3 ops via {endpoint}"));
            serde_json::from_str::<Value>(&out.stdout).expect("boto3_ops prints JSON")
        }
    };
    let direct_report = run(
        upstream.endpoint().to_owned(),
        None,
        "direct/",
        upstream.creds().clone(),
    )
    .await;
    let http_report = run(
        proxy.url().to_owned(),
        None,
        "proxy/",
        proxy.client_creds().clone(),
    )
    .await;
    let https_report = run(
        proxy.tls_url().to_owned(),
        Some(proxy.ca_pem().to_path_buf()),
        "proxy-tls/",
        proxy.client_creds().clone(),
    )
    .await;

    // The direct run is right in itself...
    let by_op: BTreeMap<&str, &Value> = direct_report
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["op"].as_str().unwrap(), e))
        .collect();
    assert_eq!(
        by_op["get"]["sha256"],
        sha256_hex(&data),
        "{direct_report:#}"
    );
    assert_eq!(by_op["range get"]["status"], 206, "{direct_report:#}");
    assert_eq!(
        by_op["range get"]["sha256"],
        sha256_hex(&data[100..1124]),
        "{direct_report:#}"
    );
    assert_eq!(
        by_op["suffix range get"]["sha256"],
        sha256_hex(&data[data.len() - 500..]),
        "{direct_report:#}"
    );
    assert_eq!(by_op["get copy"]["sha256"], sha256_hex(&data));
    assert_eq!(by_op["head deleted"]["status"], 404, "{direct_report:#}");
    // ...and nothing tells the proxied runs apart from it.
    assert_eq!(
        http_report,
        direct_report,
        "boto3 over HTTP through the proxy differs from direct to {}",
        upstream.name()
    );
    assert_eq!(
        https_report,
        direct_report,
        "boto3 over HTTPS through the proxy differs from direct to {}",
        upstream.name()
    );

    // The HTTPS upload really was the unsigned-trailer kind, and it reached
    // the upstream in that mode with the client's framing.
    let tls_puts = upstream_put_modes(&proxy, "proxy-tls/obj");
    assert_eq!(
        tls_puts.first().map(|(mode, _)| mode.as_str()),
        Some("STREAMING-UNSIGNED-PAYLOAD-TRAILER"),
        "{tls_puts:?}"
    );
    assert_client_key_never_upstream(&proxy, upstream);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_through_proxy_matches_direct_s3s_fs() {
    let Some(upstream) = s3s_fs().await else {
        return;
    };
    boto3_matches_direct(&upstream, KeyMode::Mapped(upstream.creds().clone())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_through_proxy_matches_direct_moto() {
    let Some(upstream) = Moto::start().await else {
        return;
    };
    boto3_matches_direct(&upstream, KeyMode::ClientKeys(upstream.creds().clone())).await;
}

// ---------------------------------------------------------------------------
// aws-cli: a 64 MiB multipart `s3 cp`, an `s3 sync` of a tree with awkward
// names, and `s3 rm --recursive`, checking the upstream after each.

/// A small tree of files with nested directories, spaces, `+`, `=` and
/// non-ASCII names; returns (relative path, content) pairs.
fn write_tree(root: &Path, seed: u64) -> Vec<(String, Vec<u8>)> {
    let names = [
        "top.bin",
        "nested/deeper/leaf.txt",
        "with space/file one.txt",
        "plus+sign/a+b=c.txt",
        "\u{fc}n\u{ef}c\u{f6}d\u{e9}/\u{65e5}\u{672c}\u{8a9e}.txt",
    ];
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let data = random_bytes(1000 + 7919 * i, seed.wrapping_add(i as u64));
            let path = root.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &data).unwrap();
            // An hour old: `aws s3 sync` uploads again any file newer than
            // the object's LastModified, which some upstreams keep to the
            // second, so a fresh file could look newer than its own upload.
            std::fs::File::options()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_modified(SystemTime::now() - Duration::from_secs(3600)))
                .unwrap();
            ((*name).to_owned(), data)
        })
        .collect()
}

async fn assert_tree_stored(
    upstream: &dyn UpstreamPeer,
    bucket: &str,
    prefix: &str,
    tree: &[(String, Vec<u8>)],
) {
    let mut expected: Vec<String> = tree.iter().map(|(n, _)| format!("{prefix}{n}")).collect();
    expected.sort();
    assert_eq!(direct_keys(upstream, bucket, prefix).await, expected);
    for (name, data) in tree {
        let key = format!("{prefix}{name}");
        assert_same_bytes(direct_get(upstream, bucket, &key).await, data, &key);
    }
}

async fn aws_cli_cp_sync_rm(upstream: &dyn UpstreamPeer, mode: KeyMode) {
    let peers = Peers::get().expect("peers");
    let proxy = ProxyUnderTest::start(upstream.endpoint(), mode).await;
    let creds = proxy.client_creds().clone();
    let bucket = "e2e-cli";
    create_bucket(upstream, bucket).await;
    let dir = tempfile::tempdir().unwrap();
    let seed = fresh_seed();

    let (big, data) = random_file(dir.path(), "multipart.bin", 64 * MIB, seed);
    let uri = format!("s3://{bucket}/big/multipart.bin");
    aws_cli_s3(
        peers,
        proxy.url(),
        &creds,
        &["cp".as_ref(), big.as_os_str(), uri.as_ref()],
    )
    .await
    .assert_success("aws s3 cp (64 MiB, multipart)");
    let uploads = proxy
        .upstream_requests()
        .iter()
        .filter(|r| r.uri.query().is_some_and(|q| q.contains("partNumber=")))
        .count();
    assert_eq!(uploads, 8, "64 MiB goes as eight 8 MiB parts");
    assert_same_bytes(
        direct_get(upstream, bucket, "big/multipart.bin").await,
        &data,
        "multipart upload",
    );
    drop(data);

    let tree_dir = dir.path().join("tree");
    let tree = write_tree(&tree_dir, seed);
    let uri = format!("s3://{bucket}/tree/");
    aws_cli_s3(
        peers,
        proxy.url(),
        &creds,
        &["sync".as_ref(), tree_dir.as_os_str(), uri.as_ref()],
    )
    .await
    .assert_success("aws s3 sync");
    assert_tree_stored(upstream, bucket, "tree/", &tree).await;

    // A second sync, through the proxy and directly, uploads the same: the
    // listing through the proxy says what the upstream's says. (s3s-fs
    // answers `encoding-type=url` listings with `+` not encoded, so aws-cli
    // reads `a+b=c.txt` as `a b=c.txt` and uploads it again on both paths.)
    let mut uploads = Vec::new();
    for (endpoint, creds) in [
        (proxy.url(), &creds),
        (upstream.endpoint(), upstream.creds()),
    ] {
        let again = aws_cli_s3(
            peers,
            endpoint,
            creds,
            &["sync".as_ref(), tree_dir.as_os_str(), uri.as_ref()],
        )
        .await;
        again.assert_success("aws s3 sync (again)");
        let mut lines: Vec<String> = again
            .stdout
            .lines()
            .filter_map(|line| line.split_once(" to ").map(|(_, to)| to.to_owned()))
            .collect();
        lines.sort();
        uploads.push(lines);
    }
    assert_eq!(
        uploads[0], uploads[1],
        "a second sync through the proxy and directly differ"
    );
    if !uploads[0].is_empty() {
        eprintln!(
            "note: {} makes a second `aws s3 sync` upload {:?} again, directly too",
            upstream.name(),
            uploads[0]
        );
    }
    if upstream.name() == "moto" {
        assert_eq!(uploads[0], Vec::<String>::new(), "nothing left to sync");
    }

    // `rm --recursive` through the proxy leaves what it leaves directly
    // (s3s-fs: the `+` key, which aws-cli's listing misreads as above).
    let direct_uri = format!("s3://{bucket}/direct-tree/");
    aws_cli_s3(
        peers,
        upstream.endpoint(),
        upstream.creds(),
        &["sync".as_ref(), tree_dir.as_os_str(), direct_uri.as_ref()],
    )
    .await
    .assert_success("aws s3 sync (direct)");
    let mut left = Vec::new();
    for (endpoint, creds, prefix) in [
        (proxy.url(), &creds, "tree/"),
        (upstream.endpoint(), upstream.creds(), "direct-tree/"),
    ] {
        let uri = format!("s3://{bucket}/{prefix}");
        aws_cli_s3(
            peers,
            endpoint,
            creds,
            &["rm".as_ref(), uri.as_ref(), "--recursive".as_ref()],
        )
        .await
        .assert_success("aws s3 rm --recursive");
        let keys: Vec<String> = direct_keys(upstream, bucket, prefix)
            .await
            .into_iter()
            .map(|k| k[prefix.len()..].to_owned())
            .collect();
        left.push(keys);
    }
    assert_eq!(
        left[0], left[1],
        "rm --recursive through the proxy and directly leave different keys"
    );
    if !left[0].is_empty() {
        eprintln!(
            "note: on {}, `aws s3 rm --recursive` leaves {:?}, directly too",
            upstream.name(),
            left[0]
        );
    }
    if upstream.name() == "moto" {
        assert_eq!(left[0], Vec::<String>::new(), "everything removed");
    }
    let uri = format!("s3://{bucket}/big/");
    aws_cli_s3(
        peers,
        proxy.url(),
        &creds,
        &["rm".as_ref(), uri.as_ref(), "--recursive".as_ref()],
    )
    .await
    .assert_success("aws s3 rm --recursive (big/)");
    assert_eq!(
        direct_keys(upstream, bucket, "big/").await,
        Vec::<String>::new()
    );
    assert_client_key_never_upstream(&proxy, upstream);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_cli_cp_sync_rm_s3s_fs() {
    let Some(upstream) = s3s_fs().await else {
        return;
    };
    aws_cli_cp_sync_rm(&upstream, KeyMode::Mapped(upstream.creds().clone())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_cli_cp_sync_rm_moto() {
    let Some(upstream) = Moto::start().await else {
        return;
    };
    aws_cli_cp_sync_rm(&upstream, KeyMode::Fixed(upstream.creds().clone())).await;
}

// ---------------------------------------------------------------------------
// rclone `copy` then `check`, through the proxy and directly.

async fn rclone_copy_check(upstream: &dyn UpstreamPeer, mode: KeyMode) {
    let peers = Peers::get().expect("peers");
    let proxy = ProxyUnderTest::start(upstream.endpoint(), mode).await;
    let bucket = "e2e-rclone";
    create_bucket(upstream, bucket).await;
    let dir = tempfile::tempdir().unwrap();
    let tree_dir = dir.path().join("tree");
    let tree = write_tree(&tree_dir, fresh_seed());

    let mut outcomes = Vec::new();
    for (path, endpoint, creds) in [
        ("direct", upstream.endpoint(), upstream.creds()),
        ("proxy", proxy.url(), proxy.client_creds()),
    ] {
        let remote = format!("e2e:{bucket}/{path}");
        let copy = rclone(
            peers,
            endpoint,
            creds,
            &["copy".as_ref(), tree_dir.as_os_str(), remote.as_ref()],
        )
        .await;
        copy.assert_success(&format!("rclone copy ({path})"));
        assert_tree_stored(upstream, bucket, &format!("{path}/"), &tree).await;
        let check = rclone(
            peers,
            endpoint,
            creds,
            &["check".as_ref(), tree_dir.as_os_str(), remote.as_ref()],
        )
        .await;
        outcomes.push((path, check));
    }
    for (path, check) in &outcomes {
        check.assert_success(&format!("rclone check ({path})"));
    }
    assert_client_key_never_upstream(&proxy, upstream);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rclone_copy_check_s3s_fs() {
    let Some(upstream) = s3s_fs().await else {
        return;
    };
    rclone_copy_check(&upstream, KeyMode::Mapped(upstream.creds().clone())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rclone_copy_check_moto() {
    let Some(upstream) = Moto::start().await else {
        return;
    };
    rclone_copy_check(&upstream, KeyMode::Mapped(upstream.creds().clone())).await;
}

// ---------------------------------------------------------------------------
// Requests built by hand, sent over TCP to the proxy.

fn sign_options(creds: &Creds) -> SignOptions<'_> {
    SignOptions {
        access_key: &creds.access_key,
        secret: &creds.secret_key,
        region: &creds.region,
        // The upstreams check the skew too.
        time: SystemTime::now(),
        ..Default::default()
    }
}

/// Sends `request` (whose URI holds the path and query) to `base`, keeping
/// its signed Host header.
async fn send_to(base: &str, request: Request<Bytes>) -> (StatusCode, String) {
    let (mut parts, body) = request.into_parts();
    let path_and_query = parts.uri.path_and_query().unwrap().as_str();
    parts.uri = format!("{base}{path_and_query}").parse().unwrap();
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let response = client
        .request(Request::from_parts(parts, Full::new(body)))
        .await
        .expect("the proxy answers");
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A PUT of `payload` to `path` with a hex payload hash, signed now.
fn hex_signed_put(path: &str, payload: &[u8], creds: &Creds) -> Request<Bytes> {
    let mut request = Request::put(format!("http://s3.example.com{path}"))
        .header("host", "s3.example.com")
        .header("content-length", payload.len())
        .body(Bytes::copy_from_slice(payload))
        .unwrap();
    sign_with(
        &mut request,
        SignableBody::Bytes(payload),
        &sign_options(creds),
    );
    request
}

// ---------------------------------------------------------------------------
// Streaming uploads: the JS SDK v3's unsigned aws-chunked body with a CRC32
// trailer, and hand-signed STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER].

async fn streaming_uploads(upstream: &dyn UpstreamPeer, mode: KeyMode) {
    let peers = Peers::get().expect("peers");
    let proxy = ProxyUnderTest::start(upstream.endpoint(), mode).await;
    let creds = proxy.client_creds().clone();
    let bucket = "e2e-stream";
    create_bucket(upstream, bucket).await;
    let dir = tempfile::tempdir().unwrap();
    let seed = fresh_seed();

    let (file, data) = random_file(dir.path(), "js.bin", 3 * MIB + 123, seed);
    js_sdk_stream_put(peers, proxy.url(), &file, bucket, "js/stream.bin", &creds)
        .await
        .assert_success("JS SDK v3 stream PutObject");
    assert_same_bytes(
        direct_get(upstream, bucket, "js/stream.bin").await,
        &data,
        "JS SDK stream upload",
    );
    let modes = upstream_put_modes(&proxy, "js/stream.bin");
    assert_eq!(
        modes.first().map(|(mode, _)| mode.as_str()),
        Some("STREAMING-UNSIGNED-PAYLOAD-TRAILER"),
        "{modes:?}"
    );

    let payload = random_bytes(200_017, seed ^ 1);
    for (key, trailer, mode) in [
        (
            "signed/chunked.bin",
            false,
            "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        ),
        (
            "signed/chunked-trailer.bin",
            true,
            "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
        ),
    ] {
        let upload = signed_chunked_upload_with(
            &format!("/{bucket}/{key}"),
            &payload,
            65_536,
            trailer,
            &sign_options(&creds),
        );
        let client_length = upload.body.len().to_string();
        let (status, body) = send_to(proxy.url(), upload.request_with_body()).await;
        assert_eq!(status, StatusCode::OK, "{key}: {body}");
        assert_same_bytes(direct_get(upstream, bucket, key).await, &payload, key);
        assert_eq!(
            upstream_put_modes(&proxy, key),
            vec![(mode.to_owned(), Some(client_length))],
            "{key}: the upstream got the client's mode and length"
        );
    }
    assert_client_key_never_upstream(&proxy, upstream);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_uploads_s3s_fs() {
    let Some(upstream) = s3s_fs().await else {
        return;
    };
    streaming_uploads(&upstream, KeyMode::Mapped(upstream.creds().clone())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_uploads_moto() {
    let Some(upstream) = Moto::start().await else {
        return;
    };
    streaming_uploads(&upstream, KeyMode::Fixed(upstream.creds().clone())).await;
}

// ---------------------------------------------------------------------------
// aws-sdk-rust through the proxy: put/get/list/delete, multipart, presigned
// GET and PUT.

async fn send_presigned(
    presigned: &aws_sdk_s3::presigning::PresignedRequest,
    body: Bytes,
) -> (StatusCode, Bytes) {
    let mut request = Request::builder()
        .method(presigned.method())
        .uri(presigned.uri());
    for (name, value) in presigned.headers() {
        request = request.header(name, value);
    }
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let response = client
        .request(request.body(Full::new(body)).unwrap())
        .await
        .expect("the proxy answers");
    let status = response.status();
    (
        status,
        response.into_body().collect().await.unwrap().to_bytes(),
    )
}

async fn rust_sdk(upstream: &dyn UpstreamPeer, mode: KeyMode) {
    let proxy = ProxyUnderTest::start(upstream.endpoint(), mode).await;
    let client = sdk_client(proxy.url(), proxy.client_creds());
    let bucket = "e2e-sdk";
    let seed = fresh_seed();
    client
        .create_bucket()
        .bucket(bucket)
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateBucket: {}", sdk_error(&e)));

    let data = random_bytes(700_001, seed);
    client
        .put_object()
        .bucket(bucket)
        .key("sdk/put.bin")
        .body(ByteStream::from(data.clone()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("PutObject: {}", sdk_error(&e)));
    assert_same_bytes(
        direct_get(upstream, bucket, "sdk/put.bin").await,
        &data,
        "PutObject",
    );
    let got = client
        .get_object()
        .bucket(bucket)
        .key("sdk/put.bin")
        .send()
        .await
        .unwrap_or_else(|e| panic!("GetObject: {}", sdk_error(&e)));
    let got = got.body.collect().await.unwrap().into_bytes();
    assert!(got == data, "GetObject through the proxy");
    let listed = client
        .list_objects_v2()
        .bucket(bucket)
        .prefix("sdk/")
        .send()
        .await
        .unwrap_or_else(|e| panic!("ListObjectsV2: {}", sdk_error(&e)));
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["sdk/put.bin"]);
    client
        .delete_object()
        .bucket(bucket)
        .key("sdk/put.bin")
        .send()
        .await
        .unwrap_or_else(|e| panic!("DeleteObject: {}", sdk_error(&e)));
    assert_eq!(
        direct_head_status(upstream, bucket, "sdk/put.bin").await,
        404
    );

    // Multipart: two 5 MiB parts.
    let key = "sdk/multipart.bin";
    let parts = [
        random_bytes(5 * MIB, seed ^ 2),
        random_bytes(5 * MIB, seed ^ 3),
    ];
    let created = client
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateMultipartUpload: {}", sdk_error(&e)));
    let upload_id = created.upload_id().expect("upload id");
    let mut completed = Vec::new();
    for (index, part) in parts.iter().enumerate() {
        let number = index as i32 + 1;
        let out = client
            .upload_part()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .body(ByteStream::from(part.clone()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("UploadPart {number}: {}", sdk_error(&e)));
        completed.push(
            CompletedPart::builder()
                .part_number(number)
                .set_e_tag(out.e_tag().map(str::to_owned))
                .build(),
        );
    }
    client
        .complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(completed))
                .build(),
        )
        .send()
        .await
        .unwrap_or_else(|e| panic!("CompleteMultipartUpload: {}", sdk_error(&e)));
    assert_same_bytes(
        direct_get(upstream, bucket, key).await,
        &parts.concat(),
        "multipart upload",
    );

    // Presigned GET and PUT, sent by a plain HTTP client.
    let presigning = PresigningConfig::expires_in(Duration::from_secs(300)).unwrap();
    let get = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .presigned(presigning.clone())
        .await
        .unwrap();
    let (status, body) = send_presigned(&get, Bytes::new()).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert!(body == parts.concat(), "presigned GET body");

    let put_data = random_bytes(123_457, seed ^ 4);
    let put = client
        .put_object()
        .bucket(bucket)
        .key("sdk/presigned-put.bin")
        .presigned(presigning)
        .await
        .unwrap();
    let (status, body) = send_presigned(&put, Bytes::from(put_data.clone())).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_same_bytes(
        direct_get(upstream, bucket, "sdk/presigned-put.bin").await,
        &put_data,
        "presigned PUT",
    );
    assert_client_key_never_upstream(&proxy, upstream);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_sdk_s3s_fs() {
    let Some(upstream) = s3s_fs().await else {
        return;
    };
    rust_sdk(&upstream, KeyMode::Mapped(upstream.creds().clone())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_sdk_moto() {
    let Some(upstream) = Moto::start().await else {
        return;
    };
    rust_sdk(&upstream, KeyMode::ClientKeys(upstream.creds().clone())).await;
}

// ---------------------------------------------------------------------------
// Invariant: a forged chunk or a wrong payload hash never lets the upstream
// store an object.

async fn forged_uploads_leave_nothing(upstream: &dyn UpstreamPeer, mode: KeyMode) {
    let proxy = ProxyUnderTest::start(upstream.endpoint(), mode).await;
    let creds = proxy.client_creds().clone();
    let bucket = "e2e-forged";
    create_bucket(upstream, bucket).await;
    // Four chunks of up to 64 KiB: a forged middle chunk is caught after
    // earlier ones went upstream; a forged last one after all but it did.
    let payload = random_bytes(200_000, fresh_seed());

    for (key, trailer, forged_chunk) in [
        ("forged-middle.bin", false, 1),
        ("forged-last.bin", false, 3),
        ("forged-trailer-last.bin", true, 3),
    ] {
        let mut upload = signed_chunked_upload_with(
            &format!("/{bucket}/{key}"),
            &payload,
            65_536,
            trailer,
            &sign_options(&creds),
        );
        let offset = upload.data_offsets[forged_chunk] + 10;
        upload.body[offset] ^= 1;
        let (status, body) = send_to(proxy.url(), upload.request_with_body()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{key}: {body}");
        assert!(
            body.contains("<Code>SignatureDoesNotMatch</Code>"),
            "{key}: {body}"
        );
    }

    let mut wrong_hash = hex_signed_put(&format!("/{bucket}/wrong-hash.bin"), &payload, &creds);
    let mut tampered = payload.clone();
    tampered[150_000] ^= 0x20;
    *wrong_hash.body_mut() = Bytes::from(tampered);
    let (status, body) = send_to(proxy.url(), wrong_hash).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body.contains("<Code>XAmzContentSHA256Mismatch</Code>"),
        "{body}"
    );

    for key in [
        "forged-middle.bin",
        "forged-last.bin",
        "forged-trailer-last.bin",
        "wrong-hash.bin",
    ] {
        // Each head verified, so the request did go upstream, streaming;
        // its body was cut off before the bad part could complete it.
        assert_eq!(upstream_put_modes(&proxy, key).len(), 1, "{key}");
        assert_eq!(
            direct_head_status(upstream, bucket, key).await,
            404,
            "{key} exists on {}",
            upstream.name()
        );
    }
    assert_eq!(
        direct_keys(upstream, bucket, "").await,
        Vec::<String>::new()
    );
    // A correctly signed upload on the same proxy still goes through.
    let (status, body) = send_to(
        proxy.url(),
        hex_signed_put(&format!("/{bucket}/good.bin"), &payload, &creds),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_uploads_leave_nothing_s3s_fs() {
    let Some(upstream) = s3s_fs().await else {
        return;
    };
    forged_uploads_leave_nothing(&upstream, KeyMode::Mapped(upstream.creds().clone())).await;
    // Nor on disk: s3s-fs keeps each object as a file named after its key,
    // plus metadata files named after base64 of bucket and key. Only the
    // good upload may have left any (no partial or temporary file either).
    use base64::Engine as _;
    let good = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("good.bin");
    let files = upstream.files();
    assert!(
        files
            .iter()
            .all(|f| f == "e2e-forged/good.bin" || f.contains(&good)),
        "{files:?}"
    );
    assert!(
        files.contains(&"e2e-forged/good.bin".to_owned()),
        "{files:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_uploads_leave_nothing_moto() {
    let Some(upstream) = Moto::start().await else {
        return;
    };
    forged_uploads_leave_nothing(&upstream, KeyMode::Fixed(upstream.creds().clone())).await;
}

// ---------------------------------------------------------------------------
// Key modes: with a fixed or mapped upstream key the client's key never
// reaches s3s-fs, which would refuse it anyway.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_modes_s3s_fs() {
    let Some(upstream) = s3s_fs().await else {
        return;
    };
    let peers = Peers::get().expect("peers");
    let bucket = "e2e-keys";
    create_bucket(&upstream, bucket).await;
    let dir = tempfile::tempdir().unwrap();
    let (file, data) = random_file(dir.path(), "k.bin", 100_000, fresh_seed());

    // s3s-fs knows only its own key: the client's is refused directly.
    let refused = boto3_put(
        peers,
        upstream.endpoint(),
        None,
        &file,
        bucket,
        "direct-with-client-key.bin",
        &Creds::new(CLIENT_KEY, CLIENT_SECRET),
    )
    .await;
    assert!(!refused.success(), "s3s-fs accepted the client's key");

    let up = upstream.creds().clone();
    for (name, mode) in [
        ("client-keys", KeyMode::ClientKeys(up.clone())),
        ("fixed", KeyMode::Fixed(up.clone())),
        ("mapped", KeyMode::Mapped(up.clone())),
    ] {
        let proxy = ProxyUnderTest::start(upstream.endpoint(), mode).await;
        let key = format!("{name}.bin");
        boto3_put(
            peers,
            proxy.url(),
            None,
            &file,
            bucket,
            &key,
            proxy.client_creds(),
        )
        .await
        .assert_success(&format!("boto3 put ({name})"));
        assert_same_bytes(direct_get(&upstream, bucket, &key).await, &data, &key);
        assert_client_key_never_upstream(&proxy, &upstream);
        if name != "client-keys" {
            assert!(proxy
                .upstream_requests()
                .iter()
                .all(|r| !r.mentions(CLIENT_KEY)));
        }
    }
}
