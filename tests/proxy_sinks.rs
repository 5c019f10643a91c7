//! The proxy binary's `[[sinks]]` and `[[rules]]`: several sinks and rules
//! at once, each event fanned out to every sink its rules name (here a
//! Redis stream on the machine's Redis and a JSON-lines file).
#![cfg(all(feature = "proxy", feature = "sink-redis"))]

mod signing;

use std::time::{Duration, Instant};

use clap::Parser;
use redis::AsyncCommands;
use s3tap::proxy::{Args, Config, Proxy};
use signing::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_upload_reaches_every_sink_its_rules_name() {
    let redis_url = "redis://127.0.0.1:6379/";
    let stream_key = format!("s3tap:proxy-sinks:{}", std::process::id());
    let client = redis::Client::open(redis_url).unwrap();
    let mut redis = match client.get_multiplexed_async_connection().await {
        Ok(connection) => connection,
        Err(error) if std::env::var("S3TAP_SKIP_PEERS").as_deref() == Ok("1") && std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!("!!!!!!!! SKIPPED: Redis not reachable ({error}) and S3TAP_SKIP_PEERS=1");
            return;
        }
        Err(error) => panic!(
            "Redis is not reachable on 127.0.0.1:6379 ({error}); start it with: redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save \"\" --appendonly no"
        ),
    };
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("events.jsonl");
    let config_path = dir.path().join("s3tap.toml");
    std::fs::write(
        &config_path,
        format!(
            r#"
[notify]
spool_dir = "{spool}"

[[sinks]]
name = "stream"
type = "redis"
url = "{redis_url}"
stream = "{stream_key}"

[[sinks]]
name = "file"
type = "jsonl"
path = "{jsonl}"

[[rules]]
name = "uploads"
events = ["s3:ObjectCreated:*"]
prefix = "photos/"
sinks = ["stream", "file"]

[[rules]]
name = "everything-else"
events = ["*"]
status = "all"
sinks = ["file"]
"#,
            spool = dir.path().join("spool").display(),
            jsonl = jsonl.display(),
        ),
    )
    .unwrap();
    let args = Args::parse_from([
        "s3tap",
        "--config",
        config_path.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--data-dir",
        dir.path().join("data").to_str().unwrap(),
    ]);
    let config = Config::load(&args, |name| match name {
        "AWS_ACCESS_KEY_ID" => Some(ACCESS_KEY.to_owned()),
        "AWS_SECRET_ACCESS_KEY" => Some(SECRET.to_owned()),
        _ => None,
    })
    .unwrap();
    let proxy = Proxy::bind(config).await.unwrap();
    let address = proxy.local_addr();
    tokio::spawn(proxy.serve(std::future::pending()));

    assert!(raw_put(address, "/fanout", b"")
        .await
        .starts_with("HTTP/1.1 200"));
    assert!(raw_put(address, "/fanout/photos/cat.jpg", b"meow")
        .await
        .starts_with("HTTP/1.1 200"));
    assert!(raw_put(address, "/fanout/docs/readme.txt", b"text")
        .await
        .starts_with("HTTP/1.1 200"));

    // The photo goes to both sinks (rule "uploads"); every request goes to
    // the file (rule "everything-else").
    let deadline = Instant::now() + Duration::from_secs(20);
    let (stream_ids, file_lines) = loop {
        let entries: redis::streams::StreamRangeReply =
            redis.xrange_all(&stream_key).await.unwrap();
        let stream_ids: Vec<String> = entries
            .ids
            .iter()
            .map(|entry| {
                redis::from_redis_value::<String>(entry.map.get("id").unwrap().clone()).unwrap()
            })
            .collect();
        let file_lines: Vec<serde_json::Value> = std::fs::read_to_string(&jsonl)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        if (!stream_ids.is_empty() && file_lines.len() >= 4) || Instant::now() > deadline {
            break (stream_ids, file_lines);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _: () = redis.del(&stream_key).await.unwrap();
    assert_eq!(
        stream_ids.len(),
        1,
        "only the photo matches the uploads rule"
    );
    let photo_in_file = file_lines
        .iter()
        .filter(|event| event["key"] == "photos/cat.jpg")
        .collect::<Vec<_>>();
    assert_eq!(
        photo_in_file.len(),
        2,
        "the photo reaches the file through both rules"
    );
    assert!(
        photo_in_file
            .iter()
            .any(|event| event["id"] == stream_ids[0].as_str()),
        "same event id in both sinks"
    );
    assert_eq!(
        file_lines.len(),
        4,
        "bucket creation, photo (twice), readme: {file_lines:?}"
    );
}
