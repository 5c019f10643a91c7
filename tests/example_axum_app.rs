//! The axum example: its own route answers anyone; its `/s3` routes verify
//! the client's signature, re-sign for a real upstream (s3s-fs) and turn
//! every operation into an event delivered by a Dispatcher.
#![cfg(all(feature = "upstream", feature = "dispatcher"))]

mod signing;
mod support;

#[allow(dead_code)] // main is the example's, not the test's
#[path = "../examples/axum_app.rs"]
mod axum_app;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::SignableBody;
use axum::body::Body;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use s3tap::credentials::UpstreamCredentials;
use s3tap::notify::{Dispatcher, Event};
use s3tap::sink::{BoxFuture, Sink, SinkError};
use support::clients::Creds;
use support::upstreams::{S3sFs, UpstreamPeer};
use tower::ServiceExt;

const UPSTREAM_KEY: &str = "AXUMUPSTREAMKEY";
const UPSTREAM_SECRET: &str = "axum-upstream-secret";

/// Keeps what the dispatcher delivers.
#[derive(Default)]
struct Collect(Mutex<Vec<Event>>);

impl Sink for Collect {
    fn name(&self) -> &str {
        "collect"
    }

    fn max_batch(&self) -> usize {
        16
    }

    fn deliver<'a>(&'a self, batch: &'a [Event]) -> BoxFuture<'a, Result<(), SinkError>> {
        self.0.lock().unwrap().extend(batch.iter().cloned());
        Box::pin(async { Ok(()) })
    }
}

fn signed(method: &str, path: &str, payload: &[u8], secret: &str) -> Request<Body> {
    let mut request = Request::builder()
        .method(method)
        .uri(format!("http://127.0.0.1:3000{path}"))
        .header("host", "127.0.0.1:3000")
        .header("content-length", payload.len())
        .body(Bytes::copy_from_slice(payload))
        .unwrap();
    signing::sign_with(
        &mut request,
        SignableBody::Bytes(payload),
        &signing::SignOptions {
            access_key: axum_app::ACCESS_KEY,
            secret,
            time: SystemTime::now(),
            ..signing::SignOptions::default()
        },
    );
    request.map(Body::from)
}

async fn text(response: http::Response<Body>) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[tokio::test]
async fn app_routes_stay_open_and_s3_routes_verify_resign_and_notify() {
    let Some(upstream) = S3sFs::start(&Creds::new(UPSTREAM_KEY, UPSTREAM_SECRET)).await else {
        return;
    };
    let spool = tempfile::tempdir().unwrap();
    let collected = Arc::new(Collect::default());
    let (dispatcher, task) = Dispatcher::builder()
        .sink("events", collected.clone())
        .spool(spool.path().join("events.redb"), Default::default())
        .build()
        .await
        .unwrap();
    let app = axum_app::app(
        upstream.endpoint(),
        UpstreamCredentials::new(UPSTREAM_KEY, UPSTREAM_SECRET),
        dispatcher.clone(),
    )
    .unwrap();

    let hello = Request::get("/api/hello").body(Body::empty()).unwrap();
    let response = app.clone().oneshot(hello).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(text(response).await, "hello from the app\n");

    let create = signed("PUT", "/s3/bucket", b"", axum_app::SECRET);
    let response = app.clone().oneshot(create).await.unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "{}",
        text(response).await
    );
    let put = signed("PUT", "/s3/bucket/dir/a.txt", b"hello s3", axum_app::SECRET);
    let response = app.clone().oneshot(put).await.unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "{}",
        text(response).await
    );
    // The upstream stored it without the prefix, under the bucket.
    assert!(
        upstream.files().iter().any(|f| f == "bucket/dir/a.txt"),
        "{:?}",
        upstream.files()
    );

    let get = signed("GET", "/s3/bucket/dir/a.txt", b"", axum_app::SECRET);
    let response = app.clone().oneshot(get).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(text(response).await, "hello s3");

    let forged = signed("GET", "/s3/bucket/dir/a.txt", b"", "not-the-secret");
    let response = app.clone().oneshot(forged).await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(text(response)
        .await
        .contains("<Code>SignatureDoesNotMatch</Code>"));

    let unsigned = Request::get("/s3/bucket/dir/a.txt")
        .body(Body::empty())
        .unwrap();
    let response = app.oneshot(unsigned).await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    let stats = dispatcher.shutdown(Duration::from_secs(10)).await;
    task.await.unwrap();
    assert_eq!(stats.delivered(), 5, "{stats:?}");
    let events = collected.0.lock().unwrap();
    let put = events
        .iter()
        .find(|e| e.method == "PUT" && e.key.is_some())
        .expect("the PUT's event");
    assert_eq!(put.bucket.as_deref(), Some("bucket"));
    assert_eq!(put.key.as_deref(), Some("dir/a.txt"));
    assert_eq!(put.status, 200);
    assert_eq!(put.access_key_id.as_deref(), Some(axum_app::ACCESS_KEY));
    let statuses: Vec<u16> = events.iter().map(|e| e.status).collect();
    assert_eq!(
        statuses.iter().filter(|&&s| s == 403).count(),
        2,
        "the forged and the unsigned request are events too: {statuses:?}"
    );
}
