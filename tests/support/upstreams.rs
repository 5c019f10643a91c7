//! Real S3 upstreams on loopback for end-to-end tests: s3s-fs (an S3 server
//! on a directory that checks SigV4 itself) and moto server with signature
//! checking turned on. Each runs as a subprocess killed when its handle drops.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::clients::{moto_enable_auth, Creds};
use super::Peers;

/// What an end-to-end test needs from an upstream.
pub trait UpstreamPeer: Send + Sync {
    /// A short name for messages (`s3s-fs`, `moto`).
    fn name(&self) -> &'static str;
    /// `http://127.0.0.1:PORT`.
    fn endpoint(&self) -> &str;
    /// The only key the upstream accepts.
    fn creds(&self) -> &Creds;
    /// The upstream's log so far (for failure messages).
    fn log(&self) -> String;
}

/// A subprocess with its log file, killed and reaped on drop.
struct Process {
    child: Child,
    log: PathBuf,
}

impl Process {
    fn spawn(mut command: Command, dir: &Path, what: &str) -> Process {
        let log = dir.join(format!("{what}.log"));
        let out = File::create(&log).expect("create upstream log");
        let err = out.try_clone().expect("clone upstream log handle");
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        Process { child, log }
    }

    fn log(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        // The tail is what explains a failure; moto logs every request.
        let start = text.len().saturating_sub(8000);
        let start = (start..text.len())
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(text.len());
        text[start..].to_owned()
    }

    async fn wait_listening(&mut self, port: u16, what: &str) {
        if let Err(why) = self.listening(port).await {
            panic!("{what} {why}:\n{}", self.log());
        }
    }

    /// Waits until something listens on `port`, or says why not.
    async fn listening(&mut self, port: u16) -> Result<(), String> {
        for _ in 0..300 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("exited with {status} before listening"));
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!("did not listen on {port} within 15 s"))
    }

    fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// s3s-fs serving a temporary directory, knowing exactly one key pair.
pub struct S3sFs {
    process: Process,
    endpoint: String,
    creds: Creds,
    data: tempfile::TempDir,
    _logs: tempfile::TempDir,
    port: u16,
    extra: Vec<String>,
}

impl S3sFs {
    /// Starts s3s-fs accepting only `creds`; `None` when peers are skipped.
    pub async fn start(creds: &Creds) -> Option<S3sFs> {
        S3sFs::start_with_args(creds, &[]).await
    }

    /// [`S3sFs::start`] with extra flags (`--domain localhost` takes
    /// `bucket.localhost` Host headers as virtual-hosted buckets).
    pub async fn start_with_args(creds: &Creds, extra: &[&str]) -> Option<S3sFs> {
        let peers = Peers::get()?;
        let data = tempfile::tempdir().expect("s3s-fs data dir");
        let logs = tempfile::tempdir().expect("s3s-fs log dir");
        let port = free_port();
        let extra: Vec<String> = extra.iter().map(|arg| (*arg).to_owned()).collect();
        let process = S3sFs::spawn(peers, creds, port, &extra, data.path(), logs.path()).await;
        Some(S3sFs {
            process,
            endpoint: format!("http://127.0.0.1:{port}"),
            creds: creds.clone(),
            data,
            _logs: logs,
            port,
            extra,
        })
    }

    async fn spawn(
        peers: &Peers,
        creds: &Creds,
        port: u16,
        extra: &[String],
        data: &Path,
        logs: &Path,
    ) -> Process {
        let mut command = Command::new(peers.s3s_fs());
        command
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", &creds.access_key])
            .args(["--secret-key", &creds.secret_key])
            .args(extra)
            .arg(data);
        let mut process = Process::spawn(command, logs, "s3s-fs");
        process.wait_listening(port, "s3s-fs").await;
        process
    }

    /// Kills the server (SIGKILL): its port refuses connections until
    /// [`S3sFs::restart`].
    pub fn stop(&mut self) {
        let _ = self.process.child.kill();
        let _ = self.process.child.wait();
    }

    /// Starts the server again on the same port and directory.
    pub async fn restart(&mut self) {
        let peers = Peers::get().expect("peers, since it started once");
        let logs = self.process.log.parent().expect("a log dir").to_owned();
        self.process = S3sFs::spawn(
            peers,
            &self.creds,
            self.port,
            &self.extra,
            self.data.path(),
            &logs,
        )
        .await;
    }

    /// The directory s3s-fs stores buckets (subdirectories) and objects in.
    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    /// Every regular file under the data directory, relative to it (s3s-fs
    /// keeps some metadata files of its own next to the objects).
    pub fn files(&self) -> Vec<String> {
        fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, root, out);
                } else {
                    out.push(
                        path.strip_prefix(root)
                            .expect("under root")
                            .to_string_lossy()
                            .into_owned(),
                    );
                }
            }
        }
        let mut out = Vec::new();
        walk(self.data.path(), self.data.path(), &mut out);
        out.sort();
        out
    }
}

impl UpstreamPeer for S3sFs {
    fn name(&self) -> &'static str {
        "s3s-fs"
    }
    fn endpoint(&self) -> &str {
        &self.endpoint
    }
    fn creds(&self) -> &Creds {
        &self.creds
    }
    fn log(&self) -> String {
        self.process.log()
    }
}

/// Whether moto itself answers on `port`: its state API, which no other
/// peer serves.
async fn answers_as_moto(port: u16) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    let request = b"GET /moto-api/data.json HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if stream.write_all(request).await.is_err() {
        return false;
    }
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    answer.starts_with(b"HTTP/1.1 200") || answer.starts_with(b"HTTP/1.0 200")
}

/// moto server with SigV4 checking on, knowing one IAM user's key.
pub struct Moto {
    process: Process,
    endpoint: String,
    creds: Creds,
    _logs: tempfile::TempDir,
}

impl Moto {
    /// Starts moto with auth off, creates an IAM user with an access key and
    /// an allow-all policy, turns auth on (`POST /moto-api/reset-auth` with
    /// `0`) and checks that a wrong secret now gets SignatureDoesNotMatch
    /// from moto itself. `None` when peers are skipped.
    pub async fn start() -> Option<Moto> {
        let peers = Peers::get()?;
        let logs = tempfile::tempdir().expect("moto log dir");
        // A port found free can be taken before moto binds it (another
        // test's listener, a connection's local port): moto then exits, and
        // whatever holds the port would answer in its place. So each try
        // asks moto's own API, and a lost port is tried again.
        let mut tries = 0;
        let (process, port) = loop {
            tries += 1;
            let port = free_port();
            let mut command = Command::new(peers.moto_server());
            command.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
            let mut process = Process::spawn(command, logs.path(), "moto");
            let started = process.listening(port).await;
            if started.is_ok() && answers_as_moto(port).await && process.is_running() {
                break (process, port);
            }
            assert!(
                tries < 5,
                "moto did not start on a port of its own in {tries} tries ({started:?}):\n{}",
                process.log()
            );
        };
        let endpoint = format!("http://127.0.0.1:{port}");
        let out = moto_enable_auth(peers, &endpoint).await;
        if !out.success() {
            panic!(
                "enabling moto's signature check failed ({}):\n--- stdout\n{}\n--- stderr\n{}\n--- moto log\n{}",
                out.status,
                out.stdout,
                out.stderr,
                process.log()
            );
        }
        let key: serde_json::Value =
            serde_json::from_str(out.stdout.trim()).expect("moto setup prints the key as JSON");
        let creds = Creds::new(
            key["access_key"].as_str().expect("access_key"),
            key["secret_key"].as_str().expect("secret_key"),
        );
        Some(Moto {
            process,
            endpoint,
            creds,
            _logs: logs,
        })
    }
}

impl UpstreamPeer for Moto {
    fn name(&self) -> &'static str {
        "moto"
    }
    fn endpoint(&self) -> &str {
        &self.endpoint
    }
    fn creds(&self) -> &Creds {
        &self.creds
    }
    fn log(&self) -> String {
        self.process.log()
    }
}
