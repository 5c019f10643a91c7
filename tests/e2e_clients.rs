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

mod signing;
mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};

use support::clients::{aws_cli_s3, boto3_ops, rclone};
use support::proxy::{KeyMode, ProxyUnderTest, CLIENT_KEY};
use support::upstreams::{Moto, S3sFs, UpstreamPeer};
use support::{fresh_seed, random_bytes, random_file, Creds, Peers};

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
