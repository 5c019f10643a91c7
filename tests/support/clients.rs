//! Runners for real S3 clients (boto3, aws-cli, rclone, AWS JS SDK v3) as
//! subprocesses against a test endpoint.
//!
//! Each client runs with a cleared environment: only PATH, a temporary HOME
//! and the variables set here reach it, so the machine's own AWS settings
//! (`AWS_CA_BUNDLE`, `~/.aws`, profiles) cannot leak in, and whatever a client
//! caches lands in a temporary directory.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use super::Peers;

/// How long one client run may take before the test fails.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(300);

/// Credentials and region a client signs with.
#[derive(Debug, Clone)]
pub struct Creds {
    pub access_key: String,
    pub secret_key: String,
    pub region: String,
}

impl Creds {
    pub fn new(access_key: &str, secret_key: &str) -> Creds {
        Creds {
            access_key: access_key.to_owned(),
            secret_key: secret_key.to_owned(),
            region: "us-east-1".to_owned(),
        }
    }
}

/// What a client run produced.
#[derive(Debug)]
pub struct ClientOutput {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl ClientOutput {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Panics with the client's output unless it exited 0.
    #[track_caller]
    pub fn assert_success(&self, what: &str) {
        assert!(
            self.success(),
            "{what} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
    }
}

fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

/// A command with a scrubbed environment and a private HOME.
fn client_command(program: &Path, home: &Path, creds: &Creds) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("LANG", "C.UTF-8")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("AWS_ACCESS_KEY_ID", &creds.access_key)
        .env("AWS_SECRET_ACCESS_KEY", &creds.secret_key)
        .env("AWS_DEFAULT_REGION", &creds.region)
        .env("AWS_REGION", &creds.region)
        // No shared config or credentials files unless a runner sets one.
        .env("AWS_CONFIG_FILE", home.join("aws-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.join("aws-credentials"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .current_dir(home)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

async fn run(mut cmd: Command, what: &str) -> ClientOutput {
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let out = tokio::time::timeout(CLIENT_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {CLIENT_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("waiting for {what}: {e}"));
    ClientOutput {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// boto3 `put_object` of `file` to `bucket/key` with the SDK's default
/// payload mode (over HTTP a hex payload hash with a CRC32 header and
/// `Expect: 100-continue`; over HTTPS an unsigned aws-chunked body with a
/// CRC32 trailer). `ca_bundle` is the PEM of a test CA for HTTPS endpoints.
pub async fn boto3_put(
    peers: &Peers,
    endpoint: &str,
    ca_bundle: Option<&Path>,
    file: &Path,
    bucket: &str,
    key: &str,
    creds: &Creds,
) -> ClientOutput {
    let home = tempfile::tempdir().expect("client temp dir");
    let mut cmd = client_command(peers.python(), home.path(), creds);
    cmd.arg(clients_dir().join("boto3_put.py"))
        .args([endpoint, bucket, key])
        .arg(file);
    if let Some(ca) = ca_bundle {
        cmd.env("AWS_CA_BUNDLE", ca);
    }
    run(cmd, "boto3 put_object").await
}

/// `aws s3 cp FILE S3_URI` with aws-cli v1 (multipart above 8 MiB, eight
/// parts for 64 MiB, several in parallel), path-style, region us-east-1.
pub async fn aws_cli_cp(
    peers: &Peers,
    endpoint: &str,
    file: &Path,
    s3_uri: &str,
    creds: &Creds,
) -> ClientOutput {
    let file = file.as_os_str();
    aws_cli_s3(
        peers,
        endpoint,
        creds,
        &["cp".as_ref(), file, s3_uri.as_ref()],
    )
    .await
}

/// `aws s3 ARGS... --endpoint-url ENDPOINT` with aws-cli v1, path-style,
/// one attempt per request, no progress output for transfers.
pub async fn aws_cli_s3(
    peers: &Peers,
    endpoint: &str,
    creds: &Creds,
    args: &[&std::ffi::OsStr],
) -> ClientOutput {
    let home = tempfile::tempdir().expect("client temp dir");
    let config = home.path().join("aws-config");
    std::fs::write(
        &config,
        format!(
            "[default]\nregion = {}\ns3 =\n    addressing_style = path\n",
            creds.region
        ),
    )
    .expect("write aws-cli config");
    let mut cmd = client_command(peers.aws_cli(), home.path(), creds);
    cmd.env("AWS_CONFIG_FILE", &config)
        .env("AWS_MAX_ATTEMPTS", "1")
        .arg("s3")
        .args(args)
        .args(["--endpoint-url", endpoint]);
    if args.first().is_some_and(|command| {
        ["cp", "mv", "sync"]
            .map(std::ffi::OsStr::new)
            .contains(command)
    }) {
        cmd.arg("--no-progress");
    }
    run(cmd, "aws s3").await
}

/// `aws s3api ARGS... --endpoint-url ENDPOINT --output json` with aws-cli
/// v1, path-style, one attempt per request.
pub async fn aws_cli_s3api(
    peers: &Peers,
    endpoint: &str,
    creds: &Creds,
    args: &[&str],
) -> ClientOutput {
    let home = tempfile::tempdir().expect("client temp dir");
    let config = home.path().join("aws-config");
    std::fs::write(
        &config,
        format!(
            "[default]\nregion = {}\ns3 =\n    addressing_style = path\n",
            creds.region
        ),
    )
    .expect("write aws-cli config");
    let mut cmd = client_command(peers.aws_cli(), home.path(), creds);
    cmd.env("AWS_CONFIG_FILE", &config)
        .env("AWS_MAX_ATTEMPTS", "1")
        .arg("s3api")
        .args(args)
        .args(["--endpoint-url", endpoint, "--output", "json"]);
    run(cmd, "aws s3api").await
}

/// boto3's everyday calls (`tests/clients/boto3_ops.py`): put `file` under
/// `prefix`, head, GET, range GETs, copy, list, delete; stdout is a JSON
/// report of what must not depend on the path taken.
pub async fn boto3_ops(
    peers: &Peers,
    endpoint: &str,
    ca_bundle: Option<&Path>,
    bucket: &str,
    prefix: &str,
    file: &Path,
    creds: &Creds,
) -> ClientOutput {
    let home = tempfile::tempdir().expect("client temp dir");
    let mut cmd = client_command(peers.python(), home.path(), creds);
    cmd.arg(clients_dir().join("boto3_ops.py"))
        .args([endpoint, bucket, prefix])
        .arg(file);
    if let Some(ca) = ca_bundle {
        cmd.env("AWS_CA_BUNDLE", ca);
    }
    run(cmd, "boto3 ops").await
}

/// rclone with an S3 remote named `e2e` configured from the environment
/// (provider Other, path style, region us-east-1). The scrubbed environment
/// already lacks `AWS_CA_BUNDLE`, which makes rclone 1.60 fail even over
/// HTTP.
pub async fn rclone(
    peers: &Peers,
    endpoint: &str,
    creds: &Creds,
    args: &[&std::ffi::OsStr],
) -> ClientOutput {
    let home = tempfile::tempdir().expect("client temp dir");
    let mut cmd = client_command(peers.rclone(), home.path(), creds);
    cmd.env("RCLONE_CONFIG", home.path().join("rclone.conf"))
        .env("RCLONE_CONFIG_E2E_TYPE", "s3")
        .env("RCLONE_CONFIG_E2E_PROVIDER", "Other")
        .env("RCLONE_CONFIG_E2E_ENDPOINT", endpoint)
        .env("RCLONE_CONFIG_E2E_REGION", &creds.region)
        .env("RCLONE_CONFIG_E2E_FORCE_PATH_STYLE", "true")
        .env("RCLONE_CONFIG_E2E_ACCESS_KEY_ID", &creds.access_key)
        .env("RCLONE_CONFIG_E2E_SECRET_ACCESS_KEY", &creds.secret_key)
        .env("RCLONE_LOW_LEVEL_RETRIES", "1")
        .env("RCLONE_RETRIES", "1")
        .args(args);
    run(cmd, "rclone").await
}

/// `tests/clients/moto_enable_auth.py`: turns on moto's signature check
/// with one allow-all IAM key, printed as JSON on stdout.
pub async fn moto_enable_auth(peers: &Peers, endpoint: &str) -> ClientOutput {
    let home = tempfile::tempdir().expect("client temp dir");
    let mut cmd = client_command(
        peers.python(),
        home.path(),
        &Creds::new("bootstrap", "bootstrap"),
    );
    cmd.arg(clients_dir().join("moto_enable_auth.py"))
        .arg(endpoint);
    run(cmd, "moto auth setup").await
}

/// AWS JS SDK v3 `PutObjectCommand` with a `fs.createReadStream` body and
/// `ContentLength`, path-style (the SDK sends an unsigned aws-chunked body
/// with a CRC32 trailer, even over HTTP).
pub async fn js_sdk_stream_put(
    peers: &Peers,
    endpoint: &str,
    file: &Path,
    bucket: &str,
    key: &str,
    creds: &Creds,
) -> ClientOutput {
    let home = tempfile::tempdir().expect("client temp dir");
    let mut cmd = client_command(peers.node(), home.path(), creds);
    cmd.env("S3TAP_NODE_MODULES", peers.node_modules())
        .arg(clients_dir().join("js_stream_put.mjs"))
        .args([endpoint, bucket, key])
        .arg(file);
    run(cmd, "JS SDK PutObjectCommand").await
}

/// `python tests/clients/SCRIPT ARGS...` with boto3 from the peers' venv,
/// signing with `creds`.
pub async fn boto3_script(
    peers: &Peers,
    script: &str,
    args: &[&std::ffi::OsStr],
    creds: &Creds,
) -> ClientOutput {
    let home = tempfile::tempdir().expect("client temp dir");
    let mut cmd = client_command(peers.python(), home.path(), creds);
    cmd.arg(clients_dir().join(script)).args(args);
    run(cmd, script).await
}

/// [`boto3_script`] with extra environment variables (`AWS_CA_BUNDLE`,
/// `S3TAP_ADDRESSING`, ...).
pub async fn boto3_script_env(
    peers: &Peers,
    script: &str,
    args: &[&std::ffi::OsStr],
    creds: &Creds,
    env: &[(&str, &std::ffi::OsStr)],
) -> ClientOutput {
    let home = tempfile::tempdir().expect("client temp dir");
    let mut cmd = client_command(peers.python(), home.path(), creds);
    cmd.arg(clients_dir().join(script)).args(args);
    for (name, value) in env {
        cmd.env(name, value);
    }
    run(cmd, script).await
}

/// `aws s3 ARGS... --endpoint-url ENDPOINT --ca-bundle CA` with aws-cli v1,
/// path-style, one attempt per request.
pub async fn aws_cli_s3_tls(
    peers: &Peers,
    endpoint: &str,
    ca_bundle: &Path,
    creds: &Creds,
    args: &[&std::ffi::OsStr],
) -> ClientOutput {
    let mut all: Vec<&std::ffi::OsStr> = args.to_vec();
    all.push("--ca-bundle".as_ref());
    all.push(ca_bundle.as_os_str());
    aws_cli_s3(peers, endpoint, creds, &all).await
}

/// A script of `tests/clients` run with node and the peers' AWS JS SDK v3.
pub async fn node_script(
    peers: &Peers,
    script: &str,
    args: &[&std::ffi::OsStr],
    creds: &Creds,
) -> ClientOutput {
    let home = tempfile::tempdir().expect("client temp dir");
    let mut cmd = client_command(peers.node(), home.path(), creds);
    cmd.env("S3TAP_NODE_MODULES", peers.node_modules())
        .arg(clients_dir().join(script))
        .args(args);
    run(cmd, script).await
}

/// `s3cmd ARGS...` against `endpoint` (`127.0.0.1:PORT`, plain HTTP, path
/// style, SigV4), with a config file written to a private HOME.
pub async fn s3cmd(
    peers: &Peers,
    host: &str,
    creds: &Creds,
    args: &[&std::ffi::OsStr],
) -> ClientOutput {
    let home = tempfile::tempdir().expect("client temp dir");
    let config = home.path().join("s3cfg");
    std::fs::write(
        &config,
        format!(
            "[default]\naccess_key = {}\nsecret_key = {}\nhost_base = {host}\n\
             host_bucket = {host}\nbucket_location = {}\nuse_https = False\n\
             signature_v2 = False\n",
            creds.access_key, creds.secret_key, creds.region
        ),
    )
    .expect("write s3cmd config");
    let mut cmd = client_command(peers.s3cmd(), home.path(), creds);
    cmd.arg("--config").arg(&config).args(args);
    run(cmd, "s3cmd").await
}
