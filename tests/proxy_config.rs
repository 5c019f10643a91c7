//! Bad settings stop the `s3tap` binary at startup with exit code 2 and one
//! readable line on stderr naming the problem, never a backtrace.
#![cfg(feature = "proxy")]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Outcome {
    code: Option<i32>,
    stderr: String,
}

/// Runs the binary with only `env` set (plus PATH), free ports and a
/// private data dir, and waits at most 20 s for it to exit.
fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Outcome {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_s3tap"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    if !args.contains(&"--listen") {
        cmd.args(["--listen", "127.0.0.1:0"]);
    }
    cmd.args(["--admin-listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(args)
        .envs(env.iter().copied())
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("start s3tap");
    let started = Instant::now();
    loop {
        if child.try_wait().expect("wait for s3tap").is_some() {
            break;
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("s3tap {args:?} kept running; it should have refused to start");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    Outcome {
        code: output.status.code(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[track_caller]
fn assert_refused(outcome: &Outcome, expected: &str) {
    assert_eq!(outcome.code, Some(2), "stderr: {}", outcome.stderr);
    let lines: Vec<&str> = outcome.stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "expected one line, got:\n{}",
        outcome.stderr
    );
    assert!(lines[0].starts_with("s3tap: "), "{}", lines[0]);
    assert!(
        lines[0].contains(expected),
        "expected {expected:?} in {:?}",
        lines[0]
    );
    assert!(!outcome.stderr.contains("panicked"), "{}", outcome.stderr);
    assert!(!outcome.stderr.contains("backtrace"), "{}", outcome.stderr);
}

fn config_file(dir: &Path, text: &str) -> String {
    let path = dir.join("s3tap.toml");
    std::fs::File::create(&path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .unwrap();
    path.to_str().unwrap().to_owned()
}

const ENDPOINT: (&str, &str) = ("AWS_S3_ENDPOINT", "https://s3.us-west-004.backblazeb2.com");

#[test]
fn missing_secret() {
    let dir = tempfile::tempdir().unwrap();
    let outcome = run(dir.path(), &[], &[ENDPOINT, ("AWS_ACCESS_KEY_ID", "AKID")]);
    assert_refused(
        &outcome,
        "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is missing",
    );
}

#[test]
fn no_client_key_for_a_real_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let outcome = run(dir.path(), &[], &[ENDPOINT]);
    assert_refused(&outcome, "no client keys");
}

#[test]
fn client_entry_without_secret() {
    let dir = tempfile::tempdir().unwrap();
    let file = config_file(
        dir.path(),
        "[upstream]\nendpoint = \"https://s3.us-west-004.backblazeb2.com\"\n\n\
         [[clients]]\naccess_key_id = \"AKID\"\n",
    );
    let outcome = run(dir.path(), &["--config", &file], &[]);
    assert_refused(&outcome, "line 4: missing field `secret_access_key`");
}

#[test]
fn malformed_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("AWS_ACCESS_KEY_ID", "AKID"),
        ("AWS_SECRET_ACCESS_KEY", "very-secret-value"),
    ];
    for endpoint in [
        "s3.example.com",
        "ftp://s3.example.com",
        "https://s3.example.com/path",
    ] {
        let mut env = env.to_vec();
        env.push(("AWS_S3_ENDPOINT", endpoint));
        let outcome = run(dir.path(), &[], &env);
        assert_refused(&outcome, "AWS_S3_ENDPOINT: invalid upstream endpoint");
        assert!(!outcome.stderr.contains("very-secret-value"));
    }
}

#[test]
fn unreadable_tls_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let outcome = run(
        dir.path(),
        &[
            "--tls-cert",
            "missing-cert.pem",
            "--tls-key",
            "missing-key.pem",
        ],
        &[],
    );
    assert_refused(&outcome, "cannot read the TLS certificate missing-cert.pem");
}

#[test]
fn garbage_tls_certificate_and_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("junk.pem"), "this is not PEM\n").unwrap();
    let outcome = run(
        dir.path(),
        &["--tls-cert", "junk.pem", "--tls-key", "junk.pem"],
        &[],
    );
    assert_refused(
        &outcome,
        "the TLS certificate junk.pem has no CERTIFICATE block",
    );

    // A real certificate with a key that is garbage.
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    std::fs::write(dir.path().join("cert.pem"), cert.cert.pem()).unwrap();
    let outcome = run(
        dir.path(),
        &["--tls-cert", "cert.pem", "--tls-key", "junk.pem"],
        &[],
    );
    assert_refused(&outcome, "cannot read the TLS private key junk.pem");

    // A certificate with somebody else's key.
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    std::fs::write(dir.path().join("other.key"), other.key_pair.serialize_pem()).unwrap();
    let outcome = run(
        dir.path(),
        &["--tls-cert", "cert.pem", "--tls-key", "other.key"],
        &[],
    );
    assert_refused(&outcome, "do not work together");
}

#[test]
fn bad_toml_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = config_file(
        dir.path(),
        "[listen]\naddress = \"127.0.0.1:0\"\nthis is not toml\n",
    );
    let outcome = run(dir.path(), &["--config", &file], &[]);
    assert_refused(&outcome, "s3tap.toml, line 3:");
}

#[test]
fn unknown_config_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = config_file(
        dir.path(),
        "[verify]\nmax_clock_skew_secs = 60\nbogus = 1\n",
    );
    let outcome = run(dir.path(), &["--config", &file], &[]);
    assert_refused(&outcome, "line 3: unknown field `bogus`");

    let file = config_file(dir.path(), "[upstrem]\nendpoint = \"https://x\"\n");
    let outcome = run(dir.path(), &["--config", &file], &[]);
    assert_refused(&outcome, "line 1: unknown field `upstrem`");
}

#[test]
fn unreadable_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let outcome = run(dir.path(), &["--config", "nope.toml"], &[]);
    assert_refused(&outcome, "cannot read config file nope.toml");
}

#[test]
fn listen_address_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let outcome = run(dir.path(), &["--listen", &addr], &[]);
    assert_refused(&outcome, &format!("cannot bind the listen address {addr}"));
}

#[test]
fn invalid_clock_skew() {
    let dir = tempfile::tempdir().unwrap();
    let file = config_file(dir.path(), "[verify]\nmax_clock_skew_secs = 0\n");
    let outcome = run(dir.path(), &["--config", &file], &[]);
    assert_refused(&outcome, "max_clock_skew_secs = 0 is out of range");

    let file = config_file(dir.path(), "[verify]\nmax_clock_skew_secs = -5\n");
    let outcome = run(dir.path(), &["--config", &file], &[]);
    assert_refused(&outcome, "line 2:");
}

#[test]
fn zero_workers() {
    let dir = tempfile::tempdir().unwrap();
    let file = config_file(dir.path(), "[listen]\nworkers = 0\n");
    let outcome = run(dir.path(), &["--config", &file], &[]);
    assert_refused(&outcome, "[listen] workers must be at least 1");
    let file = config_file(dir.path(), "[listen]\nshared_threads = 0\n");
    let outcome = run(dir.path(), &["--config", &file], &[]);
    assert_refused(&outcome, "[listen] shared_threads must be at least 1");
}

#[test]
fn read_buffer_smaller_than_a_head() {
    let dir = tempfile::tempdir().unwrap();
    let file = config_file(dir.path(), "[limits]\nread_buffer_bytes = 16384\n");
    let outcome = run(dir.path(), &["--config", &file], &[]);
    assert_refused(
        &outcome,
        "[limits] read_buffer_bytes = 16384 is below max_header_bytes = 65536: a request head must fit in one read",
    );
    let file = config_file(dir.path(), "[limits]\nread_buffer_bytes = 0\n");
    let outcome = run(dir.path(), &["--config", &file], &[]);
    assert_refused(
        &outcome,
        "[limits] read_buffer_bytes must be greater than 0",
    );
}

#[test]
fn invalid_listen_address_and_webhook() {
    let dir = tempfile::tempdir().unwrap();
    let outcome = run(dir.path(), &["--listen", "localhost"], &[]);
    assert_refused(
        &outcome,
        "the listen address \"localhost\" is not an IP address",
    );
    let outcome = run(dir.path(), &[], &[("WEBHOOK_URL", "not a url")]);
    assert_refused(&outcome, "WEBHOOK_URL");
}
