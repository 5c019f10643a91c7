//! A binary built with every feature (`cargo install s3tap --features full`,
//! which `cargo test --all-features` builds too) knows every kind of sink:
//! its `--help` names the subcommands, and it starts with one `[[sinks]]`
//! entry of each kind, against the brokers that run on the machine.
#![cfg(all(
    feature = "proxy",
    feature = "sink-kafka",
    feature = "sink-sns",
    feature = "sink-nats",
    feature = "sink-redis",
    feature = "sink-rabbitmq",
    feature = "sink-mqtt"
))]

mod support;

use std::process::Command;

use support::binary::S3tapCommand;

/// Every `type` a `[[sinks]]` entry may have.
const KINDS: [&str; 9] = [
    "webhook", "jsonl", "kafka", "sns", "sqs", "nats", "redis", "rabbitmq", "mqtt",
];

#[test]
fn help_names_the_subcommands() {
    let output = Command::new(env!("CARGO_BIN_EXE_s3tap"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for subcommand in ["dead-letters", "sinks"] {
        assert!(help.contains(subcommand), "{subcommand} in --help:\n{help}");
    }
}

#[tokio::test]
async fn one_sink_of_every_kind_starts() {
    let dir = tempfile::tempdir().unwrap();
    // Brokers on the machine's standard ports; Kafka, SNS and SQS connect
    // only when they deliver, so a closed port is enough to start.
    let config = format!(
        r#"
[notify]
spool_dir = "{spool}"

[[sinks]]
name = "webhook"
type = "webhook"
url = "http://127.0.0.1:9/hook"

[[sinks]]
name = "jsonl"
type = "jsonl"
path = "{jsonl}"

[[sinks]]
name = "kafka"
type = "kafka"
brokers = "127.0.0.1:9"
topic = "s3tap-every-sink"

[[sinks]]
name = "sns"
type = "sns"
topic_arn = "arn:aws:sns:us-east-1:123456789012:s3tap"
region = "us-east-1"
access_key_id = "AKID"
secret_access_key = "not-used"
endpoint = "http://127.0.0.1:9"

[[sinks]]
name = "sqs"
type = "sqs"
queue_url = "http://127.0.0.1:9/123456789012/s3tap"
region = "us-east-1"
access_key_id = "AKID"
secret_access_key = "not-used"
endpoint = "http://127.0.0.1:9"

[[sinks]]
name = "nats"
type = "nats"
url = "nats://127.0.0.1:4222"
subject = "s3tap.every-sink"

[[sinks]]
name = "redis"
type = "redis"
url = "redis://127.0.0.1:6379/"
stream = "s3tap:every-sink"

[[sinks]]
name = "rabbitmq"
type = "rabbitmq"
url = "amqp://guest:guest@127.0.0.1:5672/%2f"
exchange = ""
routing_key = "s3tap.every-sink"

[[sinks]]
name = "mqtt"
type = "mqtt"
host = "127.0.0.1"
topic = "s3tap/every-sink"

[[rules]]
name = "all"
events = ["*"]
sinks = [{sinks}]
"#,
        spool = dir.path().join("spool").display(),
        jsonl = dir.path().join("events.jsonl").display(),
        sinks = KINDS.map(|k| format!("{k:?}")).join(", "),
    );
    let proxy = S3tapCommand::new()
        .env("RUST_LOG", "info")
        .config(dir.path(), &config)
        .start(dir.path());
    let (status, body) = proxy.admin_get("/healthz").await;
    assert_eq!(status, 200, "{body}");
    let logs = proxy.logs();
    for kind in KINDS {
        assert!(
            logs.contains(&format!("arn:s3tap:sqs::1:{kind}")),
            "the {kind} sink was built and named at startup:\n{logs}"
        );
    }
}
