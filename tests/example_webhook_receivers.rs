//! Runs the webhook example binaries and talks HTTP to them: signed requests
//! do their job, unsigned or tampered ones get 401 and change nothing. The
//! Frame.io action copies between two real S3 servers (s3s-fs) and is
//! killed with SIGKILL in the middle of a job.
//!
//! The binaries are the ones a plain `cargo test` builds next to this test's
//! own binary. To run this file alone, build them first:
//! `cargo build --examples && cargo test --test example_webhook_receivers` (otherwise
//! an older build of the examples may be the one tested).
#![cfg(feature = "webhook")]

#[cfg(all(feature = "upstream", feature = "dispatcher"))]
mod support;
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

impl Example {
    /// `GET path`: the status and the JSON answer.
    #[cfg_attr(
        not(all(feature = "upstream", feature = "dispatcher")),
        allow(dead_code)
    )]
    async fn get_json(&self, path: &str) -> (StatusCode, Value) {
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let request = Request::get(format!("{}{path}", self.base_url))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = client.request(request).await.expect("the example answers");
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&body).expect("a JSON answer"),
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

/// The Frame.io action with both of its S3 ends real: two s3s-fs servers,
/// one for B2 and one standing for Frame.io's storage.
#[cfg(all(feature = "upstream", feature = "dispatcher"))]
mod frameio_action {
    use super::*;
    use support::clients::aws_cli_s3;
    use support::upstreams::{S3sFs, UpstreamPeer};
    use support::{random_bytes, Creds, Peers};

    const ACTION: &str = "/actions/import-export";
    const BIG: usize = 48 << 20;
    /// The copy's bandwidth cap: the big object takes about 3 s, so the kill
    /// surely lands in the middle of it.
    const RATE: u64 = 16 << 20;
    /// The big object goes as a multipart upload of six parts.
    const PART: u64 = 8 << 20;

    struct Sides {
        b2: S3sFs,
        frameio: S3sFs,
        jobs: tempfile::TempDir,
    }

    impl Sides {
        fn env(&self) -> Vec<(String, String)> {
            let b2 = self.b2.creds();
            let frameio = self.frameio.creds();
            [
                ("FRAMEIO_SECRET", FRAMEIO_SECRET.to_owned()),
                ("B2_ENDPOINT", self.b2.endpoint().to_owned()),
                ("B2_BUCKET", "archive".to_owned()),
                ("B2_KEY_ID", b2.access_key.clone()),
                ("B2_APPLICATION_KEY", b2.secret_key.clone()),
                ("FRAMEIO_STORE_ENDPOINT", self.frameio.endpoint().to_owned()),
                ("FRAMEIO_STORE_BUCKET", "frameio".to_owned()),
                ("FRAMEIO_STORE_KEY_ID", frameio.access_key.clone()),
                ("FRAMEIO_STORE_SECRET_KEY", frameio.secret_key.clone()),
                (
                    "JOBS_DB",
                    self.jobs.path().join("jobs.redb").display().to_string(),
                ),
                ("MAX_BYTES_PER_SEC", RATE.to_string()),
                ("PART_SIZE", PART.to_string()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect()
        }

        fn start(&self) -> Example {
            let env = self.env();
            let env: Vec<(&str, &str)> =
                env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            Example::start("frameio_custom_action", &env)
        }
    }

    /// Uploads `files` (key, bytes) into `bucket` with aws-cli, as a user would.
    async fn upload(peers: &Peers, server: &S3sFs, bucket: &str, files: &[(&str, &[u8])]) {
        let local = tempfile::tempdir().unwrap();
        for (key, bytes) in files {
            let path = local.path().join(key);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, bytes).unwrap();
        }
        let bucket_uri = format!("s3://{bucket}");
        aws_cli_s3(
            peers,
            server.endpoint(),
            server.creds(),
            &["mb".as_ref(), bucket_uri.as_ref()],
        )
        .await
        .assert_success("aws s3 mb");
        if files.is_empty() {
            return;
        }
        let to = format!("s3://{bucket}/");
        aws_cli_s3(
            peers,
            server.endpoint(),
            server.creds(),
            &[
                "cp".as_ref(),
                local.path().as_os_str(),
                to.as_ref(),
                "--recursive".as_ref(),
            ],
        )
        .await
        .assert_success("aws s3 cp --recursive");
    }

    async fn call(example: &Example, body: &Value) -> (StatusCode, Value) {
        let body = body.to_string();
        let timestamp = now_secs().to_string();
        let signature = frameio_header(FRAMEIO_SECRET, &timestamp, body.as_bytes());
        let headers = [
            ("x-frameio-request-timestamp", timestamp.as_str()),
            ("x-frameio-signature", signature.as_str()),
        ];
        let (status, answer) = example.post(ACTION, &headers, body).await;
        let answer = serde_json::from_slice(&answer)
            .unwrap_or_else(|_| panic!("a JSON answer, not {answer:?}"));
        (status, answer)
    }

    fn with_data(call: &Value, data: Value) -> Value {
        let mut call = call.clone();
        call["data"] = data;
        call
    }

    fn option_values(form: &Value) -> Vec<String> {
        form["fields"][0]["options"]
            .as_array()
            .unwrap_or_else(|| panic!("a select, not {form}"))
            .iter()
            .map(|option| option["value"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Polls `GET /jobs/{id}` until `done` says so.
    async fn wait_job(
        example: &Example,
        id: &str,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (status, job) = example.get_json(&format!("/jobs/{id}")).await;
            assert_eq!(status, StatusCode::OK, "{job}");
            if done(&job) {
                return job;
            }
            assert!(Instant::now() < deadline, "waited 120 s for {what}: {job}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn stored(server: &S3sFs, bucket: &str, key: &str) -> Option<Vec<u8>> {
        std::fs::read(server.data_dir().join(bucket).join(key)).ok()
    }

    #[tokio::test]
    async fn three_signed_steps_a_kill_mid_copy_and_byte_exact_objects_after_restart() {
        let Some(b2) = S3sFs::start(&Creds::new("B2KEYID0001", "b2-application-key")).await else {
            return;
        };
        let Some(frameio) =
            S3sFs::start(&Creds::new("FRAMEIOSTORE01", "frameio-store-secret")).await
        else {
            return;
        };
        let peers = Peers::get().expect("peers, since s3s-fs started");
        let big = random_bytes(BIG, 0xF4A3E10);
        let small = b"notes for day one\n".to_vec();
        let nested = random_bytes(1 << 20, 0xC0FFEE);
        let clip = random_bytes(3 << 20, 0xC11F);
        upload(
            peers,
            &b2,
            "archive",
            &[
                ("footage/day1/a.bin", &big),
                ("footage/day1/take 2.txt", &small),
                ("footage/day1/sub/c.bin", &nested),
                ("footage/other.txt", b"not picked"),
                ("readme.txt", b"top level"),
            ],
        )
        .await;
        upload(peers, &frameio, "frameio", &[("asset-7/clip.mov", &clip)]).await;
        let sides = Sides {
            b2,
            frameio,
            jobs: tempfile::tempdir().unwrap(),
        };

        let example = sides.start();
        let import = json!({
            "type": "import.export",
            "interaction_id": "2f3c4d5e-6f70-4182-93a4-b5c6d7e8f901",
            "resource": { "type": "folder", "id": "folder-9" },
            "user": { "id": "user-1" },
            "team": { "id": "team-1" }
        });

        // Step 0: the first call gets the first form.
        let (status, form) = call(&example, &import).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(form["title"], "Import or export?");
        assert_eq!(form["fields"][0]["type"], "select");
        assert_eq!(form["fields"][0]["name"], "job");
        assert_eq!(
            form["fields"][0]["options"],
            json!([{ "name": "Import", "value": "import" }, { "name": "Export", "value": "export" }])
        );

        // Unsigned and stale calls never reach the action.
        let (status, _) = example.post(ACTION, &[], import.to_string()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let stale = (now_secs() - 3600).to_string();
        let forged = with_data(&import, json!({ "pick": "tree:footage/" })).to_string();
        let signature = frameio_header(FRAMEIO_SECRET, &stale, forged.as_bytes());
        let headers = [
            ("x-frameio-request-timestamp", stale.as_str()),
            ("x-frameio-signature", signature.as_str()),
        ];
        assert_eq!(
            example.post(ACTION, &headers, forged).await.0,
            StatusCode::FORBIDDEN
        );

        // Step 1: import -> the top of the bucket.
        let (status, form) = call(&example, &with_data(&import, json!({ "job": "import" }))).await;
        assert_eq!(status, StatusCode::OK, "{form}");
        assert_eq!(form["fields"][0]["name"], "pick");
        let values = option_values(&form);
        for wanted in ["dir:footage/", "tree:footage/", "file:readme.txt"] {
            assert!(values.iter().any(|v| v == wanted), "{wanted} in {values:?}");
        }

        // Step 2: open footage/.
        let (status, form) = call(
            &example,
            &with_data(&import, json!({ "pick": "dir:footage/" })),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{form}");
        let values = option_values(&form);
        for wanted in [
            "dir:",
            "dir:footage/day1/",
            "tree:footage/day1/",
            "file:footage/other.txt",
        ] {
            assert!(values.iter().any(|v| v == wanted), "{wanted} in {values:?}");
        }
        // A pick outside what was offered is refused.
        let (status, _) = call(
            &example,
            &with_data(&import, json!({ "pick": "tree:footage/../" })),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);

        // Step 3: take footage/day1/ whole.
        let submit = with_data(&import, json!({ "pick": "tree:footage/day1/" }));
        let (status, answer) = call(&example, &submit).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
        assert_eq!(answer["title"], "Job submitted!");
        let (_, jobs) = example.get_json("/jobs").await;
        let jobs = jobs.as_array().unwrap().clone();
        assert_eq!(jobs.len(), 1, "the stale forgery queued nothing: {jobs:?}");
        let id = jobs[0]["id"].as_str().unwrap().to_owned();
        assert!(
            answer["description"].as_str().unwrap().contains(&id),
            "{answer}"
        );

        // Kill -9 while the big object is half way: a part or two uploaded
        // (and saved), the next one in flight.
        let mid = wait_job(&example, &id, "the big object half copied", |job| {
            let parts = job["objects"][0]["upload"]["etags"]
                .as_array()
                .map_or(0, Vec::len);
            let current = &job["current"];
            (1..=3).contains(&parts)
                && current["key"] == "footage/day1/a.bin"
                // Early in the next part, so it cannot finish (and be
                // saved) between this answer and the kill.
                && current["bytes"]
                    .as_u64()
                    .is_some_and(|b| b > parts as u64 * PART && b < parts as u64 * PART + PART / 2)
        })
        .await;
        let parts_before = mid["objects"][0]["upload"]["etags"]
            .as_array()
            .unwrap()
            .len();
        eprintln!(
            "killed at {} with {parts_before} parts saved",
            mid["current"]
        );
        drop(example);
        assert_ne!(
            stored(&sides.frameio, "frameio", "folder-9/day1/a.bin").as_deref(),
            Some(&big[..]),
            "the kill came too late to cut the copy"
        );

        // The restarted action takes the job up again where it stopped and
        // finishes it.
        let example = sides.start();
        let resumed = format!(
            "worker: job {id} resumes footage/day1/a.bin at part {}",
            parts_before + 1
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let line = example
                .stdout
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| panic!("no line {resumed:?}"));
            if line == resumed {
                break;
            }
        }
        let job = wait_job(&example, &id, "the job to end", |job| {
            job["state"] == "done" || job["state"] == "failed"
        })
        .await;
        assert_eq!(job["state"], "done", "{job}");
        assert_eq!(job["interrupted"], 1, "{job}");
        assert_eq!(job["attempts"], 2, "{job}");
        assert_eq!(job["copied"], 3, "{job}");
        let total = (BIG + small.len() + nested.len()) as u64;
        assert_eq!(job["copied_bytes"], total, "{job}");
        assert_eq!(
            job["sent_bytes"], total,
            "a finished part was sent again: {job}"
        );
        let expect = [
            ("folder-9/day1/a.bin", &big[..]),
            ("folder-9/day1/take 2.txt", &small[..]),
            ("folder-9/day1/sub/c.bin", &nested[..]),
        ];
        for (key, bytes) in expect {
            let got = stored(&sides.frameio, "frameio", key)
                .unwrap_or_else(|| panic!("{key} not copied: {:?}", sides.frameio.files()));
            assert!(
                got == bytes,
                "{key}: {} bytes, not the {} uploaded",
                got.len(),
                bytes.len()
            );
        }
        for absent in [
            "folder-9/other.txt",
            "folder-9/readme.txt",
            "folder-9/a.bin",
        ] {
            assert!(
                stored(&sides.frameio, "frameio", absent).is_none(),
                "{absent} copied"
            );
        }

        // The same submission again (a retried call) is the same job.
        let (status, again) = call(&example, &submit).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        assert!(
            again["description"].as_str().unwrap().contains(&id),
            "{again}"
        );
        assert_eq!(
            example.get_json("/jobs").await.1.as_array().unwrap().len(),
            1
        );

        // Export: the asset's objects to a prefix in B2.
        let export = json!({
            "type": "import.export",
            "interaction_id": "7d6c5b4a-3f2e-4d1c-8b0a-9f8e7d6c5b4a",
            "resource": { "type": "file", "id": "asset-7" }
        });
        let (status, form) = call(&example, &with_data(&export, json!({ "job": "export" }))).await;
        assert_eq!(status, StatusCode::OK, "{form}");
        assert_eq!(form["fields"][0]["name"], "destination");
        assert_eq!(form["fields"][0]["value"], "frameio/asset-7/");
        let (status, answer) = call(
            &example,
            &with_data(&export, json!({ "destination": "exports/asset-7/" })),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
        assert_eq!(answer["title"], "Job submitted!");
        let (_, jobs) = example.get_json("/jobs").await;
        let export_id = jobs.as_array().unwrap()[1]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let job = wait_job(&example, &export_id, "the export to end", |job| {
            job["state"] == "done" || job["state"] == "failed"
        })
        .await;
        assert_eq!(job["state"], "done", "{job}");
        assert_eq!(
            stored(&sides.b2, "archive", "exports/asset-7/clip.mov").as_deref(),
            Some(&clip[..]),
            "{:?}",
            sides.b2.files()
        );

        // An asset with nothing under it: the job fails at once, and its
        // status says why.
        let empty = json!({
            "interaction_id": "0e1d2c3b-4a59-4687-9a5b-6c7d8e9f0a1b",
            "resource": { "type": "file", "id": "asset-empty" },
            "data": { "destination": "exports/empty/" }
        });
        let (status, answer) = call(&example, &empty).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
        let (_, jobs) = example.get_json("/jobs").await;
        let failed_id = jobs.as_array().unwrap()[2]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let job = wait_job(&example, &failed_id, "the empty export to end", |job| {
            job["state"] == "done" || job["state"] == "failed"
        })
        .await;
        assert_eq!(job["state"], "failed", "{job}");
        assert_eq!(
            job["attempts"], 1,
            "a permanent error is not retried: {job}"
        );
        assert!(
            job["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("nothing to copy")),
            "{job}"
        );
        let (status, _) = example.get_json("/jobs/no-such-job").await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        // Measured, not asserted: the restarted process's peak memory after
        // streaming 40 MiB of parts and the export.
        let status = std::fs::read_to_string(format!("/proc/{}/status", example.child.id()))
            .unwrap_or_default();
        if let Some(peak) = status.lines().find(|l| l.starts_with("VmHWM")) {
            eprintln!("frameio_custom_action peak RSS: {peak}");
        }
    }

    #[test]
    fn a_bad_setting_stops_the_start_naming_it() {
        let jobs = tempfile::tempdir().unwrap();
        let jobs_db = jobs.path().join("jobs.redb");
        let good = [
            ("FRAMEIO_SECRET", FRAMEIO_SECRET),
            ("PORT", "0"),
            ("B2_ENDPOINT", "http://127.0.0.1:9"),
            ("B2_BUCKET", "archive"),
            ("B2_KEY_ID", "key"),
            ("B2_APPLICATION_KEY", "b2-secret-value"),
            ("FRAMEIO_STORE_ENDPOINT", "http://127.0.0.1:9"),
            ("FRAMEIO_STORE_BUCKET", "frameio"),
            ("FRAMEIO_STORE_KEY_ID", "key"),
            ("FRAMEIO_STORE_SECRET_KEY", "store-secret-value"),
            ("JOBS_DB", jobs_db.to_str().unwrap()),
        ];
        let cases: [(&str, Option<&str>); 5] = [
            ("B2_BUCKET", None),
            ("PART_SIZE", Some("1024")),
            ("IMPORT_ROOT", Some("footage")),
            ("MAX_ATTEMPTS", Some("many")),
            ("B2_ENDPOINT", Some("s3.example.com")),
        ];
        for (name, value) in cases {
            let mut command = Command::new(example_binary("frameio_custom_action"));
            command
                .env_clear()
                .envs(good.iter().filter(|(k, _)| *k != name).copied());
            if let Some(value) = value {
                command.env(name, value);
            }
            let out = command.output().expect("the example runs");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{name}={value:?} was accepted");
            assert!(stderr.contains(name), "{name}={value:?}: {stderr}");
            assert!(
                !stderr.contains("secret-value"),
                "a secret in the message: {stderr}"
            );
        }
    }

    #[tokio::test]
    async fn a_job_whose_destination_is_down_is_retried_until_it_is_back() {
        let Some(b2) = S3sFs::start(&Creds::new("B2KEYID0002", "b2-application-key")).await else {
            return;
        };
        let Some(frameio) =
            S3sFs::start(&Creds::new("FRAMEIOSTORE02", "frameio-store-secret")).await
        else {
            return;
        };
        let peers = Peers::get().expect("peers, since s3s-fs started");
        let notes = b"shot list".to_vec();
        let take = random_bytes(2 << 20, 0x7A4E);
        upload(peers, &b2, "archive", &[]).await;
        upload(
            peers,
            &frameio,
            "frameio",
            &[
                ("asset-3/notes.txt", &notes),
                ("asset-3/takes/1.mov", &take),
            ],
        )
        .await;
        let mut sides = Sides {
            b2,
            frameio,
            jobs: tempfile::tempdir().unwrap(),
        };
        let example = sides.start();

        // B2 goes away before the job is submitted.
        sides.b2.stop();
        let export = json!({
            "interaction_id": "5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d",
            "resource": { "type": "folder", "id": "asset-3" },
            "data": { "destination": "backup/asset-3" }
        });
        let (status, answer) = call(&example, &export).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
        let (_, jobs) = example.get_json("/jobs").await;
        let id = jobs.as_array().unwrap()[0]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let waiting = wait_job(&example, &id, "two failed attempts", |job| {
            job["failures"].as_u64().is_some_and(|f| f >= 2)
        })
        .await;
        assert_eq!(waiting["state"], "queued", "still to be retried: {waiting}");
        assert!(
            waiting["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("502")),
            "{waiting}"
        );

        // Back: the next retry finishes the job.
        sides.b2.restart().await;
        let job = wait_job(&example, &id, "the job to end", |job| {
            job["state"] == "done" || job["state"] == "failed"
        })
        .await;
        assert_eq!(job["state"], "done", "{job}");
        assert!(job["attempts"].as_u64().unwrap() >= 3, "{job}");
        assert_eq!(
            stored(&sides.b2, "archive", "backup/asset-3/notes.txt").as_deref(),
            Some(&notes[..])
        );
        assert_eq!(
            stored(&sides.b2, "archive", "backup/asset-3/takes/1.mov").as_deref(),
            Some(&take[..])
        );
    }
}
