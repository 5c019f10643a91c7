//! Runs the webhook example binaries and talks HTTP to them: signed requests
//! do their job, unsigned or tampered ones get 401 and change nothing.
//!
//! The binaries are the ones a plain `cargo test` builds next to this test's
//! own binary. To run this file alone, build them first:
//! `cargo build --examples && cargo test --test example_webhook_receivers` (otherwise
//! an older build of the examples may be the one tested).
#![cfg(feature = "webhook")]

mod webhook_support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use webhook_support::{b2_header, frameio_header};

const B2_SECRET: &str = "b2-example-secret-0123456789abcd";
const FRAMEIO_SECRET: &str = "frameio-example-secret";

/// A running example, killed when dropped.
struct Example {
    child: Child,
    base_url: String,
    stdout: std_mpsc::Receiver<String>,
}

impl Example {
    fn start(name: &str, env: &[(&str, &str)]) -> Self {
        let binary = example_binary(name);
        let mut child = Command::new(&binary)
            .envs(env.iter().copied())
            .env("PORT", "0")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", binary.display()));
        let (lines, stdout) = std_mpsc::channel();
        let reader = BufReader::new(child.stdout.take().expect("piped"));
        std::thread::spawn(move || {
            for line in reader.lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let ready = stdout
            .recv_timeout(Duration::from_secs(30))
            .expect("the example prints its address");
        let base_url = ready
            .strip_prefix("listening on ")
            .expect("a `listening on` line")
            .to_owned();
        Self {
            child,
            base_url,
            stdout,
        }
    }

    async fn post(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> (StatusCode, Bytes) {
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let mut request = Request::post(format!("{}{path}", self.base_url))
            .header("content-type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = client
            .request(request.body(Full::new(body.into())).unwrap())
            .await
            .expect("the example answers");
        let status = response.status();
        (
            status,
            response.into_body().collect().await.unwrap().to_bytes(),
        )
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn example_binary(name: &str) -> PathBuf {
    // target/<profile>/deps/<this test> -> target/<profile>/examples/<name>
    let test_binary = std::env::current_exe().expect("the test binary's path");
    let profile_dir = test_binary
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let binary = profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        binary.exists(),
        "{} is not built; run plain `cargo test`, or `cargo build --examples` first",
        binary.display()
    );
    binary
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn b2_event(event_id: &str, object_name: &str, size: u64) -> Value {
    json!({
        "accountId": "e85c6a500333",
        "bucketId": "aea8c5bc362ae55070130333",
        "bucketName": "photos-archive",
        "eventId": event_id,
        "eventTimestamp": 1_700_000_000_123u64,
        "eventType": "b2:ObjectCreated:Upload",
        "eventVersion": 1,
        "matchedRuleName": "uploads",
        "objectName": object_name,
        "objectSize": size,
        "objectVersionId": format!("4_z_version_of_{event_id}"),
    })
}

fn csv_rows(path: &Path) -> Vec<Vec<String>> {
    let Ok(mut reader) = csv::ReaderBuilder::new().has_headers(false).from_path(path) else {
        return Vec::new();
    };
    reader
        .records()
        .map(|record| record.unwrap().iter().map(str::to_owned).collect())
        .collect()
}

/// Waits until the CSV has `rows` lines (header included).
fn wait_for_rows(path: &Path, rows: usize) -> Vec<Vec<String>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = csv_rows(path);
        if found.len() >= rows || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn b2_receiver_writes_one_row_per_new_event_and_ignores_forgeries() {
    let dir = tempfile::tempdir().unwrap();
    let csv_path = dir.path().join("events.csv");
    let example = Example::start(
        "b2_webhook_receiver",
        &[
            ("B2_WEBHOOK_SECRET", B2_SECRET),
            ("CSV_PATH", csv_path.to_str().unwrap()),
        ],
    );
    let example = &example;
    let post_signed = |body: String| {
        let signature = b2_header(B2_SECRET, body.as_bytes());
        async move {
            example
                .post(
                    "/b2",
                    &[("x-bz-event-notification-signature", &signature)],
                    body,
                )
                .await
                .0
        }
    };

    // A name with a comma and quotes checks the CSV quoting too.
    let first =
        json!({ "events": [b2_event("evt-1", "photos/2023, \"best\".jpg", 123_456)] }).to_string();
    assert_eq!(post_signed(first.clone()).await, StatusCode::OK);
    let rows = wait_for_rows(&csv_path, 2);
    assert_eq!(
        rows,
        vec![
            vec![
                "event_timestamp_ms",
                "event_type",
                "object_name",
                "object_size",
                "object_version_id"
            ],
            vec![
                "1700000000123",
                "b2:ObjectCreated:Upload",
                "photos/2023, \"best\".jpg",
                "123456",
                "4_z_version_of_evt-1"
            ],
        ]
    );

    // Unsigned, wrongly signed and tampered requests: 401, nothing written.
    let unsigned = example.post("/b2", &[], first.clone()).await.0;
    assert_eq!(unsigned, StatusCode::UNAUTHORIZED);
    let forged = b2_header("not-the-secret", first.as_bytes());
    let (status, body) = example
        .post(
            "/b2",
            &[("x-bz-event-notification-signature", &forged)],
            first.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["error"],
        "invalid_signature"
    );
    let tampered_body = json!({ "events": [b2_event("evt-9", "photos/evil.jpg", 1)] }).to_string();
    let genuine_signature = b2_header(B2_SECRET, first.as_bytes());
    let tampered = example
        .post(
            "/b2",
            &[("x-bz-event-notification-signature", &genuine_signature)],
            tampered_body,
        )
        .await
        .0;
    assert_eq!(tampered, StatusCode::UNAUTHORIZED);

    // A duplicate delivery of evt-1 (B2 delivers at least once) is accepted
    // but not written again; a later new event proves the writer got past it.
    assert_eq!(post_signed(first).await, StatusCode::OK);
    let second =
        json!({ "events": [b2_event("evt-2", "b.txt", 7), b2_event("evt-3", "c.txt", 8)] })
            .to_string();
    assert_eq!(post_signed(second).await, StatusCode::OK);
    let rows = wait_for_rows(&csv_path, 4);
    let names: Vec<&str> = rows.iter().skip(1).map(|row| row[2].as_str()).collect();
    assert_eq!(names, ["photos/2023, \"best\".jpg", "b.txt", "c.txt"]);
    assert_eq!(
        rows[2],
        [
            "1700000000123",
            "b2:ObjectCreated:Upload",
            "b.txt",
            "7",
            "4_z_version_of_evt-2"
        ]
    );
}

#[tokio::test]
async fn frameio_action_answers_the_form_then_queues_the_chosen_job() {
    let example = Example::start(
        "frameio_custom_action",
        &[("FRAMEIO_SECRET", FRAMEIO_SECRET)],
    );
    let example = &example;
    let post_signed = |body: Value| {
        let body = body.to_string();
        let timestamp = now_secs().to_string();
        let signature = frameio_header(FRAMEIO_SECRET, &timestamp, body.as_bytes());
        async move {
            let headers = [
                ("x-frameio-request-timestamp", timestamp.as_str()),
                ("x-frameio-signature", signature.as_str()),
            ];
            let (status, body) = example.post("/actions/import-export", &headers, body).await;
            (
                status,
                serde_json::from_slice::<Value>(&body).expect("JSON answer"),
            )
        }
    };
    let call = json!({
        "type": "import.export",
        "interaction_id": "2f3c4d5e-6f70-4182-93a4-b5c6d7e8f901",
        "resource": { "type": "file", "id": "file-42" },
        "user": { "id": "user-1" },
        "team": { "id": "team-1" }
    });

    let (status, form) = post_signed(call.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(form["title"], "Import or export?");
    assert_eq!(form["fields"][0]["type"], "select");
    assert_eq!(form["fields"][0]["name"], "job");
    assert_eq!(
        form["fields"][0]["options"],
        json!([{ "name": "Import", "value": "import" }, { "name": "Export", "value": "export" }])
    );

    // Unsigned and stale requests never reach the action.
    let (status, _) = example
        .post("/actions/import-export", &[], call.to_string())
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let stale = (now_secs() - 3600).to_string();
    let body =
        json!({ "resource": { "id": "file-evil" }, "data": { "job": "export" } }).to_string();
    let signature = frameio_header(FRAMEIO_SECRET, &stale, body.as_bytes());
    let headers = [
        ("x-frameio-request-timestamp", stale.as_str()),
        ("x-frameio-signature", signature.as_str()),
    ];
    assert_eq!(
        example
            .post("/actions/import-export", &headers, body)
            .await
            .0,
        StatusCode::FORBIDDEN
    );

    let mut submitted = call;
    submitted["data"] = json!({ "job": "export" });
    let (status, answer) = post_signed(submitted).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["title"], "Job submitted!");
    assert!(answer["description"]
        .as_str()
        .is_some_and(|text| !text.is_empty()));

    let line = example
        .stdout
        .recv_timeout(Duration::from_secs(10))
        .expect("the worker reports the job");
    assert_eq!(
        line, "worker: export job for file-42",
        "the forged export must not have run first"
    );
}
