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
use std::time::Duration;

use fleet_support::{start_proxy, UPSTREAM_KEY, UPSTREAM_SECRET};
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
