//! The B2 native API proxy (`[b2_native]`) driven by Backblaze's own SDK
//! (`b2sdk`) and CLI (`b2`), with the SDK's own API simulator
//! (`RawSimulator`, behind `tests/clients/b2_simulator_server.py`) as the
//! upstream: no open-source B2 server exists. Answers' URLs point at the
//! proxy, uploads are SHA-1-checked while they stream, events arrive with
//! B2's types, and no token or key reaches the log at `RUST_LOG=trace`.
#![cfg(feature = "proxy")]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::binary::{S3tap, S3tapCommand};
use support::Peers;

/// The simulator's HTTP front, killed on drop.
struct Simulator {
    child: Child,
    port: u16,
    key_id: String,
    key: String,
}

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

fn start_simulator(python: &Path, dir: &Path) -> Simulator {
    let port_file = dir.join("simulator.json");
    let mut child = Command::new(python)
        .arg(clients_dir().join("b2_simulator_server.py"))
        .arg(&port_file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("simulator.log")).unwrap())
        .spawn()
        .expect("start the b2sdk simulator");
    let started = Instant::now();
    let text = loop {
        if let Ok(text) = std::fs::read_to_string(&port_file) {
            break text;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "the simulator exited ({status}): {}",
                std::fs::read_to_string(dir.join("simulator.log")).unwrap_or_default()
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "simulator not up"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let info: Value = serde_json::from_str(&text).unwrap();
    Simulator {
        child,
        port: info["port"].as_u64().unwrap() as u16,
        key_id: info["key_id"].as_str().unwrap().to_owned(),
        key: info["key"].as_str().unwrap().to_owned(),
    }
}

fn start_proxy(dir: &Path, simulator: &Simulator, extra: &str) -> S3tap {
    let toml = format!(
        r#"
[b2_native]
api_url = "http://127.0.0.1:{port}"
{extra}

[notify]
spool_dir = "{spool}"

[[sinks]]
name = "events"
type = "jsonl"
path = "{events}"
"#,
        port = simulator.port,
        spool = dir.join("spool").display(),
        events = dir.join("events.jsonl").display(),
    );
    S3tapCommand::new()
        .config(dir, &toml)
        .env("RUST_LOG", "trace")
        .start(dir)
}

/// GET on the simulator's own statistics (uploads stored and aborted,
/// files per bucket): what the upstream really holds.
fn simulator_stats(port: u16) -> Value {
    let output = Command::new("curl")
        .args(["-sf", &format!("http://127.0.0.1:{port}/_sim/stats")])
        .output()
        .expect("run curl");
    assert!(output.status.success(), "stats: {output:?}");
    serde_json::from_slice(&output.stdout).unwrap()
}

fn events(dir: &Path, wanted: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let events: Vec<Value> = std::fs::read_to_string(dir.join("events.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if wanted(&events) || started.elapsed() > Duration::from_secs(20) {
            return events;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn find<'a>(events: &'a [Value], b2_type: &str, key: &str) -> &'a Value {
    events
        .iter()
        .find(|e| e["b2_event_type"] == b2_type && e["key"] == key)
        .unwrap_or_else(|| {
            panic!(
                "no {b2_type} event for {key}; events:\n{}",
                serde_json::to_string_pretty(events).unwrap()
            )
        })
}

#[test]
fn b2sdk_through_the_proxy_against_the_sdks_simulator() {
    let Some(peers) = Peers::get() else { return };
    let dir = tempfile::tempdir().unwrap();
    let simulator = start_simulator(peers.python(), dir.path());
    let proxy = start_proxy(dir.path(), &simulator, "");
    let endpoint = proxy.endpoint.clone();

    let output = Command::new(peers.python())
        .arg(clients_dir().join("b2sdk_native.py"))
        .args([&endpoint, &simulator.key_id, &simulator.key])
        .arg(dir.path())
        .output()
        .expect("run b2sdk");
    assert!(
        output.status.success(),
        "b2sdk failed:\n{}\nproxy log tail:\n{}",
        String::from_utf8_lossy(&output.stderr),
        tail(&proxy.logs())
    );
    let out: Value = serde_json::from_slice(&output.stdout).unwrap();

    // Every URL the SDK was given points at the proxy, in v4 (the SDK's
    // v3 interface), v3 (its v2 interface) and v2 (flat) answers alike, and
    // the SDK sent every request there.
    for field in ["api_url", "download_url", "s3_api_url"] {
        assert_eq!(out[field], endpoint.as_str(), "v4 {field}");
        assert_eq!(out["v3"][field], endpoint.as_str(), "v3 {field}");
    }
    for field in ["apiUrl", "downloadUrl", "s3ApiUrl"] {
        assert_eq!(out["v2"][field], endpoint.as_str(), "v2 {field}");
    }
    assert_eq!(out["v2_list_buckets_status"], 200);
    let upload_url = out["upload_url"].as_str().unwrap();
    assert!(
        upload_url.starts_with(&format!("{endpoint}/b2api/s3tap/upload/")),
        "{upload_url}"
    );
    let seen = out["seen"].as_array().unwrap();
    assert!(seen.len() > 15, "{seen:?}");
    for url in seen {
        assert!(
            url.as_str().unwrap().starts_with(&endpoint),
            "b2sdk went around the proxy: {url}"
        );
    }

    // Byte-exact round trips: a small upload (SHA-1 in the header), a
    // stream (hex_digits_at_end), a large file in parts; downloads by name
    // and by id.
    assert_eq!(out["by_name_ok"], true);
    assert_eq!(out["by_id_ok"], true);
    assert_eq!(out["v3"]["roundtrip"], true);
    assert_eq!(out["streamed"]["size"], 3000);
    assert_eq!(out["large"]["size"], 300 * 1024);
    assert_eq!(out["hide"]["action"], "hide");
    assert_eq!(
        out["listing"],
        serde_json::json!(["large.bin", "small.bin"])
    );

    // Corrupted uploads: refused by the proxy (its own message, not the
    // simulator's), the upstream saw both bodies aborted and stores nothing.
    for refused in out["refused"].as_array().unwrap() {
        assert_eq!(refused["status"], 400, "{refused}");
        assert_eq!(refused["body"]["status"], 400, "{refused}");
        assert_eq!(refused["body"]["code"], "bad_request", "{refused}");
        let message = refused["body"]["message"].as_str().unwrap();
        assert!(
            message.contains("does not match X-Bz-Content-Sha1"),
            "{refused}"
        );
    }
    let stats = simulator_stats(simulator.port);
    assert_eq!(stats["uploads_aborted"], 2, "{stats}");
    let stored = stats["files"]["photos"].as_array().unwrap();
    assert!(
        !stored
            .iter()
            .any(|f| f.as_str().unwrap().starts_with("bad-")),
        "{stats}"
    );
    assert_eq!(
        out["listing_after_refused"],
        serde_json::json!(["large.bin", "small.bin"])
    );
    // do_not_verify: passed on unchecked, header and body as sent.
    let unverified = &out["unverified"];
    assert_eq!(unverified["status"], 200, "{unverified}");
    assert_eq!(unverified["roundtrip"], true, "{unverified}");
    let sha1 = unverified["sha1"].as_str().unwrap();
    assert_eq!(
        unverified["content_sha1"],
        format!("unverified:{sha1}"),
        "{unverified}"
    );
    assert_eq!(stats["uploads_unverified"], 1, "{stats}");

    // Events, in the S3 side's model and sink, with B2's types.
    let events = events(dir.path(), |events| {
        events
            .iter()
            .any(|e| e["key"] == "v3.txt" && e["operation"] == "GetObject")
    });
    let small = find(&events, "b2:ObjectCreated:Upload", "small.bin");
    assert_eq!(small["bucket"], "photos");
    assert_eq!(small["size"], 1000);
    assert_eq!(small["version_id"], out["small"]["id"]);
    assert_eq!(small["access_key_id"], simulator.key_id.as_str());
    assert_eq!(small["checksum"]["algorithm"], "SHA1");
    assert_eq!(
        find(&events, "b2:ObjectCreated:Upload", "streamed.bin")["size"],
        3000
    );
    let unverified_event = find(&events, "b2:ObjectCreated:Upload", "unverified.bin");
    assert_eq!(unverified_event["size"], 100_000);
    assert_eq!(
        unverified_event["checksum"]["value"],
        base64_of(hex::decode(sha1).unwrap()),
        "the event carries B2's unverified SHA-1: {unverified_event}"
    );
    let large = find(&events, "b2:ObjectCreated:MultipartUpload", "large.bin");
    assert_eq!(large["size"], 300 * 1024);
    assert_eq!(large["operation"], "CompleteMultipartUpload");
    find(&events, "b2:ObjectCreated:Copy", "copy.bin");
    let hide = find(&events, "b2:HideMarkerCreated:Hide", "streamed.bin");
    assert_eq!(hide["delete_marker"], true);
    let delete = find(&events, "b2:ObjectDeleted:Delete", "copy.bin");
    assert_eq!(delete["version_id"], out["copy"]["id"]);
    let by_name = events
        .iter()
        .find(|e| e["operation"] == "GetObject" && e["key"] == "small.bin")
        .expect("a download-by-name event");
    assert_eq!(by_name["bucket"], "photos");
    assert_eq!(by_name["size"], 1000);
    let by_id = events
        .iter()
        .find(|e| e["operation"] == "GetObject" && e["key"] == "large.bin")
        .expect("a download-by-id event");
    assert_eq!(by_id["version_id"], out["large"]["id"]);
    assert!(
        !events
            .iter()
            .any(|e| e["key"].as_str().is_some_and(|k| k.starts_with("bad-"))
                && e["status"] == 200),
        "a refused upload made a success event"
    );

    // No token, key or Basic credentials in the trace log or the events.
    let basic = base64_of(format!("{}:{}", simulator.key_id, simulator.key));
    let logs = proxy.logs();
    let recorded = std::fs::read_to_string(dir.path().join("events.jsonl")).unwrap();
    for (what, text) in [("log", &logs), ("events", &recorded)] {
        for secret in [simulator.key.as_str(), basic.as_str(), "auth_token_"] {
            assert!(!text.contains(secret), "{secret:?} in the {what}");
        }
    }
    assert!(
        logs.contains("b2_"),
        "the trace log saw the native requests"
    );
}

#[test]
fn the_b2_cli_through_the_proxy() {
    let Some(peers) = Peers::get() else { return };
    let dir = tempfile::tempdir().unwrap();
    let simulator = start_simulator(peers.python(), dir.path());
    let proxy = start_proxy(dir.path(), &simulator, "");
    let b2 = peers.python().with_file_name("b2");
    assert!(
        b2.exists(),
        "the b2 CLI is not installed next to {}",
        peers.python().display()
    );
    let run = |args: &[&str]| {
        let output = Command::new(&b2)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", dir.path())
            .env("B2_ENVIRONMENT", &proxy.endpoint)
            .env("B2_APPLICATION_KEY_ID", &simulator.key_id)
            .env("B2_APPLICATION_KEY", &simulator.key)
            .env("B2_ACCOUNT_INFO", dir.path().join("account.sqlite"))
            .current_dir(dir.path())
            .output()
            .expect("run b2");
        assert!(
            output.status.success(),
            "b2 {args:?}:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let authorized = run(&["account", "authorize"]);
    assert!(
        authorized.contains(&format!("\"s3endpoint\": \"{}\"", proxy.endpoint)),
        "{authorized}"
    );
    run(&["bucket", "create", "clibucket", "allPrivate"]);
    let data = support::random_bytes(70_000, 7);
    std::fs::write(dir.path().join("in.bin"), &data).unwrap();
    run(&[
        "file",
        "upload",
        "--no-progress",
        "clibucket",
        "in.bin",
        "dir/in.bin",
    ]);
    let listed = run(&["ls", "b2://clibucket/dir/"]);
    assert!(listed.contains("dir/in.bin"), "{listed}");
    run(&[
        "file",
        "download",
        "--no-progress",
        "b2://clibucket/dir/in.bin",
        "out.bin",
    ]);
    assert_eq!(std::fs::read(dir.path().join("out.bin")).unwrap(), data);
    let events = events(dir.path(), |events| {
        events.iter().any(|e| e["operation"] == "GetObject")
    });
    let upload = find(&events, "b2:ObjectCreated:Upload", "dir/in.bin");
    assert_eq!(upload["bucket"], "clibucket");
    assert_eq!(upload["size"], 70_000);
}

fn base64_of(data: impl AsRef<[u8]>) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

#[test]
fn an_s3_bucket_named_file_stays_s3() {
    let Some(peers) = Peers::get() else { return };
    let dir = tempfile::tempdir().unwrap();
    let simulator = start_simulator(peers.python(), dir.path());
    let proxy = start_proxy(dir.path(), &simulator, "");
    let script = r#"
import sys
import boto3
from botocore.config import Config
endpoint, key_id, secret = sys.argv[1:4]
s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key_id,
                  aws_secret_access_key=secret, region_name="us-east-1",
                  config=Config(s3={"addressing_style": "path"}))
for bucket, key in [("file", "photos/a.txt"), ("b2api", "v4/b2_list_buckets")]:
    s3.create_bucket(Bucket=bucket)
    body = ("s3 object in " + bucket).encode()
    s3.put_object(Bucket=bucket, Key=key, Body=body)
    got = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert got == body, got
print("ok")
"#;
    let output = Command::new(peers.python())
        .args(["-c", script, &proxy.endpoint])
        .arg(proxy.banner("access key id"))
        .arg(proxy.banner("secret access key"))
        .output()
        .expect("run boto3");
    assert!(
        output.status.success(),
        "boto3 through a bucket named file: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        tail(&proxy.logs())
    );
    // The S3 side answered (and notified), not the native one.
    let events = events(dir.path(), |events| {
        events
            .iter()
            .filter(|e| e["event_name"] == "s3:ObjectCreated:Put")
            .count()
            == 2
    });
    for (bucket, key) in [("file", "photos/a.txt"), ("b2api", "v4/b2_list_buckets")] {
        assert!(
            events
                .iter()
                .any(|e| e["event_name"] == "s3:ObjectCreated:Put"
                    && e["bucket"] == bucket
                    && e["key"] == key),
            "no S3 put event for {bucket}/{key}: {events:?}"
        );
    }
    let stats = simulator_stats(simulator.port);
    assert_eq!(stats["requests"], 1, "only this stats request: {stats}");
}

#[test]
fn a_restarted_proxy_makes_b2sdk_authorize_again() {
    let Some(peers) = Peers::get() else { return };
    let dir = tempfile::tempdir().unwrap();
    let simulator = start_simulator(peers.python(), dir.path());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let start = |name: &str| {
        let sub = dir.path().join(name);
        std::fs::create_dir_all(&sub).unwrap();
        let toml = format!(
            "[b2_native]\napi_url = \"http://127.0.0.1:{}\"\n",
            simulator.port
        );
        S3tapCommand::new()
            .config(&sub, &toml)
            .args(["--listen", &listen])
            .start(&sub)
    };
    let first = start("first");
    let script = r#"
import io, sys
from b2sdk.v3 import B2Api, InMemoryAccountInfo
proxy, key_id, key = sys.argv[1:4]
api = B2Api(InMemoryAccountInfo())
api.authorize_account(realm=proxy, application_key_id=key_id, application_key=key)
bucket = api.create_bucket("restart", "allPrivate")
bucket.upload_bytes(b"before", "before.txt")
print("READY", flush=True)
sys.stdin.readline()
bucket.upload_bytes(b"after", "after.txt")
got = io.BytesIO()
bucket.download_file_by_name("before.txt").save(got)
assert got.getvalue() == b"before"
print(",".join(sorted(f.file_name for f, _ in bucket.ls(latest_only=True))), flush=True)
"#;
    let mut client = Command::new(peers.python())
        .args([
            "-c",
            script,
            &first.endpoint,
            &simulator.key_id,
            &simulator.key,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run b2sdk");
    let mut stdout = std::io::BufReader::new(client.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    assert_eq!(line.trim(), "READY", "{}", tail(&first.logs()));
    drop(first);
    // Same address, empty maps: the SDK's token and upload URL are unknown.
    let second = start("second");
    std::io::Write::write_all(client.stdin.as_mut().unwrap(), b"go\n").unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let status = client.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(client.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "{stderr}\n{}", tail(&second.logs()));
    assert_eq!(rest.trim(), "after.txt,before.txt");
    let logs = second.logs();
    assert!(
        logs.contains("path=/b2api/v4/b2_authorize_account"),
        "the SDK authorized again: {}",
        tail(&logs)
    );
    assert!(logs.contains("status=401"), "{}", tail(&logs));
}

#[test]
fn bad_b2_native_settings_stop_the_start() {
    for (toml, needle) in [
        (
            "[b2_native]\napi_url = \"http://127.0.0.1:1\"\nrealm = \"x\"\n",
            "unknown field",
        ),
        ("[b2_native]\napi_url = \"ftp://example.com\"\n", "api_url"),
        ("[b2_native]\npublic_url = \"http://p\"\n", "api_url"),
        (
            "[b2_native]\napi_url = \"http://127.0.0.1:1\"\nmax_tokens = 0\n",
            "max_tokens",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (code, stderr) = S3tapCommand::new()
            .config(dir.path(), toml)
            .refused(dir.path());
        assert_eq!(code, Some(2), "{toml}: {stderr}");
        assert!(stderr.contains(needle), "{toml}: {stderr}");
    }
}

#[test]
fn an_unreachable_upstream_is_a_b2_json_error() {
    let Some(_peers) = Peers::get() else { return };
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let toml = format!("[b2_native]\napi_url = \"http://127.0.0.1:{closed}\"\n");
    let proxy = S3tapCommand::new()
        .config(dir.path(), &toml)
        .start(dir.path());
    let output = Command::new("curl")
        .args([
            "-s",
            "-X",
            "POST",
            "-H",
            "Authorization: Basic a2V5OnNlY3JldA==",
            "-w",
            "\n%{http_code} %{content_type}",
            &format!("{}/b2api/v4/b2_authorize_account", proxy.endpoint),
        ])
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap();
    assert!(status.starts_with("502 application/json"), "{text}");
    let json: Value = serde_json::from_str(body).unwrap();
    assert_eq!(json["status"], 502, "{json}");
    assert_eq!(json["code"], "bad_gateway", "{json}");
    assert!(
        json["message"]
            .as_str()
            .unwrap()
            .contains(&format!("127.0.0.1:{closed}")),
        "{json}"
    );
}

/// The README's `[b2_native]` example names every key and loads as written,
/// and with its commented keys turned on.
#[test]
fn the_readme_b2_native_example_loads() {
    use clap::Parser;
    let example = support::readme_toml_example(|block| block.contains("[b2_native]"));
    for key in [
        "api_url",
        "public_url",
        "download_url",
        "max_tokens",
        "max_upload_urls",
    ] {
        assert!(
            example.contains(&format!("{key} =")),
            "{key} is not in the README example"
        );
    }
    let uncommented: String = example
        .lines()
        .map(|line| line.strip_prefix("# ").unwrap_or(line))
        .collect::<Vec<_>>()
        .join("\n");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s3tap.toml");
    let args = s3tap::proxy::Args::parse_from(["s3tap", "--config", path.to_str().unwrap()]);
    for (toml, all) in [(&example, false), (&uncommented, true)] {
        std::fs::write(&path, toml).unwrap();
        let config = s3tap::proxy::Config::load(&args, |_| None)
            .unwrap_or_else(|e| panic!("the README example: {e}\n{toml}"));
        let b2 = config.b2_native.expect("[b2_native]");
        assert_eq!(b2.api_url, "https://api.backblazeb2.com");
        assert_eq!(b2.public_url.is_some(), all);
        assert_eq!(b2.download_url.is_some(), all);
        assert_eq!(b2.max_tokens, 10_000);
    }
}
