//! Issue 12 §1 ("no missing events") through the real `s3tap` binary, with
//! boto3 as the client and s3s-fs and moto (signature checks on) as the
//! upstreams:
//!
//! - a quiet `delete_objects` of 50 keys gives 50 delete events, although
//!   the answer lists no `<Deleted>` entry (the events come from the
//!   request's key list);
//! - a multipart upload's completion event carries the object's size (the
//!   parts summed) and its ETag, as the upstream reports them;
//! - a copy's event carries the copy's ETag, and its size only with
//!   `[notify] head_for_size = true`;
//! - a completion answered `200` with an `<Error>` body is a failure: it
//!   carries the error code and a `status = "success"` rule does not route
//!   it.
//!
//! s3s-fs and moto both ignore `<Quiet>true</Quiet>` and list every deleted
//! key. A thin forwarder between the proxy and the upstream answers as AWS
//! does (it drops `<Deleted>` entries from quiet answers, and counts them, so
//! the test knows the proxy never saw them); it also injects the one upstream
//! fault, the `200` with `<Error>`.
#![cfg(feature = "proxy")]

mod notify_support;
mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use notify_support::wait_until;
use serde_json::Value;
use support::binary::{S3tap, S3tapCommand};
use support::clients::boto3_script;
use support::upstreams::{Moto, S3sFs, UpstreamPeer};
use support::{Creds, Peers};

const CLIENT_KEY: &str = "S3TAPCOMPLETECLIENT1";
const CLIENT_SECRET: &str = "notify-completeness-client-secret-41d2";
const S3S_KEY: &str = "S3SFSCOMPLETENESS001";
const S3S_SECRET: &str = "notify-completeness-upstream-secret-9e07";
const BUCKET: &str = "complete";
const EVENT_WAIT: Duration = Duration::from_secs(30);

// ---- the forwarder --------------------------------------------------------

/// Forwards every request unchanged (Host included, so signatures hold) to
/// the upstream, and answers a quiet DeleteObjects as AWS does.
struct Forwarder {
    addr: SocketAddr,
    /// `<Deleted>` entries removed from quiet answers.
    stripped: Arc<AtomicUsize>,
    /// Answer the next CompleteMultipartUpload `200` with `<Error>`
    /// instead of forwarding it.
    fail_next_complete: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

impl Forwarder {
    async fn start(upstream: &str) -> Forwarder {
        let upstream: SocketAddr = upstream
            .strip_prefix("http://")
            .expect("http upstream")
            .parse()
            .expect("upstream address");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stripped = Arc::new(AtomicUsize::new(0));
        let fail_next_complete = Arc::new(AtomicBool::new(false));
        let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
        let (count, fail) = (stripped.clone(), fail_next_complete.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (client, count, fail) = (client.clone(), count.clone(), fail.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let (client, count, fail) = (client.clone(), count.clone(), fail.clone());
                        async move {
                            Ok::<_, std::convert::Infallible>(
                                forward(request, upstream, &client, &count, &fail).await,
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Forwarder {
            addr,
            stripped,
            fail_next_complete,
            task,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

async fn forward(
    request: Request<Incoming>,
    upstream: SocketAddr,
    client: &HttpClient,
    stripped: &AtomicUsize,
    fail_next_complete: &AtomicBool,
) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let body = body.collect().await.expect("request body").to_bytes();
    let query = parts.uri.query().unwrap_or("");
    let is_post = parts.method == http::Method::POST;
    let quiet = is_post
        && query.split('&').any(|p| p == "delete" || p == "delete=")
        && String::from_utf8_lossy(&body).contains("<Quiet>true</Quiet>");
    let completes = is_post && query.split('&').any(|p| p.starts_with("uploadId="));
    if completes && fail_next_complete.swap(false, Ordering::SeqCst) {
        // What S3 may send after a 200 when the completion fails late.
        return Response::builder()
            .status(200)
            .header("content-type", "application/xml")
            .body(Full::new(Bytes::from_static(
                b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\n<Error><Code>InternalError</Code>\
                  <Message>We encountered an internal error. Please try again.</Message>\
                  <RequestId>FAULT1</RequestId><HostId>fault</HostId></Error>",
            )))
            .unwrap();
    }
    let target = format!(
        "http://{upstream}{}",
        parts.uri.path_and_query().map_or("/", |p| p.as_str())
    );
    let mut outgoing = Request::builder().method(parts.method).uri(target);
    for (name, value) in &parts.headers {
        if name != http::header::TRANSFER_ENCODING {
            outgoing = outgoing.header(name, value);
        }
    }
    let response = client
        .request(outgoing.body(Full::new(body)).unwrap())
        .await
        .expect("upstream answers");
    let (mut head, body) = response.into_parts();
    let mut body = body.collect().await.expect("response body").to_bytes();
    if quiet && head.status.is_success() {
        let text = String::from_utf8_lossy(&body).into_owned();
        let mut kept = String::with_capacity(text.len());
        let mut rest = text.as_str();
        while let Some(start) = rest.find("<Deleted>") {
            let end = rest[start..].find("</Deleted>").expect("closed") + start;
            kept.push_str(&rest[..start]);
            rest = &rest[end + "</Deleted>".len()..];
            stripped.fetch_add(1, Ordering::SeqCst);
        }
        kept.push_str(rest);
        body = Bytes::from(kept);
    }
    head.headers.remove(http::header::TRANSFER_ENCODING);
    if quiet {
        head.headers
            .insert(http::header::CONTENT_LENGTH, body.len().into());
    }
    Response::from_parts(head, Full::new(body))
}

// ---- the proxy binary -----------------------------------------------------

/// The `s3tap` binary on `config`, run in the config's directory.
fn start(config: &Path) -> S3tap {
    S3tapCommand::new()
        .env("RUST_LOG", "info,s3tap::notify=debug")
        .arg("--config")
        .arg(config)
        .start(config.parent().expect("config in a directory"))
}

/// Two JSON-lines sinks: `ok.jsonl` behind a `status = "success"` rule and
/// `all.jsonl` behind `status = "all"`, both for every event type.
fn write_config(dir: &Path, upstream: &str, creds: &Creds, head_for_size: bool) -> PathBuf {
    let text = format!(
        r#"
[upstream]
endpoint = "{upstream}"
region = "us-east-1"
credentials = "fixed"
access_key_id = "{key}"
secret_access_key = "{secret}"

[[clients]]
access_key_id = "{CLIENT_KEY}"
secret_access_key = "{CLIENT_SECRET}"

[notify]
spool_dir = "{spool}"
head_for_size = {head_for_size}

[[sinks]]
type = "jsonl"
name = "ok"
path = "{ok}"

[[sinks]]
type = "jsonl"
name = "all"
path = "{all}"

[[rules]]
name = "successes"
events = ["*"]
status = "success"
sinks = ["ok"]

[[rules]]
name = "everything"
events = ["*"]
status = "all"
sinks = ["all"]
"#,
        key = creds.access_key,
        secret = creds.secret_key,
        spool = dir.join("spool").display(),
        ok = dir.join("ok.jsonl").display(),
        all = dir.join("all.jsonl").display(),
    );
    let path = dir.join("s3tap.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn events_in(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).expect("one JSON event per line"))
        .collect()
}

fn matching(path: &Path, operation: &str, key_prefix: &str) -> Vec<Value> {
    events_in(path)
        .into_iter()
        .filter(|e| {
            e["operation"] == operation
                && e["key"].as_str().is_some_and(|k| k.starts_with(key_prefix))
        })
        .collect()
}

async fn step(peers: &Peers, endpoint: &str, name: &str) -> Value {
    let out = boto3_script(
        peers,
        "boto3_completeness.py",
        &[endpoint.as_ref(), BUCKET.as_ref(), name.as_ref()],
        &Creds::new(CLIENT_KEY, CLIENT_SECRET),
    )
    .await;
    out.assert_success(&format!("boto3 {name}"));
    serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("boto3 {name} printed no JSON ({e}):\n{}", out.stdout))
}

/// Waits for exactly one event of `operation` on `key` in `path`.
async fn one_event(path: &Path, operation: &str, key: &str, proxy: &S3tap) -> Value {
    let found = wait_until(EVENT_WAIT, || !matching(path, operation, key).is_empty()).await;
    assert!(
        found,
        "no {operation} event for {key} in {}:\n{:#?}\n--- s3tap log\n{}",
        path.display(),
        events_in(path),
        proxy.logs()
    );
    let events = matching(path, operation, key);
    assert_eq!(events.len(), 1, "{events:#?}");
    events.into_iter().next().unwrap()
}

async fn every_event_arrives(upstream: &dyn UpstreamPeer, head_for_size: bool) {
    let peers = Peers::get().expect("peers checked by the caller");
    let forwarder = Forwarder::start(upstream.endpoint()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &forwarder.endpoint(),
        upstream.creds(),
        head_for_size,
    );
    let proxy = start(&config);
    let (ok, all) = (dir.path().join("ok.jsonl"), dir.path().join("all.jsonl"));
    let name = upstream.name();
    step(peers, &proxy.endpoint, "setup").await;

    // Quiet DeleteObjects of 50 keys: the answer the proxy relays lists no
    // key, yet every key gets its event.
    let report = step(peers, &proxy.endpoint, "quiet-delete").await;
    assert_eq!(report["errors"], 0, "{name}: {report}");
    assert_eq!(report["left"], 0, "{name}: the keys were deleted: {report}");
    assert_eq!(
        report["listed_deleted"], 0,
        "{name}: the client got an AWS-style quiet answer: {report}"
    );
    assert_eq!(
        forwarder.stripped.load(Ordering::SeqCst),
        50,
        "{name}: the upstream listed every key and the forwarder removed them all"
    );
    let wanted: BTreeSet<String> = report["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect();
    let arrived = wait_until(EVENT_WAIT, || {
        matching(&ok, "DeleteObject", "quiet/").len() >= wanted.len()
    })
    .await;
    let deletes = matching(&ok, "DeleteObject", "quiet/");
    assert!(
        arrived,
        "{name}: {} of 50 delete events:\n{deletes:#?}\n--- s3tap log\n{}",
        deletes.len(),
        proxy.logs()
    );
    let keys: Vec<String> = deletes
        .iter()
        .map(|e| e["key"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(keys.len(), 50, "{name}: one event per key: {keys:?}");
    assert_eq!(
        keys.iter().cloned().collect::<BTreeSet<_>>(),
        wanted,
        "{name}"
    );
    for event in &deletes {
        assert_eq!(event["status"], 200, "{name}: {event}");
        assert_eq!(event["access_key_id"], CLIENT_KEY, "{name}: {event}");
    }

    // A multipart upload: the completion's size is the parts' sum, its ETag
    // the upstream's.
    let report = step(peers, &proxy.endpoint, "multipart").await;
    assert_eq!(report["size"], report["sum"], "{name}: {report}");
    assert_eq!(
        report["complete_etag"], report["head_etag"],
        "{name}: {report}"
    );
    let event = one_event(&ok, "CompleteMultipartUpload", "mp/object", &proxy).await;
    assert_eq!(event["size"], report["size"], "{name}: {event}");
    assert_eq!(event["etag"], report["head_etag"], "{name}: {event}");
    assert_eq!(event["error_code"], Value::Null, "{name}: {event}");

    // A completion that fails after its 200: a failure, with its code.
    forwarder.fail_next_complete.store(true, Ordering::SeqCst);
    let report = step(peers, &proxy.endpoint, "failing-complete").await;
    assert_eq!(
        report["error"], "InternalError",
        "{name}: the client saw the failure"
    );
    let event = one_event(&all, "CompleteMultipartUpload", "mp/failing", &proxy).await;
    assert_eq!(event["status"], 200, "{name}: {event}");
    assert_eq!(event["error_code"], "InternalError", "{name}: {event}");
    assert_eq!(event["etag"], Value::Null, "{name}: {event}");

    // A copy: its ETag from the result body; its size only by HEAD. Its
    // event in `ok` also shows the failed completion, routed before it,
    // was kept out of `ok`.
    let report = step(peers, &proxy.endpoint, "copy").await;
    let event = one_event(&ok, "CopyObject", "mp/copy", &proxy).await;
    assert_eq!(event["etag"], report["copy_etag"], "{name}: {event}");
    if head_for_size {
        assert_eq!(event["size"], report["size"], "{name}: {event}");
    } else {
        assert_eq!(event["size"], Value::Null, "{name}: {event}");
    }
    assert!(
        matching(&ok, "CompleteMultipartUpload", "mp/failing").is_empty(),
        "{name}: a failed completion is not a success:\n{:#?}",
        events_in(&ok)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_arrives_through_s3s_fs() {
    let creds = Creds::new(S3S_KEY, S3S_SECRET);
    let Some(upstream) = S3sFs::start(&creds).await else {
        return;
    };
    every_event_arrives(&upstream, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_arrives_through_moto() {
    let Some(upstream) = Moto::start().await else {
        return;
    };
    every_event_arrives(&upstream, true).await;
}

#[test]
fn head_for_size_is_a_checked_key() {
    let dir = tempfile::tempdir().unwrap();
    let run = |text: &str| {
        let path = dir.path().join("s3tap.toml");
        std::fs::write(&path, text).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_s3tap"))
            .env_clear()
            .current_dir(dir.path())
            .arg("--config")
            .arg(&path)
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run s3tap");
        // A refused setting ends the process at once; one that was accepted
        // would serve forever.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("s3tap accepted {text:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait_with_output().unwrap()
    };
    let out = run("[notify]\nhead_for_sise = true\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("unknown field `head_for_sise`"), "{stderr}");
    let out = run("[notify]\nhead_for_size = \"yes\"\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("line 2: invalid type: string \"yes\", expected a boolean"),
        "{stderr}"
    );
}

// ---- the layer's limits and modes, in process ------------------------------

mod layer {
    use std::convert::Infallible;
    use std::sync::{Arc, Mutex};

    use bytes::Bytes;
    use http::{Request, Response};
    use http_body::Frame;
    use http_body_util::{BodyExt, Full, StreamBody};
    use s3tap::notify::{EmitOn, Event, NotifyLayer, NotifyRequestBody, MAX_DELETE_KEYS};
    use tower::{ServiceBuilder, ServiceExt};

    type Events = Arc<Mutex<Vec<Event>>>;

    fn recorder() -> (Events, NotifyLayer) {
        let events = Events::default();
        let sink = events.clone();
        (
            events,
            NotifyLayer::new(move |event: Event| sink.lock().unwrap().push(event)),
        )
    }

    fn delete_document(count: usize, quiet: bool) -> String {
        let mut doc = String::from("<Delete>");
        if quiet {
            doc.push_str("<Quiet>true</Quiet>");
        }
        for i in 0..count {
            doc.push_str(&format!("<Object><Key>k{i}</Key></Object>"));
        }
        doc.push_str("</Delete>");
        doc
    }

    /// An upstream that reads the whole request body first, as S3 does,
    /// and records whether it got all of it.
    #[derive(Clone, Default)]
    struct Upstream {
        bodies: Arc<Mutex<Vec<Result<usize, String>>>>,
        answer: &'static str,
    }

    impl Upstream {
        async fn call<B>(
            self,
            request: Request<NotifyRequestBody<B>>,
        ) -> Result<Response<Full<Bytes>>, Infallible>
        where
            B: http_body::Body<Data = Bytes> + Send,
            B::Error: Into<s3tap::body::BoxError>,
        {
            let read = request.into_body().collect().await;
            let failed = read.is_err();
            self.bodies
                .lock()
                .unwrap()
                .push(read.map(|b| b.to_bytes().len()).map_err(|e| e.to_string()));
            let status = if failed { 400 } else { 200 };
            Ok(Response::builder()
                .status(status)
                .body(Full::new(Bytes::from_static(self.answer.as_bytes())))
                .unwrap())
        }
    }

    #[tokio::test]
    async fn a_delete_objects_body_over_the_limit_is_refused_before_it_is_forwarded() {
        let (events, layer) = recorder();
        let upstream = Upstream::default();
        let seen = upstream.clone();
        let service = ServiceBuilder::new()
            .layer(layer)
            .service_fn(move |r| upstream.clone().call::<Full<Bytes>>(r));
        let request = Request::post("/b?delete")
            .header("content-length", (5 * 1024 * 1024).to_string())
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = service.oneshot(request).await.unwrap();
        assert_eq!(response.status(), 400);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert!(String::from_utf8_lossy(&body).contains("<Code>MalformedXML</Code>"));
        assert!(seen.bodies.lock().unwrap().is_empty(), "never forwarded");
        let events = events.lock().unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].status, 400);
        assert_eq!(events[0].error_code.as_deref(), Some("MalformedXML"));
        assert!(!events[0].succeeded());
    }

    #[tokio::test]
    async fn more_than_1000_keys_end_the_body_before_the_upstream_has_it_all() {
        let (events, layer) = recorder();
        let upstream = Upstream::default();
        let seen = upstream.clone();
        type Chunks = StreamBody<
            futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>,
        >;
        let service = ServiceBuilder::new()
            .layer(layer)
            .service_fn(move |r| upstream.clone().call::<Chunks>(r));
        // No Content-Length: the limit is found while the body streams.
        let doc = delete_document(MAX_DELETE_KEYS + 1, true);
        let frames: Vec<Result<Frame<Bytes>, Infallible>> = doc
            .as_bytes()
            .chunks(4096)
            .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
            .collect();
        let request = Request::post("/b?delete")
            .body(StreamBody::new(futures_util::stream::iter(frames)))
            .unwrap();
        let response = service.oneshot(request).await.unwrap();
        assert_eq!(response.status(), 400);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert!(String::from_utf8_lossy(&body).contains("<Code>MalformedXML</Code>"));
        let bodies = seen.bodies.lock().unwrap().clone();
        assert_eq!(bodies.len(), 1);
        assert!(
            bodies[0].is_err(),
            "the upstream never got a whole document"
        );
        assert_eq!(
            events.lock().unwrap()[0].error_code.as_deref(),
            Some("MalformedXML")
        );

        // Exactly 1000 keys pass.
        let (events, layer) = recorder();
        let upstream = Upstream {
            answer: "<DeleteResult></DeleteResult>",
            ..Upstream::default()
        };
        let service = ServiceBuilder::new()
            .layer(layer)
            .service_fn(move |r| upstream.clone().call::<Full<Bytes>>(r));
        let request = Request::post("/b?delete")
            .body(Full::new(Bytes::from(delete_document(
                MAX_DELETE_KEYS,
                true,
            ))))
            .unwrap();
        let response = service.oneshot(request).await.unwrap();
        assert_eq!(response.status(), 200);
        response.into_body().collect().await.unwrap();
        assert_eq!(events.lock().unwrap().len(), MAX_DELETE_KEYS);
    }

    #[tokio::test]
    async fn quiet_errors_are_left_out_and_chunked_bodies_fall_back_to_the_result() {
        let answer =
            "<DeleteResult><Error><Key>k1</Key><Code>AccessDenied</Code></Error></DeleteResult>";
        let chunked_by = [
            None,
            Some(("x-amz-content-sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER")),
            Some(("content-encoding", "gzip, AWS-Chunked")),
        ];
        for chunked in chunked_by {
            let (events, layer) = recorder();
            let upstream = Upstream {
                answer,
                ..Upstream::default()
            };
            let service = ServiceBuilder::new()
                .layer(layer)
                .service_fn(move |r| upstream.clone().call::<Full<Bytes>>(r));
            let mut request = Request::post("/b?delete");
            if let Some((name, value)) = chunked {
                request = request.header(name, value);
            }
            let request = request
                .body(Full::new(Bytes::from(delete_document(3, true))))
                .unwrap();
            let response = service.oneshot(request).await.unwrap();
            response.into_body().collect().await.unwrap();
            let keys: Vec<String> = events
                .lock()
                .unwrap()
                .iter()
                .map(|e| e.key.clone().unwrap())
                .collect();
            if chunked.is_some() {
                assert!(
                    keys.is_empty(),
                    "{chunked:?}: not read, only the result counts: {keys:?}"
                );
            } else {
                assert_eq!(keys, ["k0", "k2"]);
            }
        }
    }

    #[tokio::test]
    async fn a_200_with_error_is_a_failure_in_both_emit_modes() {
        let answer = "<Error><Code>InternalError</Code><Message>x</Message></Error>";
        for mode in [EmitOn::ResponseHead, EmitOn::BodyEnd] {
            let (events, layer) = recorder();
            let upstream = Upstream {
                answer,
                ..Upstream::default()
            };
            let service = ServiceBuilder::new()
                .layer(layer.emit_on(mode))
                .service_fn(move |r| upstream.clone().call::<Full<Bytes>>(r));
            let request = Request::post("/b/k?uploadId=u1")
                .body(Full::new(Bytes::from_static(
                    b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber></Part></CompleteMultipartUpload>",
                )))
                .unwrap();
            let response = service.oneshot(request).await.unwrap();
            assert!(
                events.lock().unwrap().is_empty(),
                "{mode:?}: waits for the body"
            );
            response.into_body().collect().await.unwrap();
            let events = events.lock().unwrap();
            assert_eq!(events.len(), 1, "{mode:?}");
            assert_eq!(events[0].status, 200);
            assert_eq!(events[0].error_code.as_deref(), Some("InternalError"));
            assert!(!events[0].succeeded());
            assert_eq!(events[0].bytes_sent.is_some(), mode == EmitOn::BodyEnd);
        }
    }
}
