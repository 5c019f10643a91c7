//! The `s3tap` binary as a subprocess: started with a scrubbed environment
//! on free ports, its addresses read from its own "s3tap is ready" log line
//! (text or JSON), its stderr and stdout collected, signals sent by pid.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long the binary may take to log that it is ready.
const START_LIMIT: Duration = Duration::from_secs(30);

/// Text collected from one of the child's pipes; `done` once it hit EOF.
#[derive(Default)]
struct Pipe {
    text: Mutex<(String, bool)>,
    changed: Condvar,
}

impl Pipe {
    fn collect(self: &Arc<Pipe>, mut from: impl Read + Send + 'static) -> JoinHandle<()> {
        let pipe = self.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            loop {
                let n = from.read(&mut buf).unwrap_or(0);
                let mut guard = pipe.text.lock().unwrap();
                if n == 0 {
                    guard.1 = true;
                    pipe.changed.notify_all();
                    return;
                }
                guard.0.push_str(&String::from_utf8_lossy(&buf[..n]));
                pipe.changed.notify_all();
            }
        })
    }

    /// Waits until `done(text)` holds or the pipe closes or `limit` passes;
    /// returns whether it held.
    fn wait_for(&self, limit: Duration, done: impl Fn(&str) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        let mut guard = self.text.lock().unwrap();
        loop {
            if done(&guard.0) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if guard.1 || left.is_zero() {
                return false;
            }
            guard = self.changed.wait_timeout(guard, left).unwrap().0;
        }
    }

    fn text(&self) -> String {
        self.text.lock().unwrap().0.clone()
    }
}

/// A running `s3tap`; killed on drop unless it has exited.
pub struct S3tap {
    child: Child,
    stderr: Arc<Pipe>,
    stdout: Arc<Pipe>,
    readers: Vec<JoinHandle<()>>,
    /// `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT`, from the log.
    pub endpoint: String,
    /// The S3 listener.
    pub addr: SocketAddr,
    /// The admin listener.
    pub admin: SocketAddr,
}

/// What to start: flags after the defaults (free ports), and the only
/// environment variables the process sees besides PATH.
#[derive(Default)]
pub struct S3tapCommand {
    args: Vec<OsString>,
    env: Vec<(String, String)>,
}

impl S3tapCommand {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I: IntoIterator<Item = T>, T: Into<OsString>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, name: &str, value: impl AsRef<str>) -> Self {
        self.env.push((name.to_owned(), value.as_ref().to_owned()));
        self
    }

    /// `--config DIR/s3tap.toml` with `toml` written there.
    pub fn config(self, dir: &Path, toml: &str) -> Self {
        let path = dir.join("s3tap.toml");
        std::fs::write(&path, toml).expect("write s3tap.toml");
        self.arg("--config").arg(path)
    }

    /// The binary with this command's flags and environment (and nothing
    /// else but PATH), run in `dir`.
    fn command(&self, dir: &Path) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_s3tap"));
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default());
        // Free ports unless the test names the addresses (flag or variable).
        let named = |flag: &str, var: &str| {
            self.args.iter().any(|a| a == flag) || self.env.iter().any(|(k, _)| k == var)
        };
        if !named("--listen", "S3TAP_LISTEN") {
            command.args(["--listen", "127.0.0.1:0"]);
        }
        if !named("--admin-listen", "S3TAP_ADMIN_LISTEN") {
            command.args(["--admin-listen", "127.0.0.1:0"]);
        }
        if !self.args.iter().any(|a| a == "--data-dir") {
            command.arg("--data-dir").arg(dir.join("data"));
        }
        command
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(dir);
        command
    }

    /// Runs the binary in `dir` expecting it to refuse to start: its exit
    /// code and stderr. Still running after 20 s fails the test.
    pub fn refused(self, dir: &Path) -> (Option<i32>, String) {
        let mut child = self
            .command(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run s3tap");
        let started = std::time::Instant::now();
        while child.try_wait().expect("wait for s3tap").is_none() {
            if started.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("s3tap {:?} started; it should have refused", self.args);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let output = child.wait_with_output().unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    /// Starts the binary in `dir` (its working directory, so relative
    /// default paths such as the spool land there) and waits until it logs
    /// that it is ready.
    pub fn start(self, dir: &Path) -> S3tap {
        let (child, stderr, stdout, readers) = self.spawn_until_logged(dir, "s3tap is ready");
        let fields = ready_fields(&stderr.text());
        let endpoint = fields
            .get("listen")
            .cloned()
            .expect("listen= in the ready line");
        let addr = endpoint
            .rsplit_once("://")
            .map(|(_, a)| a)
            .unwrap_or(&endpoint)
            .parse()
            .expect("listen address");
        let admin = fields
            .get("admin")
            .expect("admin= in the ready line")
            .parse()
            .expect("admin address");
        S3tap {
            child,
            stderr,
            stdout,
            readers,
            endpoint,
            addr,
            admin,
        }
    }
}

impl S3tapCommand {
    /// Starts a role without listeners (`s3tap deliver`) in `dir` and waits
    /// until it logs `needle`; its addresses are unspecified.
    pub fn start_until_logged(self, dir: &Path, needle: &str) -> S3tap {
        let (child, stderr, stdout, readers) = self.spawn_until_logged(dir, needle);
        let nowhere: SocketAddr = "0.0.0.0:0".parse().unwrap();
        S3tap {
            child,
            stderr,
            stdout,
            readers,
            endpoint: String::new(),
            addr: nowhere,
            admin: nowhere,
        }
    }

    fn spawn_until_logged(
        self,
        dir: &Path,
        needle: &str,
    ) -> (Child, Arc<Pipe>, Arc<Pipe>, Vec<JoinHandle<()>>) {
        let mut child = self
            .command(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start s3tap");
        let stderr = Arc::new(Pipe::default());
        let stdout = Arc::new(Pipe::default());
        let readers = vec![
            stderr.collect(child.stderr.take().unwrap()),
            stdout.collect(child.stdout.take().unwrap()),
        ];
        if !stderr.wait_for(START_LIMIT, |text| text.contains(needle)) {
            let _ = child.kill();
            panic!(
                "s3tap did not log {needle:?}; stderr:\n{}\nstdout:\n{}",
                stderr.text(),
                stdout.text()
            );
        }
        (child, stderr, stdout, readers)
    }
}

/// The fields of the "s3tap is ready" line, text (`name=value`) or JSON.
fn ready_fields(log: &str) -> HashMap<String, String> {
    let line = log
        .lines()
        .find(|l| l.contains("s3tap is ready"))
        .expect("ready line");
    if let Some(json) = line.find('{').map(|i| &line[i..]) {
        if let Ok(serde_json::Value::Object(object)) = serde_json::from_str(json) {
            let fields = object
                .get("fields")
                .and_then(|f| f.as_object())
                .expect("fields");
            return fields
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().map_or(v.to_string(), str::to_owned)))
                .collect();
        }
    }
    line.split_whitespace()
        .filter_map(|word| word.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

impl S3tap {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (`TERM`, `INT`, ...) with kill(1).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Waits for the exit, then for both pipes to close, so [`Self::logs`]
    /// is complete afterwards. Panics after `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let started = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                started.elapsed() < limit,
                "s3tap did not exit within {limit:?}; log:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        status
    }

    /// Waits until the log (stderr) contains `needle`; false after `limit`
    /// or once the process closed its stderr without logging it.
    pub fn wait_log(&self, needle: &str, limit: Duration) -> bool {
        self.stderr.wait_for(limit, |text| text.contains(needle))
    }

    /// Everything logged (stderr) so far.
    pub fn logs(&self) -> String {
        self.stderr.text()
    }

    /// Everything printed to stdout so far (banner, JSON-lines events).
    pub fn stdout(&self) -> String {
        self.stdout.text()
    }

    /// Waits until stdout satisfies `done`.
    pub fn wait_stdout(&self, limit: Duration, done: impl Fn(&str) -> bool) -> bool {
        self.stdout.wait_for(limit, done)
    }

    /// A value of the embedded store's startup banner (`access key id`,
    /// `secret access key`, ...).
    pub fn banner(&self, name: &str) -> String {
        assert!(
            self.stdout
                .wait_for(START_LIMIT, |t| t.contains("aws --endpoint-url")),
            "no banner on stdout; log:\n{}",
            self.logs()
        );
        self.stdout()
            .lines()
            .filter_map(|l| l.trim().split_once(':'))
            .find(|(k, _)| k.trim() == name)
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_else(|| panic!("no {name:?} in the banner:\n{}", self.stdout()))
    }

    /// `GET path` on the admin address: (status, body).
    pub async fn admin_get(&self, path: &str) -> (u16, String) {
        http_get(self.admin, path).await
    }
}

impl Drop for S3tap {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A plain HTTP/1.1 `GET` with `Connection: close`: (status, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut answer))
        .await
        .unwrap_or_else(|_| panic!("GET {path} on {addr}: no answer within 20 s"))
        .unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// A test CA and a server certificate it issued for `names` (DNS names or
/// IP addresses), as PEM files in `dir`: (ca.pem, cert.pem, key.pem).
pub fn test_certificate(
    dir: &Path,
    prefix: &str,
    names: &[&str],
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("s3tap {prefix} test CA"));
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign CA");
    let leaf_key = KeyPair::generate().expect("server key");
    let mut leaf_params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .expect("server params");
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, names[0]);
    leaf_params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf = leaf_params
        .signed_by(&leaf_key, &ca_cert, &ca_key)
        .expect("sign server certificate");
    let ca = dir.join(format!("{prefix}-ca.pem"));
    let cert = dir.join(format!("{prefix}-cert.pem"));
    let key = dir.join(format!("{prefix}-key.pem"));
    std::fs::write(&ca, ca_cert.pem()).unwrap();
    std::fs::write(&cert, leaf.pem()).unwrap();
    std::fs::write(&key, leaf_key.serialize_pem()).unwrap();
    (ca, cert, key)
}
