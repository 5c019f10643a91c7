//! Fleet mode on a real 3-node NATS JetStream cluster (issue 13's
//! acceptance): three `s3tap` proxies commit events to a stream with 3
//! replicas, two `s3tap deliver` processes deliver them to a webhook
//! receiver, while a steady load of PUTs and DELETEs runs and the faults
//! hit: a proxy killed with `kill -9` and its spool directory deleted, a
//! deliverer killed mid-batch, a NATS node stopped and started again, the
//! receiver down for a while. At the end every event the clients caused
//! (each PUT and DELETE they got a 2xx for) was delivered at least once.
//! The runs themselves are in `fleet_support`, shared with the Kafka
//! engine's `fleet_kafka.rs`.
#![cfg(all(feature = "proxy", feature = "outbox-nats"))]

mod fleet_support;
mod notify_support;
mod signing;
mod support;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fleet_support::{start_proxy, UPSTREAM_KEY, UPSTREAM_SECRET};
use notify_support::{Receiver, Reply, Seen};
use support::binary::S3tapCommand;
use support::nats_cluster::NatsCluster;
use support::upstreams::{S3sFs, UpstreamPeer};
use support::Creds;

/// The fleet's `[outbox]` on the cluster at `nats`.
fn outbox(nats: &str) -> String {
    format!(
        r#"[outbox]
url = "{nats}"
replicas = 3
stream = "FLEET_TEST"
subject_prefix = "fleet.events"
dead_letter_stream = "FLEET_TEST_DEAD"
dead_letter_subject_prefix = "fleet.dead"
ack_wait_secs = 3"#
    )
}

async fn upstream_and_cluster(dir: &Path) -> Option<(S3sFs, NatsCluster)> {
    let upstream = S3sFs::start(&Creds::new(UPSTREAM_KEY, UPSTREAM_SECRET)).await?;
    let cluster = NatsCluster::start(dir);
    cluster.wait_jetstream().await;
    std::fs::create_dir_all(upstream.data_dir().join("fleet")).unwrap();
    Some((upstream, cluster))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_proxies_two_deliverers_lose_nothing_through_the_faults() {
    let dir = tempfile::tempdir().unwrap();
    let Some((upstream, mut cluster)) = upstream_and_cluster(dir.path()).await else {
        return;
    };
    let section = outbox(&cluster.url());
    // A NATS node stops, and comes back.
    let node_fault = |down: bool| {
        if down {
            cluster.stop(2)
        } else {
            cluster.restart(2)
        }
    };
    fleet_support::lose_nothing_through_the_faults(
        "fleet",
        dir.path(),
        upstream.endpoint(),
        &section,
        node_fault,
    )
    .await;
}

/// The stream's message count, read from the cluster.
async fn stream_messages(js: &async_nats::jetstream::Context, stream: &str) -> u64 {
    js.get_stream(stream)
        .await
        .expect("stream")
        .info()
        .await
        .expect("stream info")
        .state
        .messages
}

async fn jetstream(cluster: &NatsCluster) -> async_nats::jetstream::Context {
    let url = cluster.url();
    let servers: Vec<&str> = url.split(',').collect();
    async_nats::jetstream::new(async_nats::connect(servers.as_slice()).await.unwrap())
}

/// After each 2xx the stream already counts the request's events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_comes_after_its_events_are_in_the_stream() {
    let dir = tempfile::tempdir().unwrap();
    let Some((upstream, cluster)) = upstream_and_cluster(dir.path()).await else {
        return;
    };
    let toml = fleet_support::config(
        upstream.endpoint(),
        &outbox(&cluster.url()),
        // Never called: no deliverer runs.
        "http://127.0.0.1:9/hook",
        &dir.path().join("spool"),
    );
    let proxy = start_proxy(dir.path(), "proxy", &toml);
    let js = jetstream(&cluster).await;
    let count = || stream_messages(&js, "FLEET_TEST");
    fleet_support::an_answer_comes_after_its_events(proxy.addr, "stream", count, count).await;
}

/// Dead letters listed and redriven through `s3tap dead-letters --config`
/// on the dead-letter stream, `s3tap replay` from the stream, and both
/// roles in one process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_and_redriven_and_the_log_replays() {
    let dir = tempfile::tempdir().unwrap();
    let Some((upstream, cluster)) = upstream_and_cluster(dir.path()).await else {
        return;
    };
    fleet_support::dead_letters_are_listed_and_redriven_and_the_log_replays(
        dir.path(),
        upstream.endpoint(),
        &outbox(&cluster.url()),
    )
    .await;
}

/// The README's `[outbox]` example names every key and loads as written.
#[test]
fn the_readme_outbox_example_loads() {
    let example = support::readme_toml_example(|block| block.contains("[outbox]"));
    for key in [
        "url",
        "replicas",
        "max_age_secs",
        "max_bytes",
        "stream",
        "subject_prefix",
        "dead_letter_stream",
        "dead_letter_subject_prefix",
        "duplicate_window_secs",
        "commit",
        "commit_timeout_ms",
        "ack_wait_secs",
        "deliver",
        "readyz_max_buffer_fill",
    ] {
        assert!(
            example.contains(&format!("{key} =")),
            "{key} is not in the README example"
        );
    }
    use clap::Parser;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s3tap.toml");
    std::fs::write(&path, &example).unwrap();
    let args = s3tap::proxy::Args::parse_from(["s3tap", "--config", path.to_str().unwrap()]);
    let config = s3tap::proxy::Config::load(&args, |_| None)
        .unwrap_or_else(|e| panic!("the README example: {e}"));
    let outbox = config.outbox.expect("[outbox]");
    assert!(outbox.commit && !outbox.deliver);
    assert_eq!(outbox.commit_timeout, Duration::from_millis(500));
    assert_eq!(outbox.ack_wait, Duration::from_secs(30));
    // A misspelt key is refused, as everywhere in the file.
    std::fs::write(&path, example.replace("replicas =", "replica =")).unwrap();
    let error = s3tap::proxy::Config::load(&args, |_| None).unwrap_err();
    assert!(error.to_string().contains("replica"), "{error}");
}

/// With the whole cluster down, changing requests still get their answers
/// (nothing waits for an outbox that is away), their events wait in the
/// local spool, and once that is fuller than `readyz_max_buffer_fill`,
/// `/readyz` says why; when the cluster is back the spool drains into the
/// stream and the proxy is ready again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_outbox_with_a_full_buffer_fails_readyz_then_drains() {
    let dir = tempfile::tempdir().unwrap();
    let Some((upstream, mut cluster)) = upstream_and_cluster(dir.path()).await else {
        return;
    };
    let toml = fleet_support::config(
        upstream.endpoint(),
        &outbox(&cluster.url()),
        "http://127.0.0.1:9/hook",
        &dir.path().join("spool"),
    )
    .replace("[notify]\n", "[notify]\nspool_max_events = 20\n")
    .replace(
        "replicas = 3",
        "replicas = 1\nreadyz_max_buffer_fill = 0.25",
    );
    let proxy = start_proxy(dir.path(), "proxy", &toml);
    let client = fleet_support::http_client();
    let status = fleet_support::send(
        &client,
        proxy.addr,
        http::Method::PUT,
        "/fleet/before",
        b"x",
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    let (status, body) = proxy.admin_get("/readyz").await;
    assert_eq!(status, 200, "{body}");

    for node in 0..3 {
        cluster.stop(node);
    }
    for i in 0..10 {
        let started = Instant::now();
        let status = fleet_support::send(
            &client,
            proxy.addr,
            http::Method::PUT,
            &format!("/fleet/while-down/{i}"),
            b"x",
        )
        .await
        .unwrap();
        assert_eq!(status, 200);
        eprintln!("PUT {i} with the cluster down: {:?}", started.elapsed());
    }
    let (status, body) = proxy.admin_get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("the outbox is unreachable"), "{body}");

    for node in 0..3 {
        cluster.restart(node);
    }
    let js = jetstream(&cluster).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, _) = proxy.admin_get("/readyz").await;
        let stored = match js.get_stream("FLEET_TEST").await {
            Ok(mut stream) => stream.info().await.map(|i| i.state.messages).unwrap_or(0),
            Err(_) => 0,
        };
        if status == 200 && stored == 11 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not drained: /readyz {status}, {stored} of 11 events in the stream\n{}",
            proxy.logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A receiver that answers `410 Gone` makes a deliverer stop delivering to
/// that sink, and nothing is lost: the events stay in the stream, and a
/// deliverer started once the receiver is back delivers them. Without
/// `[outbox]`, `s3tap deliver` refuses to start and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gone_receiver_parks_the_sink_and_its_events_wait_in_the_stream() {
    let dir = tempfile::tempdir().unwrap();
    let Some((upstream, cluster)) = upstream_and_cluster(dir.path()).await else {
        return;
    };
    let gone = Arc::new(AtomicBool::new(true));
    let behaviour: notify_support::Behaviour = {
        let gone = gone.clone();
        Arc::new(move |_: &Seen| {
            if gone.load(Ordering::Relaxed) {
                Reply::Status(410)
            } else {
                Reply::Status(200)
            }
        })
    };
    let receiver = Receiver::start(notify_support::free(), behaviour).await;
    let toml = fleet_support::config(
        upstream.endpoint(),
        &outbox(&cluster.url()),
        &receiver.url(),
        &dir.path().join("spool"),
    );
    let proxy = start_proxy(dir.path(), "proxy", &toml);
    let mut deliverer = fleet_support::start_deliverer(dir.path(), "deliverer", &toml);
    let client = fleet_support::http_client();
    for i in 0..5 {
        let path = format!("/fleet/gone/{i}");
        assert_eq!(
            fleet_support::send(&client, proxy.addr, http::Method::PUT, &path, b"x")
                .await
                .unwrap(),
            200
        );
    }
    assert!(
        deliverer.wait_log("410 Gone", Duration::from_secs(20)),
        "{}",
        deliverer.logs()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let asked = receiver.log.records().len();
    assert!(asked >= 1);
    // Parked: nothing more is sent to it, nothing is acknowledged.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(receiver.log.records().len(), asked, "sent to a gone sink");
    assert!(receiver.log.acked_ids().is_empty());

    deliverer.signal("TERM");
    let _ = deliverer.wait_exit(Duration::from_secs(20));
    gone.store(false, Ordering::Relaxed);
    let _deliverer = fleet_support::start_deliverer(dir.path(), "deliverer-again", &toml);
    assert!(
        notify_support::wait_until(Duration::from_secs(30), || receiver.log.acked_ids().len()
            == 5)
        .await,
        "{} of 5 delivered after the restart",
        receiver.log.acked_ids().len()
    );

    let (code, stderr) = S3tapCommand::new()
        .config(
            &dir.path().join("proxy"),
            &toml.replace("[outbox]", "[unused]"),
        )
        .arg("deliver")
        .refused(&dir.path().join("proxy"));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("unknown field"), "{stderr}");
    let plain = toml[..toml.find("[outbox]").unwrap()].to_owned()
        + &toml[toml.find("[[sinks]]").unwrap()..];
    let (code, stderr) = S3tapCommand::new()
        .config(&dir.path().join("proxy"), &plain)
        .arg("deliver")
        .refused(&dir.path().join("proxy"));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("needs an [outbox] section"), "{stderr}");
}
