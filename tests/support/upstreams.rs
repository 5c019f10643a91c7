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

    /// Waits until this process itself listens on `port`, or says why not.
    /// A port found free can be taken before the peer binds it (another
    /// test's listener, a connection's local port); then the peer exits
    /// and whatever holds the port would answer in its place, so a connect
    /// proves nothing: the listening socket must be one of the process's own.
    async fn listening(&mut self, port: u16) -> Result<(), String> {
        for _ in 0..300 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("exited with {status} before listening on {port}"));
            }
            if owns_listener(self.child.id(), port) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!("did not listen on {port} within 15 s"))
    }

    /// Starts `command(port)` on a free port of its own: a port lost to
    /// another listener before the peer bound it is given up for a new one,
    /// up to [`PORT_TRIES`] times.
    async fn start_on_free_port(
        command: impl Fn(u16) -> Command,
        dir: &Path,
        what: &str,
    ) -> (Process, u16) {
        let mut tries = 0;
        loop {
            tries += 1;
            let port = free_port();
            let mut process = Process::spawn(command(port), dir, what);
            match process.listening(port).await {
                Ok(()) => return (process, port),
                Err(why) if tries == PORT_TRIES => panic!(
                    "{what} did not start on a port of its own in {tries} tries ({why}):\n{}",
                    process.log()
                ),
                Err(_) => continue,
            }
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How many sets of free ports a peer's start tries before it gives up.
pub const PORT_TRIES: u32 = 5;

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Whether process `pid` holds a socket listening on loopback `port`: the
/// listener's inode from `/proc/net/tcp{,6}` among the process's open files.
pub fn owns_listener(pid: u32, port: u16) -> bool {
    const LISTEN: &str = "0A";
    let port = format!(":{port:04X}");
    let inodes: Vec<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .flat_map(|table| {
            table
                .lines()
                .skip(1)
                .filter_map(|line| {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    (fields.len() > 9 && fields[1].ends_with(&port) && fields[3] == LISTEN)
                        .then(|| format!("socket:[{}]", fields[9]))
                })
                .collect::<Vec<_>>()
        })
        .collect();
    if inodes.is_empty() {
        return false;
    }
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.filter_map(Result::ok)
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .any(|target| {
            inodes
                .iter()
                .any(|inode| target.as_os_str() == inode.as_str())
        })
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
        let extra: Vec<String> = extra.iter().map(|arg| (*arg).to_owned()).collect();
        let (process, port) = Process::start_on_free_port(
            |port| S3sFs::command(peers, creds, port, &extra, data.path()),
            logs.path(),
            "s3s-fs",
        )
        .await;
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

    fn command(peers: &Peers, creds: &Creds, port: u16, extra: &[String], data: &Path) -> Command {
        let mut command = Command::new(peers.s3s_fs());
        command
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", &creds.access_key])
            .args(["--secret-key", &creds.secret_key])
            .args(extra)
            .arg(data);
        command
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
        let command = S3sFs::command(peers, &self.creds, self.port, &self.extra, self.data.path());
        self.process = Process::spawn(command, &logs, "s3s-fs");
        self.process.wait_listening(self.port, "s3s-fs").await;
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
        let (process, port) = Process::start_on_free_port(
            |port| {
                let mut command = Command::new(peers.moto_server());
                command.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
                command
            },
            logs.path(),
            "moto",
        )
        .await;
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
