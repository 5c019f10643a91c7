//! The dispatcher's series on `/metrics` that the README lists (queue,
//! spool, per-sink delivered/retried/failed/dead-lettered), each one named
//! exactly and seen to move when its event happens: a healthy sink, one
//! that is down and then recovers, and one that refuses every event.
#![cfg(feature = "proxy")]

mod notify_support;
mod signing;
mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use notify_support::{Receiver, Reply, Seen};
use s3tap::proxy::{Args, Config, Proxy};
use signing::*;
use support::binary::http_get;

/// The value of one series (`name` or `name{labels}`), if it is exposed.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

struct Scraper(SocketAddr);

impl Scraper {
    async fn text(&self) -> String {
        let (status, text) = http_get(self.0, "/metrics").await;
        assert_eq!(status, 200);
        text
    }

    /// Scrapes until `done` holds for the exposition; panics after 20 s.
    async fn until(&self, what: &str, done: impl Fn(&dyn Fn(&str) -> f64) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = self.text().await;
            let get = |series: &str| {
                value(&text, series).unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
            };
            if done(&get) {
                return text;
            }
            assert!(Instant::now() < deadline, "{what} never happened:\n{text}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_spool_and_per_sink_series_move_with_their_events() {
    let good = Receiver::ok().await;
    let flaky_up = Arc::new(AtomicBool::new(false));
    let up = flaky_up.clone();
    let flaky = Receiver::start(
        notify_support::free(),
        Arc::new(move |_: &Seen| Reply::Status(if up.load(Ordering::SeqCst) { 200 } else { 503 })),
    )
    .await;
    let refuse = Receiver::start(
        notify_support::free(),
        Arc::new(|_: &Seen| Reply::Status(400)),
    )
    .await;

    let dir = tempfile::tempdir().unwrap();
    let (s3, scrape) = start(
        dir.path(),
        &format!(
            r#"
[notify]
spool_dir = "{spool}"

[[sinks]]
name = "good"
type = "webhook"
url = "{good}"

[[sinks]]
name = "flaky"
type = "webhook"
url = "{flaky}"

[[sinks]]
name = "refuse"
type = "webhook"
url = "{refuse}"

[[rules]]
name = "all"
events = ["*"]
status = "all"
sinks = ["good", "flaky", "refuse"]
"#,
            spool = dir.path().join("spool").display(),
            good = good.url(),
            flaky = flaky.url(),
            refuse = refuse.url(),
        ),
    )
    .await;

    // At rest: every series is there, at zero.
    let text = scrape.text().await;
    for series in [
        "s3tap_events_queued",
        "s3tap_events_spooled",
        "s3tap_spool_bytes",
        "s3tap_spool_commits_total",
        "s3tap_events_delivered_unspooled_total",
        "s3tap_events_dropped_total",
        "s3tap_events_spool_full_total",
    ] {
        assert_eq!(value(&text, series), Some(0.0), "{series} in:\n{text}");
    }
    for sink in ["good", "flaky", "refuse"] {
        for name in [
            "s3tap_sink_delivered_total",
            "s3tap_sink_retried_total",
            "s3tap_sink_failed_permanent_total",
            "s3tap_sink_dead_lettered_total",
            "s3tap_sink_disabled",
        ] {
            let series = format!("{name}{{sink=\"{sink}\"}}");
            assert_eq!(value(&text, &series), Some(0.0), "{series} in:\n{text}");
        }
    }

    // Three events: a bucket and two objects.
    assert!(raw_put(s3, "/metrics", b"")
        .await
        .starts_with("HTTP/1.1 200"));
    for key in ["a.txt", "b.txt"] {
        assert!(raw_put(s3, &format!("/metrics/{key}"), b"0123456789")
            .await
            .starts_with("HTTP/1.1 200"));
    }

    // The healthy sink acknowledges them; the refusing one dead-letters
    // them; the one that is down retries them from the spool.
    scrape
        .until("delivery, refusal, retry and spooling", |get| {
            get("s3tap_sink_delivered_total{sink=\"good\"}") == 3.0
                && get("s3tap_sink_failed_permanent_total{sink=\"refuse\"}") == 3.0
                && get("s3tap_sink_dead_lettered_total{sink=\"refuse\"}") == 3.0
                && get("s3tap_sink_retried_total{sink=\"flaky\"}") >= 3.0
                && get("s3tap_events_spooled") == 3.0
                && get("s3tap_spool_bytes") > 0.0
                && get("s3tap_spool_commits_total") > 0.0
        })
        .await;
    let text = scrape.text().await;
    assert_eq!(
        value(&text, "s3tap_sink_delivered_total{sink=\"flaky\"}"),
        Some(0.0)
    );
    assert_eq!(value(&text, "s3tap_events_queued"), Some(0.0), "{text}");

    // The sink comes back: the spool drains into it.
    flaky_up.store(true, Ordering::SeqCst);
    scrape
        .until("the spool draining", |get| {
            get("s3tap_sink_delivered_total{sink=\"flaky\"}") == 3.0
                && get("s3tap_events_spooled") == 0.0
                && get("s3tap_spool_bytes") == 0.0
                && get("s3tap_events_queued") == 0.0
        })
        .await;
    let text = scrape.text().await;
    // The healthy sink beat the spool for some events at least, and nothing
    // was refused for room.
    assert_eq!(value(&text, "s3tap_events_dropped_total"), Some(0.0));
    assert_eq!(value(&text, "s3tap_events_spool_full_total"), Some(0.0));
    assert_eq!(
        value(&text, "s3tap_sink_disabled{sink=\"good\"}"),
        Some(0.0)
    );
}

/// The proxy in-process with the embedded store and `toml`.
async fn start(dir: &std::path::Path, toml: &str) -> (SocketAddr, Scraper) {
    let config_path = dir.join("s3tap.toml");
    std::fs::write(&config_path, toml).unwrap();
    let args = Args::parse_from([
        "s3tap",
        "--config",
        config_path.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--data-dir",
        dir.join("data").to_str().unwrap(),
    ]);
    let config = Config::load(&args, |name| match name {
        "AWS_ACCESS_KEY_ID" => Some(ACCESS_KEY.to_owned()),
        "AWS_SECRET_ACCESS_KEY" => Some(SECRET.to_owned()),
        _ => None,
    })
    .unwrap();
    let proxy = Proxy::bind(config).await.unwrap();
    let s3 = proxy.local_addr();
    let scrape = Scraper(proxy.admin_addr());
    tokio::spawn(proxy.serve(std::future::pending()));
    (s3, scrape)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_answering_410_is_shown_disabled() {
    let gone = Receiver::start(
        notify_support::free(),
        Arc::new(|_: &Seen| Reply::Status(410)),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (s3, scrape) = start(
        dir.path(),
        &format!(
            "[notify]\nspool_dir = \"{}\"\n\n[[sinks]]\nname = \"gone\"\ntype = \"webhook\"\nurl = \"{}\"\n",
            dir.path().join("spool").display(),
            gone.url()
        ),
    )
    .await;
    assert!(raw_put(s3, "/gone", b"").await.starts_with("HTTP/1.1 200"));
    scrape
        .until("the sink disabled", |get| {
            get("s3tap_sink_disabled{sink=\"gone\"}") == 1.0
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_a_healthy_sink_acknowledges_at_once_never_touch_the_spool() {
    let fine = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let (s3, scrape) = start(
        dir.path(),
        &format!(
            "[notify]\nspool_dir = \"{}\"\n\n[[sinks]]\nname = \"fine\"\ntype = \"webhook\"\nurl = \"{}\"\n",
            dir.path().join("spool").display(),
            fine.url()
        ),
    )
    .await;
    assert!(raw_put(s3, "/fine", b"").await.starts_with("HTTP/1.1 200"));
    for i in 0..9 {
        assert!(raw_put(s3, &format!("/fine/{i}"), b"x")
            .await
            .starts_with("HTTP/1.1 200"));
    }
    scrape
        .until("ten deliveries", |get| {
            get("s3tap_sink_delivered_total{sink=\"fine\"}") == 10.0
        })
        .await;
    // Delivered within the 5 to 10 ms before an event falls due: most (on a
    // quiet machine all) of them skip the spool; at least one must.
    scrape
        .until("an unspooled delivery", |get| {
            get("s3tap_events_delivered_unspooled_total") >= 1.0
        })
        .await;
}
