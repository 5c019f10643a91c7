//! Operating the event pipeline (issue 12, section 4), through the `s3tap`
//! binary in front of s3s-fs with a loopback webhook receiver:
//!
//! - a sink answering `400` fills the dead-letter table; once it answers
//!   `200`, `s3tap dead-letters redrive` (the built binary) and the admin
//!   API's `POST /admin/dead-letters/redrive` deliver them, with the counts
//!   listed == failed == redriven == delivered; purge empties the table; a
//!   missing or wrong token is refused, and no configured token means 403;
//! - `/readyz` answers 503 while every sink of a rule is disabled by a
//!   `410` and 200 again after `s3tap sinks enable`, and 503 when the spool
//!   is fuller than `readyz_max_spool_fill`; the oldest-undelivered gauge
//!   moves while a sink is down;
//! - inbound replay semantics: a B2-signed message sent twice reaches the
//!   handler twice, the second time marked `Redelivery`; a Standard
//!   Webhooks repeat is still refused;
//! - the new config keys are rejected when misspelt.
#![cfg(feature = "proxy")]

mod notify_support;
mod support;

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use notify_support::{closed_port, free, wait_until, Log, Receiver, Reply, Seen};
use serde_json::Value;
use support::binary::{S3tap, S3tapCommand};
use support::upstreams::{S3sFs, UpstreamPeer};
use support::Creds;

const CLIENT_KEY: &str = "S3TAPOPSCLIENTKEY001";
const CLIENT_SECRET: &str = "ops-client-secret-5d2e9a";
const UPSTREAM_KEY: &str = "S3SFSOPSUPSTREAM0001";
const UPSTREAM_SECRET: &str = "ops-upstream-secret-c41b7f";
const TOKEN: &str = "admin-token-for-ops-tests-8f3a61";
const BUCKET: &str = "ops";
const WAIT: Duration = Duration::from_secs(30);

// ---- the binary -----------------------------------------------------------

/// The `s3tap` binary on `config`, run in the config's directory.
fn start(config: &Path) -> S3tap {
    S3tapCommand::new()
        .env("RUST_LOG", "info")
        .arg("--config")
        .arg(config)
        .start(config.parent().expect("config in a directory"))
}

/// The admin listener as a base URL for [`admin`].
fn admin_base(proxy: &S3tap) -> String {
    format!("http://{}", proxy.admin)
}

/// The built binary's subcommand: exit status, stdout, stderr.
async fn cli(args: &[&str], token: Option<&str>) -> (bool, String, String) {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_s3tap"));
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .args(args);
    if let Some(token) = token {
        command.env("S3TAP_ADMIN_TOKEN", token);
    }
    let output = tokio::time::timeout(WAIT, command.output())
        .await
        .expect("the CLI finishes")
        .expect("run the CLI");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// One admin request: status and body (JSON when it parses, else text).
async fn admin(
    base: &str,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (StatusCode, Value) {
    let mut request = Request::builder()
        .method(method)
        .uri(format!("{base}{path}"));
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let request = request
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let response = client.request(request).await.expect("admin request");
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, value)
}

async fn readyz(base: &str) -> (StatusCode, String) {
    let (status, body) = admin(base, Method::GET, "/readyz", None, "").await;
    (status, body.as_str().unwrap_or_default().to_owned())
}

/// The value of a metric line that starts with `series`.
async fn metric(base: &str, series: &str) -> Option<f64> {
    let (_, text) = admin(base, Method::GET, "/metrics", None, "").await;
    text.as_str()?
        .lines()
        .find(|line| line.starts_with(series))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
}

/// Polls `probe` until it answers `(true, _)` or `limit` passes; returns
/// whether it did and its last value.
async fn eventually<T, F, Fut>(limit: Duration, mut probe: F) -> (bool, T)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = (bool, T)>,
{
    let deadline = std::time::Instant::now() + limit;
    loop {
        let (done, value) = probe().await;
        if done || std::time::Instant::now() > deadline {
            return (done, value);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits for `/readyz` to answer `status`; returns whether it did and the
/// last body.
async fn readyz_becomes(base: &str, status: StatusCode) -> (bool, String) {
    eventually(WAIT, || {
        let base = base.to_owned();
        async move {
            let (got, body) = readyz(&base).await;
            (got == status, body)
        }
    })
    .await
}

// ---- the setup ------------------------------------------------------------

/// A receiver whose answer can be switched while it runs.
struct Hook {
    receiver: Receiver,
    status: Arc<Mutex<u16>>,
}

impl Hook {
    async fn start(status: u16) -> Hook {
        let shared = Arc::new(Mutex::new(status));
        let answer = shared.clone();
        let behaviour = Arc::new(move |_: &Seen| Reply::Status(*answer.lock().unwrap()));
        let receiver = Receiver::start_with_log(free(), behaviour, Arc::new(Log::default())).await;
        Hook {
            receiver,
            status: shared,
        }
    }

    fn answer(&self, status: u16) {
        *self.status.lock().unwrap() = status;
    }

    /// Event ids of requests answered `status`.
    fn ids_answered(&self, status: u16) -> BTreeSet<String> {
        self.receiver
            .log
            .records()
            .iter()
            .filter(|r| r.status == Some(status))
            .flat_map(|r| r.seen.ids.clone())
            .collect()
    }

    fn acked(&self) -> BTreeSet<String> {
        self.receiver.log.acked_ids().into_iter().collect()
    }
}

fn write_config(dir: &Path, upstream: &S3sFs, extra: &str) -> PathBuf {
    let text = format!(
        r#"
[upstream]
endpoint = "{endpoint}"
region = "us-east-1"
credentials = "fixed"
access_key_id = "{UPSTREAM_KEY}"
secret_access_key = "{UPSTREAM_SECRET}"

[[clients]]
access_key_id = "{CLIENT_KEY}"
secret_access_key = "{CLIENT_SECRET}"

[admin]
token = "{TOKEN}"
{extra}
"#,
        endpoint = upstream.endpoint(),
    );
    let text = text.replace("SPOOL_DIR", &dir.join("spool").display().to_string());
    let path = dir.join("s3tap.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn sdk_client(endpoint: &str) -> aws_sdk_s3::Client {
    use aws_sdk_s3::config::{retry::RetryConfig, BehaviorVersion, Credentials, Region};
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .credentials_provider(Credentials::new(
            CLIENT_KEY,
            CLIENT_SECRET,
            None,
            None,
            "notify-operations",
        ))
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .retry_config(RetryConfig::disabled())
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

async fn put_all(s3: &aws_sdk_s3::Client, proxy: &S3tap, keys: &[String]) {
    for key in keys {
        s3.put_object()
            .bucket(BUCKET)
            .key(key)
            .body(key.clone().into_bytes().into())
            .send()
            .await
            .unwrap_or_else(|e| panic!("PUT {key}: {e:?}\n{}", proxy.logs()));
    }
}

fn keys(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}{i:02}")).collect()
}

/// The ids the admin API lists for `sink`.
async fn listed(base: &str, sink: &str) -> BTreeSet<String> {
    let (status, answer) = admin(
        base,
        Method::GET,
        &format!("/admin/dead-letters?sink={sink}&limit=1000"),
        Some(TOKEN),
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer["dead_letters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Puts `keys` while the hook answers 400 and waits until each event is
/// in the dead letters; returns their ids, checked against what the hook
/// refused.
async fn fail_batch(
    hook: &Hook,
    proxy: &S3tap,
    s3: &aws_sdk_s3::Client,
    keys: &[String],
) -> BTreeSet<String> {
    hook.answer(400);
    let base = admin_base(proxy);
    let before = listed(&base, "hook").await;
    put_all(s3, proxy, keys).await;
    let want = keys.len();
    let (all_dead, now) = eventually(WAIT, || {
        let admin = base.clone();
        let before = before.clone();
        async move {
            let now: BTreeSet<String> = listed(&admin, "hook")
                .await
                .difference(&before)
                .cloned()
                .collect();
            (now.len() >= want, now)
        }
    })
    .await;
    assert!(all_dead, "dead letters: {now:?}\n{}", proxy.logs());
    let failed: BTreeSet<String> = hook.ids_answered(400).intersection(&now).cloned().collect();
    assert_eq!(now.len(), keys.len(), "one dead letter per upload");
    assert_eq!(failed, now, "listed == failed");
    now
}

async fn wait_delivered(hook: &Hook, ids: &BTreeSet<String>, proxy: &S3tap) {
    let delivered = wait_until(WAIT, || hook.acked().is_superset(ids)).await;
    assert!(
        delivered,
        "not delivered: {:?}\n{}",
        ids.difference(&hook.acked()).collect::<Vec<_>>(),
        proxy.logs()
    );
}

// ---- dead letters ---------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_redriven_by_cli_and_api_and_purged() {
    let Some(upstream) = S3sFs::start(&Creds::new(UPSTREAM_KEY, UPSTREAM_SECRET)).await else {
        return;
    };
    let hook = Hook::start(400).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &upstream,
        &format!(
            r#"
[notify]
spool_dir = "SPOOL_DIR"

[[sinks]]
type = "webhook"
name = "hook"
url = "{url}"
format = "b2"

[[rules]]
name = "created"
events = ["s3:ObjectCreated:*"]
status = "success"
sinks = ["hook"]
"#,
            url = hook.receiver.url()
        ),
    );
    let proxy = start(&config);
    let s3 = sdk_client(&proxy.endpoint);
    s3.create_bucket()
        .bucket(BUCKET)
        .send()
        .await
        .unwrap_or_else(|e| panic!("create bucket: {e:?}\n{}", proxy.logs()));
    let base = admin_base(&proxy);

    // Tokens: none, wrong, and the CLI with a wrong one.
    let (status, answer) = admin(&base, Method::GET, "/admin/dead-letters", None, "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer["error"], "missing_token");
    let (status, answer) =
        admin(&base, Method::GET, "/admin/dead-letters", Some("wrong"), "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer["error"], "invalid_token");
    let (ok, _, stderr) = cli(
        &["dead-letters", "list", "--admin", &base],
        Some("not-the-token"),
    )
    .await;
    assert!(!ok, "a wrong token must fail");
    assert!(
        stderr.contains("401") && stderr.contains("wrong"),
        "{stderr}"
    );
    assert!(!proxy.logs().contains(TOKEN), "the token is never logged");

    // Batch 1: fails with 400, redriven with the CLI once the sink is fixed.
    let first = fail_batch(&hook, &proxy, &s3, &keys("a/", 6)).await;
    let (status, one) = admin(
        &base,
        Method::GET,
        &format!("/admin/dead-letters/{}", first.iter().next().unwrap()),
        Some(TOKEN),
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["sink"], "hook");
    assert!(one["reason"].as_str().unwrap().contains("400"), "{one}");
    assert!(one["attempts"].as_u64().unwrap() >= 1);
    assert!(one["dead_since_ms"].as_u64().unwrap() >= one["spooled_at_ms"].as_u64().unwrap());
    assert!(one["event"]["key"].as_str().unwrap().starts_with("a/"));
    hook.answer(200);
    let (ok, stdout, stderr) = cli(
        &[
            "dead-letters",
            "redrive",
            "--sink",
            "hook",
            "--admin",
            &base,
            "--json",
        ],
        Some(TOKEN),
    )
    .await;
    assert!(ok, "{stderr}");
    let answer: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(answer["redriven"], first.len(), "redriven == listed");
    wait_delivered(&hook, &first, &proxy).await;
    assert!(listed(&base, "hook").await.is_empty());

    // Batch 2: the admin API, selectors in a JSON body.
    let second = fail_batch(&hook, &proxy, &s3, &keys("b/", 4)).await;
    assert!(second.is_disjoint(&first));
    hook.answer(200);
    let (status, answer) = admin(
        &base,
        Method::POST,
        "/admin/dead-letters/redrive",
        Some(TOKEN),
        r#"{"sink":"hook","older_than":"0s"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["redriven"], second.len());
    assert_eq!(answer["sinks"]["hook"], second.len());
    wait_delivered(&hook, &second, &proxy).await;

    // Batch 3: listed by the CLI, then purged.
    let third = fail_batch(&hook, &proxy, &s3, &keys("c/", 3)).await;
    let (ok, table, stderr) = cli(&["dead-letters", "list", "--admin", &base], Some(TOKEN)).await;
    assert!(ok, "{stderr}");
    assert!(
        third.iter().all(|id| table.contains(id.as_str())),
        "{table}"
    );
    assert!(table.contains("3 dead letter(s)"), "{table}");
    let shown = third.iter().next().unwrap();
    let (ok, text, stderr) = cli(
        &["dead-letters", "show", shown, "--admin", &base],
        Some(TOKEN),
    )
    .await;
    assert!(ok, "{stderr}");
    assert!(
        text.contains(shown.as_str()) && text.contains("400") && text.contains("\"key\": \"c/"),
        "{text}"
    );
    // One purged by id through the API, the rest by the CLI.
    let (status, answer) = admin(
        &base,
        Method::DELETE,
        &format!("/admin/dead-letters/{shown}"),
        Some(TOKEN),
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["purged"], 1);
    let (ok, _, stderr) = cli(&["dead-letters", "purge", "--admin", &base], Some(TOKEN)).await;
    assert!(
        !ok && stderr.contains("--all"),
        "purge without a selector: {stderr}"
    );
    let (ok, stdout, stderr) = cli(
        &["dead-letters", "purge", "--all", "--json", "--admin", &base],
        Some(TOKEN),
    )
    .await;
    assert!(ok, "{stderr}");
    let answer: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(answer["purged"], third.len() - 1);
    assert!(listed(&base, "hook").await.is_empty(), "purge empties");
    let (status, _) = admin(
        &base,
        Method::GET,
        &format!("/admin/dead-letters/{}", third.iter().next().unwrap()),
        Some(TOKEN),
        "",
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Delivered exactly what was redriven: each id once.
    let records = hook.receiver.log.acked.lock().unwrap().clone();
    for id in first.iter().chain(&second) {
        assert_eq!(records.get(id), Some(&1), "{id} delivered once");
    }
    assert!(third.iter().all(|id| !records.contains_key(id)));
    let redriven = metric(&base, "s3tap_sink_redriven_total{sink=\"hook\"}").await;
    assert_eq!(redriven, Some((first.len() + second.len()) as f64));
}

#[tokio::test]
async fn without_a_token_the_admin_api_is_closed() {
    use clap::Parser;
    use s3tap::proxy::{Args, Config, Proxy};
    let dir = tempfile::tempdir().unwrap();
    let args = Args::parse_from([
        "s3tap",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--data-dir",
        dir.path().join("data").to_str().unwrap(),
    ]);
    let config = Config::load(&args, |_| None).unwrap();
    let proxy = Proxy::bind(config).await.unwrap();
    let base = format!("http://{}", proxy.admin_addr());
    tokio::spawn(proxy.serve(std::future::pending()));
    for (method, path) in [
        (Method::GET, "/admin/dead-letters"),
        (Method::POST, "/admin/dead-letters/redrive"),
        (Method::POST, "/admin/sinks/stdout/enable"),
    ] {
        let (status, answer) = admin(&base, method, path, Some("anything"), "").await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
        assert_eq!(answer["error"], "admin_disabled");
        assert!(answer["message"]
            .as_str()
            .unwrap()
            .contains("[admin] token"));
    }
}

// ---- readiness --------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_fails_while_a_rule_has_no_sink_or_the_spool_fills() {
    let Some(upstream) = S3sFs::start(&Creds::new(UPSTREAM_KEY, UPSTREAM_SECRET)).await else {
        return;
    };
    let gone = Hook::start(410).await;
    let down = format!("http://{}/hook", closed_port());
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &upstream,
        &format!(
            r#"
[notify]
spool_dir = "SPOOL_DIR"
spool_max_events = 4
readyz_max_spool_fill = 0.5

[[sinks]]
type = "webhook"
name = "gone"
url = "{gone}"
format = "b2"

[[sinks]]
type = "webhook"
name = "down"
url = "{down}"
format = "b2"

[[rules]]
name = "to-gone"
events = ["s3:ObjectCreated:*"]
prefix = "g/"
sinks = ["gone"]

[[rules]]
name = "to-down"
events = ["s3:ObjectCreated:*"]
prefix = "d/"
sinks = ["down"]
"#,
            gone = gone.receiver.url()
        ),
    );
    let proxy = start(&config);
    let base = admin_base(&proxy);
    let s3 = sdk_client(&proxy.endpoint);
    s3.create_bucket()
        .bucket(BUCKET)
        .send()
        .await
        .unwrap_or_else(|e| panic!("create bucket: {e:?}\n{}", proxy.logs()));
    assert_eq!(readyz(&base).await.0, StatusCode::OK);

    // A 410 disables the only sink of rule "to-gone".
    put_all(&s3, &proxy, &keys("g/", 1)).await;
    let (unready, last) = readyz_becomes(&base, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(unready, "readyz stayed ready: {last}\n{}", proxy.logs());
    assert!(
        last.contains("\"to-gone\"") && last.contains("gone"),
        "{last}"
    );
    let parked = gone.ids_answered(410);
    assert_eq!(parked.len(), 1);

    // Fixed and enabled without a restart: ready again, the parked event
    // is delivered.
    gone.answer(200);
    let (ok, stdout, stderr) =
        cli(&["sinks", "enable", "gone", "--admin", &base], Some(TOKEN)).await;
    assert!(ok, "{stderr}");
    assert!(stdout.contains("sink gone enabled"), "{stdout}");
    let (ready, last) = readyz_becomes(&base, StatusCode::OK).await;
    assert!(ready, "{last}");
    assert!(
        wait_until(WAIT, || gone.acked().is_superset(&parked)).await,
        "the parked event was not delivered after enable\n{}",
        proxy.logs()
    );
    let (ok, _, stderr) = cli(&["sinks", "enable", "nope", "--admin", &base], Some(TOKEN)).await;
    assert!(!ok && stderr.contains("no sink named"), "{stderr}");

    // A sink that is down: its events wait in the spool (limit 4, fill
    // above 0.5 makes the proxy unready) and its oldest one ages.
    put_all(&s3, &proxy, &keys("d/", 3)).await;
    let (unready, last) = readyz_becomes(&base, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(
        unready && last.contains("spool"),
        "{last}\n{}",
        proxy.logs()
    );
    let series = "s3tap_oldest_undelivered_seconds{sink=\"down\"}";
    let gauge = || {
        let base = base.clone();
        async move { metric(&base, series).await.unwrap_or(0.0) }
    };
    let (aged, first) = eventually(WAIT, || {
        let value = gauge();
        async move {
            let value = value.await;
            (value >= 1.0, value)
        }
    })
    .await;
    assert!(
        aged,
        "the oldest event of the down sink does not age: {first}"
    );
    let (moved, second) = eventually(WAIT, || {
        let value = gauge();
        async move {
            let value = value.await;
            (value > first, value)
        }
    })
    .await;
    assert!(moved, "the gauge does not move: {first} then {second}");
    assert_eq!(
        metric(&base, "s3tap_oldest_undelivered_seconds{sink=\"gone\"}").await,
        Some(0.0),
        "nothing waits for the enabled sink"
    );
}

// ---- inbound replay semantics ---------------------------------------------

/// A receiver verifying with `layer`; records whether each call it got was
/// marked as a redelivery.
async fn verifying_server(
    layer: s3tap::webhook::VerifyWebhookLayer,
) -> (support::TestServer, Arc<Mutex<Vec<bool>>>) {
    use tower::Layer;
    let calls = Arc::new(Mutex::new(Vec::new()));
    let seen = calls.clone();
    let inner = tower::service_fn(move |request: Request<Full<Bytes>>| {
        let seen = seen.clone();
        async move {
            let redelivery = request
                .extensions()
                .get::<s3tap::webhook::Redelivery>()
                .is_some();
            seen.lock().unwrap().push(redelivery);
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
        }
    });
    (support::TestServer::spawn(layer.layer(inner)).await, calls)
}

fn events(n: usize) -> Vec<s3tap::notify::Event> {
    (0..n)
        .map(|i| {
            let mut event = s3tap::notify::Event::new(
                s3tap::notify::S3Operation::PutObject,
                "PUT",
                200,
                format!("http://s3.test/b/k{i}"),
            );
            event.key = Some(format!("k{i}"));
            event
        })
        .collect()
}

#[tokio::test]
async fn a_b2_resend_reaches_the_handler_as_a_redelivery_and_a_standard_webhooks_replay_is_refused()
{
    use s3tap::sink::{Sink, SinkError, WebhookSink};
    use s3tap::webhook::VerifyWebhookLayer;
    const B2_SECRET: &str = "b2-signing-secret-for-ops-tests-0123";
    const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    let (server, calls) =
        verifying_server(VerifyWebhookLayer::b2(B2_SECRET).replay_cache(100)).await;
    let sink = WebhookSink::builder(format!("{}/b2", server.url()))
        .sign_b2(B2_SECRET)
        .build()
        .unwrap();
    let batch = events(2);
    sink.deliver(&batch).await.expect("first delivery");
    sink.deliver(&batch)
        .await
        .expect("the identical resend is accepted, not 401");
    sink.deliver(&events(1)).await.expect("another message");
    assert_eq!(*calls.lock().unwrap(), [false, true, false]);

    let (server, calls) = verifying_server(
        VerifyWebhookLayer::standard_webhooks(WHSEC)
            .unwrap()
            .replay_cache(100),
    )
    .await;
    let sink = WebhookSink::builder(format!("{}/std", server.url()))
        .sign_standard_webhooks(WHSEC)
        .build()
        .unwrap();
    let batch = events(1);
    sink.deliver(&batch).await.expect("first delivery");
    let error = sink.deliver(&batch).await.unwrap_err();
    assert!(
        matches!(error, SinkError::Permanent { ref message } if message.contains("401")),
        "{error}"
    );
    assert_eq!(*calls.lock().unwrap(), [false]);
}

// ---- configuration ----------------------------------------------------------

#[test]
fn the_new_keys_load_and_misspelt_ones_are_rejected() {
    use clap::Parser;
    use s3tap::proxy::{Args, Config};
    let dir = tempfile::tempdir().unwrap();
    let load = |text: &str, env: Option<&str>| {
        let path = dir.path().join("s3tap.toml");
        std::fs::write(&path, text).unwrap();
        let args = Args::parse_from(["s3tap", "--config", path.to_str().unwrap()]);
        let env = env.map(str::to_owned);
        Config::load(&args, move |name| match name {
            "S3TAP_ADMIN_TOKEN" => env.clone(),
            _ => None,
        })
    };
    let good = "[admin]\ntoken = \"t0ken\"\n[notify]\nreadyz_max_spool_fill = 0.9\nspool_max_events = 100\nspool_max_bytes = 1048576\n";
    let config = load(good, None).unwrap();
    assert_eq!(config.admin_token.as_ref().unwrap().expose(), "t0ken");
    assert_eq!(config.notify.readyz_max_spool_fill(), Some(0.9));
    assert!(
        !format!("{config:?}").contains("t0ken"),
        "the token is redacted"
    );
    let from_env = load("", Some("env-token")).unwrap();
    assert_eq!(from_env.admin_token.unwrap().expose(), "env-token");
    assert!(load("", None).unwrap().admin_token.is_none());

    for (misspelt, key) in [
        ("[admin]\ntokn = \"x\"\n", "tokn"),
        (
            "[notify]\nreadyz_max_spool_fil = 0.9\n",
            "readyz_max_spool_fil",
        ),
        ("[notify]\nspool_max_event = 4\n", "spool_max_event"),
        ("[notify]\nspool_max_byte = 4\n", "spool_max_byte"),
    ] {
        let error = load(misspelt, None).unwrap_err().to_string();
        assert!(
            error.contains(key) && error.contains("unknown field"),
            "{error}"
        );
    }
    for bad in ["0", "1.5", "-0.1"] {
        let error = load(&format!("[notify]\nreadyz_max_spool_fill = {bad}\n"), None)
            .unwrap_err()
            .to_string();
        assert!(error.contains("readyz_max_spool_fill"), "{error}");
    }
    let error = load("[notify]\nspool_max_events = 0\n", None)
        .unwrap_err()
        .to_string();
    assert!(error.contains("spool_max_events"), "{error}");

    // The README's TOML example names every new key and loads as written.
    let example = support::readme_toml_example(|_| true);
    for key in [
        "token = ",
        "spool_max_events = ",
        "spool_max_bytes = ",
        "readyz_max_spool_fill = ",
    ] {
        assert!(example.contains(key), "README's TOML example lacks {key}");
    }
    let config = load(&example, None).unwrap_or_else(|e| panic!("README example: {e}"));
    assert!(config.admin_token.is_some());
    assert_eq!(config.notify.readyz_max_spool_fill(), Some(0.9));
}
