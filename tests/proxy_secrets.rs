//! Secrets the `s3tap` binary holds (client secrets, the upstream key, the
//! webhook, Standard Webhooks and SNS secrets) never reach its logs at
//! `RUST_LOG=trace`, nor any `Debug` output of its configuration types.
#![cfg(feature = "proxy")]

mod support;

use std::time::Duration;

use clap::Parser;
use s3tap::proxy::{Args, Config};
use support::binary::{S3tap, S3tapCommand};
use support::clients::{boto3_script, Creds};
use support::upstreams::{S3sFs, UpstreamPeer};
use support::{random_file, Peers};

const CLIENT_SECRET: &str = "client-secret-never-logged-a1";
const OTHER_CLIENT_SECRET: &str = "second-client-secret-never-logged-b2";
const WRONG_SECRET: &str = "wrong-secret-never-logged-c3";
const UPSTREAM_SECRET: &str = "upstream-secret-never-logged-d4";
const WEBHOOK_SECRET: &str = "webhook-secret-never-logged-e5";
const B2_SINK_SECRET: &str = "b2-sink-secret-never-logged-f6";
const STANDARD_SECRET: &str = "whsec_c3RhbmRhcmQtbmV2ZXItbG9nZ2VkLWc3";
const SNS_SECRET: &str = "sns-secret-never-logged-h8";

/// The sinks and rules both configurations share: every event goes to a
/// B2-signed webhook, a Standard Webhooks one and SNS, all on a closed port
/// so deliveries are signed, sent, fail and are retried while the test runs.
fn notify_sections(closed: u16) -> String {
    format!(
        r#"
[notify]
webhook_url = "http://127.0.0.1:{closed}/seed"
webhook_secret = "{WEBHOOK_SECRET}"

[[sinks]]
name = "b2hook"
type = "webhook"
url = "http://127.0.0.1:{closed}/b2"
b2_secret = "{B2_SINK_SECRET}"

[[sinks]]
name = "standard"
type = "webhook"
url = "http://127.0.0.1:{closed}/std"
standard_webhooks_secret = "{STANDARD_SECRET}"

[[sinks]]
name = "topic"
type = "sns"
topic_arn = "arn:aws:sns:us-east-1:123456789012:events"
region = "us-east-1"
access_key_id = "SNSKEYID"
secret_access_key = "{SNS_SECRET}"
endpoint = "http://127.0.0.1:{closed}"

[[rules]]
name = "all"
events = ["*"]
status = "all"
sinks = ["webhook", "b2hook", "standard", "topic"]
"#
    )
}

fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs boto3 with the right and a wrong secret, stops the proxy and
/// returns everything it wrote.
async fn exercise(peers: &Peers, mut proxy: S3tap, client: &Creds) -> String {
    let dir = tempfile::tempdir().unwrap();
    let (file, _) = random_file(dir.path(), "payload.bin", 5000, 1);
    let out = boto3_script(
        peers,
        "boto3_roundtrip.py",
        &[
            proxy.endpoint.as_ref(),
            "secrets".as_ref(),
            "object.bin".as_ref(),
            file.as_os_str(),
        ],
        client,
    )
    .await;
    out.assert_success(&format!("boto3; log tail:\n{}", tail(&proxy.logs())));
    let refused = boto3_script(
        peers,
        "boto3_list_buckets.py",
        &[proxy.endpoint.as_ref()],
        &Creds::new(&client.access_key, WRONG_SECRET),
    )
    .await;
    assert_eq!(refused.stdout.trim(), "ERROR SignatureDoesNotMatch");
    // The sinks have tried (and failed) to deliver, signing each attempt.
    for sink in ["b2hook", "standard", "topic"] {
        assert!(
            proxy.wait_log(&format!("sink={sink}"), Duration::from_secs(20))
                || proxy.wait_log(&format!("sink=\"{sink}\""), Duration::from_secs(1)),
            "no delivery attempt of {sink} logged:\n{}",
            tail(&proxy.logs())
        );
    }
    proxy.signal("TERM");
    assert!(proxy.wait_exit(Duration::from_secs(30)).success());
    format!("{}\n{}", proxy.logs(), proxy.stdout())
}

fn tail(text: &str) -> &str {
    let start = text.len().saturating_sub(6000);
    let start = (start..text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    &text[start..]
}

#[track_caller]
fn assert_absent(output: &str, secrets: &[&str]) {
    assert!(
        output.contains("status=200") && output.contains("status=403"),
        "the requests were logged at all:\n{}",
        tail(output)
    );
    for secret in secrets {
        assert!(!output.contains(secret), "{secret:?} appears in the output");
    }
}

#[tokio::test]
async fn fixed_upstream_key_and_sink_secrets_stay_out_of_trace_logs() {
    let Some(peers) = Peers::get() else { return };
    let upstream = Creds::new("SECRETSUPSTREAM", UPSTREAM_SECRET);
    let Some(s3s) = S3sFs::start(&upstream).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let proxy = S3tapCommand::new()
        .env("RUST_LOG", "trace")
        .config(
            dir.path(),
            &format!(
                r#"
[upstream]
endpoint = "{endpoint}"
credentials = "fixed"
access_key_id = "SECRETSUPSTREAM"
secret_access_key = "{UPSTREAM_SECRET}"

[[clients]]
access_key_id = "SECRETSCLIENT"
secret_access_key = "{CLIENT_SECRET}"

[[clients]]
access_key_id = "SECRETSOTHER"
secret_access_key = "{OTHER_CLIENT_SECRET}"
{notify}
"#,
                endpoint = s3s.endpoint(),
                notify = notify_sections(closed_port()),
            ),
        )
        .start(dir.path());
    let output = exercise(peers, proxy, &Creds::new("SECRETSCLIENT", CLIENT_SECRET)).await;
    assert_absent(
        &output,
        &[
            CLIENT_SECRET,
            OTHER_CLIENT_SECRET,
            WRONG_SECRET,
            UPSTREAM_SECRET,
            WEBHOOK_SECRET,
            B2_SINK_SECRET,
            STANDARD_SECRET,
            SNS_SECRET,
        ],
    );
}

#[tokio::test]
async fn client_and_mapped_upstream_secrets_stay_out_of_trace_logs() {
    let Some(peers) = Peers::get() else { return };
    let upstream = Creds::new("SECRETSMAPPEDUP", UPSTREAM_SECRET);
    let Some(s3s) = S3sFs::start(&upstream).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let proxy = S3tapCommand::new()
        .env("RUST_LOG", "trace")
        .config(
            dir.path(),
            &format!(
                r#"
[upstream]
endpoint = "{endpoint}"
credentials = "mapped"

[[clients]]
access_key_id = "SECRETSMAPPED"
secret_access_key = "{CLIENT_SECRET}"
upstream_access_key_id = "SECRETSMAPPEDUP"
upstream_secret_access_key = "{UPSTREAM_SECRET}"
{notify}
"#,
                endpoint = s3s.endpoint(),
                notify = notify_sections(closed_port()),
            ),
        )
        .start(dir.path());
    let output = exercise(peers, proxy, &Creds::new("SECRETSMAPPED", CLIENT_SECRET)).await;
    assert_absent(
        &output,
        &[
            CLIENT_SECRET,
            WRONG_SECRET,
            UPSTREAM_SECRET,
            WEBHOOK_SECRET,
            B2_SINK_SECRET,
            STANDARD_SECRET,
            SNS_SECRET,
        ],
    );
}

const EVERY_SECRET: [&str; 7] = [
    UPSTREAM_SECRET,
    WEBHOOK_SECRET,
    CLIENT_SECRET,
    OTHER_CLIENT_SECRET,
    B2_SINK_SECRET,
    STANDARD_SECRET,
    SNS_SECRET,
];

/// The merged configuration's `Debug`; the file sections' own `Debug` is
/// checked beside them (`proxy::config`'s unit tests), as they are private.
#[test]
fn debug_output_of_every_config_type_has_no_secrets() {
    let mut shown = Vec::new();

    // The merged Config, from the same settings as a TOML file plus the
    // Worker's variables.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s3tap.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[upstream]
endpoint = "http://127.0.0.1:9"
credentials = "mapped"

[[clients]]
access_key_id = "CLIENTKEY"
secret_access_key = "{CLIENT_SECRET}"
upstream_access_key_id = "MAPPEDKEY"
upstream_secret_access_key = "{OTHER_CLIENT_SECRET}"
{notify}
"#,
            notify = notify_sections(9)
        ),
    )
    .unwrap();
    let args = Args::parse_from(["s3tap", "--config", path.to_str().unwrap()]);
    let config = Config::load(&args, |name| match name {
        "AWS_ACCESS_KEY_ID" => Some("ENVKEY".to_owned()),
        "AWS_SECRET_ACCESS_KEY" => Some(UPSTREAM_SECRET.to_owned()),
        _ => None,
    })
    .unwrap();
    shown.push(format!("{config:?}"));
    shown.push(format!("{config:#?}"));
    shown.push(format!("{:?}", config.upstream));
    shown.push(format!("{:?}", config.clients));
    shown.push(format!("{:?}", config.notify));

    let fixed_path = dir.path().join("fixed.toml");
    std::fs::write(
        &fixed_path,
        format!(
            "[upstream]\nendpoint = \"http://127.0.0.1:9\"\ncredentials = \"fixed\"\n\
             access_key_id = \"UPKEY\"\nsecret_access_key = \"{UPSTREAM_SECRET}\"\n\
             [[clients]]\naccess_key_id = \"C\"\nsecret_access_key = \"{CLIENT_SECRET}\"\n"
        ),
    )
    .unwrap();
    let args = Args::parse_from(["s3tap", "--config", fixed_path.to_str().unwrap()]);
    let fixed = Config::load(&args, |_| None).unwrap();
    shown.push(format!("{fixed:?}"));

    for text in &shown {
        for secret in EVERY_SECRET {
            assert!(
                !text.contains(secret),
                "{secret:?} in Debug output:\n{text}"
            );
        }
    }
}
