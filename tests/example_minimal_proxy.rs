//! The minimal_proxy example, served on a real socket in front of s3tap's
//! usual upstream peer (s3s-fs): boto3 round-trips an object through it and
//! each operation is delivered as an event.
#![cfg(feature = "proxy")]

mod support;

#[allow(dead_code)] // main is the example's, not the test's
#[path = "../examples/minimal_proxy.rs"]
mod minimal_proxy;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use s3tap::notify::{Dispatcher, Event, S3Operation};
use s3tap::sink::{BoxFuture, Sink, SinkError};
use support::clients::Creds;
use support::upstreams::{S3sFs, UpstreamPeer};
use support::{random_file, Peers};

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

#[tokio::test]
async fn boto3_round_trips_through_the_example_and_every_operation_is_an_event() {
    let Some(peers) = Peers::get() else { return };
    let creds = Creds::new(minimal_proxy::ACCESS_KEY, minimal_proxy::SECRET);
    let Some(upstream) = S3sFs::start(&creds).await else {
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
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn({
        let upstream = upstream.endpoint().to_owned();
        let dispatcher = dispatcher.clone();
        async move { minimal_proxy::serve(listener, &upstream, dispatcher).await }
    });

    let dir = tempfile::tempdir().unwrap();
    let (file, _) = random_file(dir.path(), "object.bin", 100_000, 3);
    let output = support::clients::boto3_script(
        peers,
        "boto3_roundtrip.py",
        &[
            endpoint.as_ref(),
            "example".as_ref(),
            "dir/object.bin".as_ref(),
            file.as_os_str(),
        ],
        &creds,
    )
    .await;
    output.assert_success("boto3 through minimal_proxy");
    server.abort();

    let stats = dispatcher.shutdown(Duration::from_secs(10)).await;
    task.await.unwrap();
    let events = collected.0.lock().unwrap();
    assert_eq!(stats.delivered(), events.len() as u64);
    let operations: Vec<S3Operation> = events.iter().map(|e| e.operation).collect();
    for expected in [
        S3Operation::CreateBucket,
        S3Operation::PutObject,
        S3Operation::GetObject,
        S3Operation::ListObjectsV2,
    ] {
        assert!(
            operations.contains(&expected),
            "{expected:?} in {operations:?}"
        );
    }
    let put = events
        .iter()
        .find(|e| e.operation == S3Operation::PutObject)
        .unwrap();
    assert_eq!(put.key.as_deref(), Some("dir/object.bin"));
    assert_eq!(put.size, Some(100_000));
}
