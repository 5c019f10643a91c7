//! Real S3 clients (boto3, aws-cli, AWS JS SDK v3) uploading through a layer
//! into the test object store, over HTTP and HTTPS.
//!
//! Every scenario is generic over the layer in front of the store:
//! - `plumbing_*` tests run it with `tower::layer::util::Identity`: they run
//!   no s3tap code on purpose. Each pins the wire form its `verified_*` twin
//!   depends on (payload mode, framing, trailer; written up in
//!   `tests/clients/WIRE.md`), so a client upgrade that changes it fails
//!   here, by name, instead of leaving the `verified_*` test green while it
//!   no longer covers that payload mode;
//! - `verified_*` and `wrong_secret_*` tests run it behind the crate's SigV4
//!   verification (see [`layered`]).

mod support;

use std::error::Error as StdError;

use axum::body::Body;
use axum::Router;
use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use sha2::{Digest, Sha256};
use tower::layer::util::Identity;
use tower::util::BoxCloneService;
use tower::{Layer, Service, ServiceExt};

use support::{
    aws_cli_cp, boto3_put, fresh_seed, js_sdk_stream_put, random_file, ClientOutput, Creds,
    ObjectStore, Peers, RecordedRequest, StoreHandle, TestServer,
};

type BoxError = Box<dyn StdError + Send + Sync>;

/// The store behind some layer, type-erased so every scenario takes one type.
type TestService = BoxCloneService<Request<Incoming>, Response<Body>, BoxError>;

const ACCESS_KEY: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const WRONG_SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYWRONGKEY0";
const BUCKET: &str = "tap-bucket";

const MIB: usize = 1024 * 1024;

/// Wraps `store` in `layer` and erases the result's type.
fn with_layer<L, B>(store: Router, layer: L) -> TestService
where
    L: Layer<Router>,
    L::Service: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    <L::Service as Service<Request<Incoming>>>::Future: Send + 'static,
    <L::Service as Service<Request<Incoming>>>::Error: Into<BoxError>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let svc = layer
        .layer(store)
        .map_response(|resp: Response<B>| resp.map(Body::new))
        .map_err(Into::into);
    BoxCloneService::new(svc)
}

// ---------------------------------------------------------------------------
// The layer under test. Everything `verified_*` and `wrong_secret_*` runs
// goes through this one function.

/// The object store as the verification layer, configured with
/// `access_key`/`secret` for region us-east-1, would serve it.
fn layered(store: Router, access_key: &str, secret: &str) -> TestService {
    with_layer(
        store,
        s3tap::verify::SigV4VerifyLayer::new(
            s3tap::credentials::StaticCredentials::new().with_key(access_key, secret),
        )
        .region("us-east-1"),
    )
}

/// A fresh store behind the verification layer, knowing one key whose secret
/// is `secret`.
fn verified_store(secret: &str) -> (TestService, StoreHandle) {
    let (router, handle) = ObjectStore::create();
    (layered(router, ACCESS_KEY, secret), handle)
}

/// A fresh store with nothing in front of it.
fn plumbing_store() -> (TestService, StoreHandle) {
    let (router, handle) = ObjectStore::create();
    (with_layer(router, Identity::new()), handle)
}

// ---------------------------------------------------------------------------
// Scenarios: one client, one upload, through whatever `svc` is.

/// What one scenario left behind.
struct Run {
    out: ClientOutput,
    data: Vec<u8>,
    store: StoreHandle,
    key: String,
    // Held so the server outlives every assertion on the run.
    _server: TestServer,
    _dir: tempfile::TempDir,
}

impl Run {
    fn stored(&self) -> Option<Bytes> {
        self.store.get(BUCKET, &self.key)
    }

    /// The (single) PutObject or UploadPart requests the store saw.
    fn puts(&self) -> Vec<RecordedRequest> {
        self.store
            .requests()
            .into_iter()
            .filter(|r| r.method == http::Method::PUT)
            .collect()
    }

    #[track_caller]
    fn assert_stored_source(&self) {
        let stored = self.stored().unwrap_or_else(|| {
            panic!(
                "nothing stored at {BUCKET}/{}; requests seen: {:#?}",
                self.key,
                self.store.requests()
            )
        });
        assert_eq!(stored.len(), self.data.len(), "stored length");
        assert!(stored == self.data, "stored bytes differ from the source");
    }

    /// A rejected upload: the client failed and nothing reached the store.
    #[track_caller]
    fn assert_rejected(&self) {
        assert!(
            !self.out.success(),
            "client succeeded with the wrong secret:\n{}",
            self.out.stdout
        );
        assert_eq!(self.store.calls(), 0, "the store handler ran");
        assert_eq!(self.store.object_count(), 0, "something was stored");
    }
}

async fn boto3_run(svc: TestService, store: StoreHandle, tls: bool, creds: &Creds) -> Option<Run> {
    let peers = Peers::get()?;
    let server = if tls {
        TestServer::spawn_tls(svc).await
    } else {
        TestServer::spawn(svc).await
    };
    let dir = tempfile::tempdir().unwrap();
    let (file, data) = random_file(dir.path(), "payload.bin", 5 * MIB, fresh_seed());
    let key = "boto3/put.bin".to_owned();
    let out = boto3_put(
        peers,
        server.url(),
        server.ca_pem(),
        &file,
        BUCKET,
        &key,
        creds,
    )
    .await;
    Some(Run {
        out,
        data,
        store,
        key,
        _server: server,
        _dir: dir,
    })
}

async fn aws_cli_run(svc: TestService, store: StoreHandle, creds: &Creds) -> Option<Run> {
    let peers = Peers::get()?;
    let server = TestServer::spawn(svc).await;
    let dir = tempfile::tempdir().unwrap();
    let (file, data) = random_file(dir.path(), "payload.bin", 64 * MIB, fresh_seed());
    let key = "cli/multipart.bin".to_owned();
    let out = aws_cli_cp(
        peers,
        server.url(),
        &file,
        &format!("s3://{BUCKET}/{key}"),
        creds,
    )
    .await;
    Some(Run {
        out,
        data,
        store,
        key,
        _server: server,
        _dir: dir,
    })
}

async fn js_sdk_run(svc: TestService, store: StoreHandle, creds: &Creds) -> Option<Run> {
    let peers = Peers::get()?;
    let server = TestServer::spawn(svc).await;
    let dir = tempfile::tempdir().unwrap();
    let (file, data) = random_file(dir.path(), "payload.bin", 5 * MIB, fresh_seed());
    let key = "js/stream.bin".to_owned();
    let out = js_sdk_stream_put(peers, server.url(), &file, BUCKET, &key, creds).await;
    Some(Run {
        out,
        data,
        store,
        key,
        _server: server,
        _dir: dir,
    })
}

fn good_creds() -> Creds {
    Creds::new(ACCESS_KEY, SECRET)
}

fn wrong_creds() -> Creds {
    Creds::new(ACCESS_KEY, WRONG_SECRET)
}

// ---------------------------------------------------------------------------
// Wire observations (printed; run with --nocapture to read them).

const WIRE_HEADERS: &[&str] = &[
    "x-amz-content-sha256",
    "content-encoding",
    "transfer-encoding",
    "content-length",
    "x-amz-decoded-content-length",
    "x-amz-trailer",
    "expect",
    "content-md5",
    "x-amz-sdk-checksum-algorithm",
    "x-amz-checksum-algorithm",
    "x-amz-checksum-type",
    "x-amz-checksum-crc32",
    "x-amz-checksum-crc32c",
    "x-amz-checksum-crc64nvme",
    "x-amz-checksum-sha1",
    "x-amz-checksum-sha256",
];

fn describe(client: &str, req: &RecordedRequest) -> String {
    let mut s = format!("== {client}: {} {}\n", req.method, req.uri);
    for name in WIRE_HEADERS {
        for v in req.headers.get_all(*name) {
            s.push_str(&format!("  {name}: {}\n", v.to_str().unwrap_or("<binary>")));
        }
    }
    if let Some(auth) = req.header("authorization") {
        if let Some(signed) = auth.split("SignedHeaders=").nth(1) {
            let signed = signed.split(',').next().unwrap_or("");
            s.push_str(&format!("  (signed headers: {signed})\n"));
        }
    }
    let others: Vec<&str> = req
        .headers
        .keys()
        .map(|k| k.as_str())
        .filter(|k| !WIRE_HEADERS.contains(k))
        .collect();
    s.push_str(&format!("  (other headers: {})\n", others.join(", ")));
    s.push_str(&format!("  body bytes received: {}\n", req.body.len()));
    if let Some(t) = &req.trailers {
        s.push_str(&format!("  HTTP trailers: {t:?}\n"));
    }
    s
}

/// Splits an aws-chunked body into its payload, chunk sizes and the raw
/// trailer section (the bytes after the final `0` chunk line).
fn unframe_aws_chunked(body: &[u8]) -> (Vec<u8>, Vec<usize>, Vec<u8>, Vec<String>) {
    let mut payload = Vec::new();
    let mut sizes = Vec::new();
    let mut headers = Vec::new();
    let mut rest = body;
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk header line ends in CRLF");
        let line = std::str::from_utf8(&rest[..line_end]).expect("ASCII chunk header");
        headers.push(line.to_owned());
        let size_hex = line.split(';').next().unwrap();
        let size = usize::from_str_radix(size_hex, 16).expect("hex chunk size");
        rest = &rest[line_end + 2..];
        sizes.push(size);
        if size == 0 {
            return (payload, sizes, rest.to_vec(), headers);
        }
        payload.extend_from_slice(&rest[..size]);
        assert_eq!(&rest[size..size + 2], b"\r\n", "chunk data ends in CRLF");
        rest = &rest[size + 2..];
    }
}

/// Checks an aws-chunked body that arrived still framed (no layer) and
/// prints what the framing looked like.
fn check_framed_upload(client: &str, req: &RecordedRequest, data: &[u8]) {
    let (payload, sizes, trailer, chunk_lines) = unframe_aws_chunked(&req.body);
    let distinct: std::collections::BTreeSet<_> = sizes.iter().collect();
    eprintln!(
        "  aws-chunked: {} chunks, sizes {distinct:?}, first chunk line {:?}, last {:?}\n  trailer bytes: {:?}",
        sizes.len(),
        chunk_lines.first(),
        chunk_lines.last(),
        String::from_utf8_lossy(&trailer)
    );
    eprintln!("  ({client})");
    assert!(payload == data, "de-framed payload differs from the source");
    let trailer_text = String::from_utf8_lossy(&trailer);
    let declared = req
        .header("x-amz-trailer")
        .expect("x-amz-trailer header")
        .to_owned();
    assert!(
        trailer_text.starts_with(&format!("{declared}:")),
        "trailer section {trailer_text:?} does not start with the declared {declared}"
    );
    assert!(trailer_text.ends_with("\r\n\r\n") || trailer_text.ends_with("\r\n"));
    assert_eq!(
        req.header("x-amz-decoded-content-length"),
        Some(data.len().to_string().as_str())
    );
}

// ---------------------------------------------------------------------------
// Plumbing: the harness and the clients, with no layer.

/// Pins for `verified_boto3_http`: a hex payload hash, a CRC32 header and
/// `Expect: 100-continue`, no aws-chunked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plumbing_boto3_http() {
    let (svc, store) = plumbing_store();
    let Some(run) = boto3_run(svc, store, false, &good_creds()).await else {
        return;
    };
    run.out.assert_success("boto3 over HTTP");
    run.assert_stored_source();
    let puts = run.puts();
    assert_eq!(puts.len(), 1);
    let put = &puts[0];
    eprintln!("{}", describe("boto3 HTTP", put));
    assert_eq!(
        put.header("x-amz-content-sha256"),
        Some(hex::encode(Sha256::digest(&run.data)).as_str()),
        "boto3 over HTTP signs the hex SHA-256 of the payload"
    );
    assert_eq!(put.header("expect"), Some("100-continue"));
    assert!(put.header("x-amz-checksum-crc32").is_some());
    assert!(put.header("content-encoding").is_none());
}

/// Pins for `verified_boto3_https`: unsigned aws-chunked with a trailer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plumbing_boto3_https() {
    let (svc, store) = plumbing_store();
    let Some(run) = boto3_run(svc, store, true, &good_creds()).await else {
        return;
    };
    run.out.assert_success("boto3 over HTTPS");
    let puts = run.puts();
    assert_eq!(puts.len(), 1);
    let put = &puts[0];
    eprintln!("{}", describe("boto3 HTTPS", put));
    assert_eq!(
        put.header("x-amz-content-sha256"),
        Some("STREAMING-UNSIGNED-PAYLOAD-TRAILER")
    );
    assert_eq!(put.header("content-encoding"), Some("aws-chunked"));
    check_framed_upload("boto3 HTTPS", put, &run.data);
}

/// Pins for `verified_aws_cli_multipart_64mib`: eight hex-signed parts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plumbing_aws_cli_multipart_64mib() {
    let (svc, store) = plumbing_store();
    let Some(run) = aws_cli_run(svc, store, &good_creds()).await else {
        return;
    };
    run.out.assert_success("aws s3 cp");
    run.assert_stored_source();
    let requests = run.store.requests();
    for req in &requests {
        if req.method != http::Method::PUT {
            eprintln!("{}", describe("aws-cli", req));
            if req.uri.contains("uploadId=") {
                eprintln!("  body: {}", String::from_utf8_lossy(&req.body));
            }
        }
    }
    let parts = run.puts();
    assert_eq!(parts.len(), 8, "64 MiB in 8 MiB parts");
    eprintln!(
        "{}",
        describe("aws-cli UploadPart (first to arrive)", &parts[0])
    );
    for part in &parts {
        assert!(part.uri.contains("partNumber="), "{}", part.uri);
        assert_eq!(
            part.header("x-amz-content-sha256"),
            Some(hex::encode(Sha256::digest(&part.body)).as_str())
        );
    }
}

/// Pins for `verified_js_sdk_stream`: unsigned aws-chunked with a trailer,
/// even over HTTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plumbing_js_sdk_stream() {
    let (svc, store) = plumbing_store();
    let Some(run) = js_sdk_run(svc, store, &good_creds()).await else {
        return;
    };
    run.out.assert_success("JS SDK stream PutObject");
    let puts = run.puts();
    assert_eq!(puts.len(), 1);
    let put = &puts[0];
    eprintln!("{}", describe("JS SDK v3 stream", put));
    assert_eq!(
        put.header("x-amz-content-sha256"),
        Some("STREAMING-UNSIGNED-PAYLOAD-TRAILER")
    );
    assert_eq!(put.header("content-encoding"), Some("aws-chunked"));
    check_framed_upload("JS SDK v3 stream", put, &run.data);
}

// ---------------------------------------------------------------------------
// Through the verification layer: right secret stores the source bytes,
// decoded; wrong secret is rejected before the store runs.

#[track_caller]
fn assert_decoded(run: &Run) {
    run.assert_stored_source();
    for put in run.puts() {
        assert_ne!(
            put.header("content-encoding"),
            Some("aws-chunked"),
            "the handler must get the decoded body"
        );
        // The decoded length, present: a missing header must fail too.
        assert_eq!(
            put.header("content-length"),
            Some(put.body.len().to_string().as_str()),
            "content-length is the decoded length"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verified_boto3_http() {
    let (svc, store) = verified_store(SECRET);
    let Some(run) = boto3_run(svc, store, false, &good_creds()).await else {
        return;
    };
    run.out.assert_success("boto3 over HTTP");
    assert_decoded(&run);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verified_boto3_https() {
    let (svc, store) = verified_store(SECRET);
    let Some(run) = boto3_run(svc, store, true, &good_creds()).await else {
        return;
    };
    run.out.assert_success("boto3 over HTTPS");
    assert_decoded(&run);
    let put = &run.puts()[0];
    let trailers = put
        .trailers
        .as_ref()
        .expect("CRC32 trailer as HTTP trailer");
    assert!(trailers.contains_key("x-amz-checksum-crc32"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verified_aws_cli_multipart_64mib() {
    let (svc, store) = verified_store(SECRET);
    let Some(run) = aws_cli_run(svc, store, &good_creds()).await else {
        return;
    };
    run.out.assert_success("aws s3 cp");
    assert_decoded(&run);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verified_js_sdk_stream() {
    let (svc, store) = verified_store(SECRET);
    let Some(run) = js_sdk_run(svc, store, &good_creds()).await else {
        return;
    };
    run.out.assert_success("JS SDK stream PutObject");
    assert_decoded(&run);
    let put = &run.puts()[0];
    let trailers = put
        .trailers
        .as_ref()
        .expect("CRC32 trailer as HTTP trailer");
    assert!(trailers.contains_key("x-amz-checksum-crc32"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secret_boto3_http_is_rejected() {
    let (svc, store) = verified_store(SECRET);
    let Some(run) = boto3_run(svc, store, false, &wrong_creds()).await else {
        return;
    };
    run.assert_rejected();
    assert!(
        run.out.stderr.contains("SignatureDoesNotMatch"),
        "{}",
        run.out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secret_boto3_https_is_rejected() {
    let (svc, store) = verified_store(SECRET);
    let Some(run) = boto3_run(svc, store, true, &wrong_creds()).await else {
        return;
    };
    run.assert_rejected();
    assert!(
        run.out.stderr.contains("SignatureDoesNotMatch"),
        "{}",
        run.out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secret_aws_cli_is_rejected() {
    let (svc, store) = verified_store(SECRET);
    let Some(run) = aws_cli_run(svc, store, &wrong_creds()).await else {
        return;
    };
    run.assert_rejected();
    assert!(
        run.out.stderr.contains("SignatureDoesNotMatch"),
        "{}",
        run.out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secret_js_sdk_is_rejected() {
    let (svc, store) = verified_store(SECRET);
    let Some(run) = js_sdk_run(svc, store, &wrong_creds()).await else {
        return;
    };
    run.assert_rejected();
    assert!(
        run.out.stderr.contains("SignatureDoesNotMatch"),
        "{}",
        run.out.stderr
    );
}
