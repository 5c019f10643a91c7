//! s3tap against nginx `proxy_pass` on the same upstream, in the same run
//! (issue 14, goals 1 and 3). Run through `scripts/bench.sh proxy` and
//! `scripts/bench.sh uploads`, which install nginx and wrk when missing.
//!
//! `proxy` (goal 1): signed GETs and PUTs of 1 KiB and 64 KiB, replayed by
//! `wrk` (one thread, a Lua script holding a request signed once) at each
//! concurrency, to nginx `proxy_pass` (keep-alive upstream, HTTP/1.1) and to
//! the `s3tap` binary (verify + re-sign with a fixed upstream key + a B2
//! webhook sink to an nginx `return 204`). The upstream is one nginx serving
//! the object for GET and answering PUT at once. CPU per request comes from
//! `/proc/<pid>/stat` (utime + stime) of the s3tap process and of the nginx
//! proxy's workers, read before and after each run.
//!
//! `uploads` (goal 3): one upload of `BENCH_GIB` GiB per payload mode (hex
//! verified, hex with hashing deferred, signed chunks, signed chunks with a
//! signed trailer, unsigned with a trailer) through s3tap and through the
//! nginx hop, to an in-process sink that drains the body; the proxy
//! process's CPU-seconds per GiB, against `openssl speed -evp sha256`'s CPU
//! for the same bytes and against a hashing relay (read, SHA-256, write;
//! no HTTP), the floor for any proxy that hashes every byte.
//!
//! Knobs: `BENCH_SECONDS` (5), `BENCH_ROUNDS` (3), `BENCH_CONNECTIONS`
//! (`1,32`), `BENCH_CASES` (`get-1k,get-64k,put-1k,put-64k`), `BENCH_GIB`
//! (1), `BENCH_MODES` (all), `BENCH_PERF_SECONDS` (0: with a number,
//! `perf record -g` the s3tap process that long under the c=32 GET load;
//! the data file is kept and its path printed), `BENCH_S3TAP_BIN` (another
//! build of the `s3tap` binary), `BENCH_S3TAP_BEFORE` (a saved earlier
//! build, run beside the current one in the same rounds of `proxy`),
//! `BENCH_READ_BUFFER_BYTES` (s3tap's `[limits] read_buffer_bytes` and the
//! hashing relay's read size in `uploads`; unset: the default),
//! `BENCH_EVENTS_PER_POST` (the B2 sink's `max_events_per_batch`, 1) and
//! `BENCH_WEBHOOK=off` (the events go to a JSON-lines sink writing
//! `/dev/null` instead of the webhook), to split a request's cost between
//! the proxy and the event's delivery.

#[path = "support/cpu.rs"]
mod cpu;
#[path = "../tests/signing/mod.rs"]
mod signing;

use cpu::cpu_seconds;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use aws_sigv4::http_request::SignableBody;
use bytes::Bytes;
use clap::Parser;
use http_body::Frame;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper_util::rt::TokioIo;
use s3tap::sigv4::chunked::{chunk_header, empty_sha256};
use s3tap::sigv4::ChecksumAlgorithm;
use sha2::{Digest, Sha256};
use signing::*;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_listening(port: u16, what: &str) {
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{what} did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------- CPU

fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// What a measured process is: one pid, or nginx's workers under a master.
#[derive(Clone, Copy)]
enum Measured {
    Process(u32),
    Workers(u32),
}

impl Measured {
    fn cpu(self) -> f64 {
        match self {
            Measured::Process(pid) => cpu_seconds(pid),
            Measured::Workers(master) => children(master).into_iter().map(cpu_seconds).sum(),
        }
    }
}

// ---------------------------------------------------------------- nginx

struct Nginx {
    child: Child,
}

impl Nginx {
    fn start(dir: &Path, name: &str, workers: usize, servers: &str) -> Nginx {
        let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("nginx (scripts/bench.sh installs it)");
        let d = dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        let d = d.display();
        let conf = format!(
            "worker_processes {workers};\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  \
             fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  \
             keepalive_requests 10000000;\n  keepalive_timeout 300s;\n{servers}\n}}\n"
        );
        let path = dir.join(format!("{name}.conf"));
        std::fs::write(&path, conf).unwrap();
        let child = Command::new(nginx)
            .arg("-c")
            .arg(&path)
            .arg("-p")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        Nginx { child }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-QUIT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// nginx `proxy_pass` to `upstream`: keep-alive upstream connections,
/// HTTP/1.1, bodies streamed both ways without temp files.
fn nginx_hop(dir: &Path, port: u16, upstream: u16) -> Nginx {
    let servers = format!(
        "  upstream up {{ server 127.0.0.1:{upstream}; keepalive 128; keepalive_requests 10000000; }}\n  \
         server {{\n    listen 127.0.0.1:{port};\n    client_max_body_size 0;\n    \
         proxy_request_buffering off;\n    client_body_buffer_size 128k;\n    proxy_buffers 16 16k;\n    proxy_buffer_size 16k;\n    \
         proxy_max_temp_file_size 0;\n    location / {{\n      proxy_pass http://up;\n      \
         proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n    }}\n  }}"
    );
    let nginx = Nginx::start(dir, "hop", 2, &servers);
    wait_listening(port, "nginx proxy_pass");
    nginx
}

// ---------------------------------------------------------------- hashing relay

/// The floor for any proxy that hashes every payload byte: this bench
/// binary run again as a plain TCP relay (`hashing-relay <listen>
/// <upstream> <read bytes>`) that reads the client in pieces as large as
/// s3tap's HTTP/1 reads, puts every byte through one `sha2::Sha256`, and
/// writes it on; no HTTP, no allocation per piece. Its CPU per GiB, in the same run,
/// is what hashing beside socket I/O costs on this machine, which `openssl
/// speed` (one thread, a buffer in cache, the other core idle) does not
/// show.
struct HashingRelay {
    child: Child,
}

/// `BENCH_READ_BUFFER_BYTES`: s3tap's `[limits] read_buffer_bytes` in this
/// run, unset for its default.
fn read_buffer_bytes() -> Option<usize> {
    std::env::var("BENCH_READ_BUFFER_BYTES")
        .ok()
        .map(|bytes| bytes.parse().expect("BENCH_READ_BUFFER_BYTES: a number"))
}

/// How much s3tap's HTTP/1 listener reads at once with the config this
/// bench gives it: its own reading of that config, so the relay matches
/// s3tap's default without restating it.
fn s3tap_read_buffer_bytes(dir: &Path) -> usize {
    let config = dir.join("read-buffer.toml");
    std::fs::write(&config, s3tap_toml(1, 1, "verify", &dir.join("spool"))).unwrap();
    let args = s3tap::proxy::Args::parse_from(["s3tap", "--config", config.to_str().unwrap()]);
    s3tap::proxy::Config::load(&args, |_| None)
        .expect("the bench's s3tap config")
        .limits
        .read_buffer_bytes
}

impl HashingRelay {
    fn start(upstream: u16, read_bytes: usize) -> (HashingRelay, u16) {
        let listen = free_port();
        let child = Command::new(std::env::current_exe().unwrap())
            .args([
                "hashing-relay",
                &listen.to_string(),
                &upstream.to_string(),
                &read_bytes.to_string(),
            ])
            .stdin(Stdio::null())
            .spawn()
            .expect("start the hashing relay");
        wait_listening(listen, "hashing relay");
        (HashingRelay { child }, listen)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The relay's process: one thread per direction per connection.
    fn serve(listen: u16, upstream: u16, read_bytes: usize) -> ! {
        use std::io::{Read, Write};
        use std::net::{Shutdown, TcpListener, TcpStream};
        let listener = TcpListener::bind(("127.0.0.1", listen)).expect("relay listen");
        loop {
            let Ok((mut client, _)) = listener.accept() else {
                continue;
            };
            let mut server = TcpStream::connect(("127.0.0.1", upstream)).expect("relay upstream");
            for stream in [&client, &server] {
                stream.set_nodelay(true).unwrap();
            }
            let (mut client_back, mut server_back) =
                (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let mut piece = vec![0u8; read_bytes];
                let mut digest = Sha256::new();
                while let Ok(n @ 1..) = client.read(&mut piece) {
                    digest.update(&piece[..n]);
                    if server.write_all(&piece[..n]).is_err() {
                        break;
                    }
                }
                std::hint::black_box(digest.finalize());
                let _ = server.shutdown(Shutdown::Write);
            });
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut server_back, &mut client_back);
                let _ = client_back.shutdown(Shutdown::Write);
            });
        }
    }
}

impl Drop for HashingRelay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Events per webhook POST (`BENCH_EVENTS_PER_POST`, 1 unless set, as B2),
/// or `None` with `BENCH_WEBHOOK=off`: events to a JSON-lines sink writing
/// `/dev/null` instead.
fn events_per_post() -> Option<String> {
    (env_or("BENCH_WEBHOOK", "on") != "off").then(|| env_or("BENCH_EVENTS_PER_POST", "1"))
}

/// s3tap's config in this bench: `upstream` behind it, a B2-format webhook
/// sink to `receiver` as [`events_per_post`] says, `hashing` as `[verify]
/// payload_hashing`, and `BENCH_READ_BUFFER_BYTES` as `[limits]
/// read_buffer_bytes` when set.
fn s3tap_toml(upstream: u16, receiver: u16, hashing: &str, spool: &Path) -> String {
    let sink = match events_per_post() {
        None => "[[sinks]]\nname = \"null\"\ntype = \"jsonl\"\npath = \"/dev/null\"\n\n".to_owned(),
        Some(events) => format!(
            "[[sinks]]\nname = \"hook\"\ntype = \"webhook\"\n\
             url = \"http://127.0.0.1:{receiver}/hook\"\nformat = \"b2\"\n\
             max_events_per_batch = {events}\n\n"
        ),
    };
    format!(
        "[upstream]\nendpoint = \"http://127.0.0.1:{upstream}\"\nregion = \"us-east-1\"\n\
         addressing = \"path\"\ncredentials = \"fixed\"\naccess_key_id = \"UPSTREAMKEY\"\n\
         secret_access_key = \"upstream-secret\"\n\n[verify]\npayload_hashing = \"{hashing}\"\n\n\
         [notify]\nspool_dir = \"{}\"\n\n{sink}\
         [[clients]]\naccess_key_id = \"{ACCESS_KEY}\"\nsecret_access_key = \"{SECRET}\"\n\
         {}",
        spool.display(),
        read_buffer_bytes()
            .map(|bytes| format!("\n[limits]\nread_buffer_bytes = {bytes}\n"))
            .unwrap_or_default()
    )
}

// ---------------------------------------------------------------- s3tap

struct S3tap {
    child: Child,
}

impl S3tap {
    fn start(dir: &Path, name: &str, upstream: u16, receiver: u16, hashing: &str) -> (S3tap, u16) {
        // `BENCH_S3TAP_BIN`: another build of the binary.
        let binary = std::env::var_os("BENCH_S3TAP_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_s3tap")));
        Self::start_binary(&binary, dir, name, upstream, receiver, hashing)
    }

    fn start_binary(
        binary: &Path,
        dir: &Path,
        name: &str,
        upstream: u16,
        receiver: u16,
        hashing: &str,
    ) -> (S3tap, u16) {
        let d = dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        let config = d.join("s3tap.toml");
        std::fs::write(
            &config,
            s3tap_toml(upstream, receiver, hashing, &d.join("spool")),
        )
        .unwrap();
        let listen = free_port();
        let admin = free_port();
        let child = Command::new(binary)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", "warn")
            .arg("--config")
            .arg(&config)
            .arg("--listen")
            .arg(format!("127.0.0.1:{listen}"))
            .arg("--admin-listen")
            .arg(format!("127.0.0.1:{admin}"))
            .arg("--data-dir")
            .arg(d.join("data"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("start the s3tap binary");
        wait_listening(listen, "s3tap");
        (S3tap { child }, listen)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for S3tap {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------- goal 1

fn payload(len: usize) -> Vec<u8> {
    // Printable, so the Lua script can hold it in a long string.
    (0..len).map(|i| b'a' + (i % 26) as u8).collect()
}

/// A wrk script replaying one request signed now for `host`.
fn wrk_script(
    dir: &Path,
    name: &str,
    method: &str,
    host: &str,
    path: &str,
    body: &[u8],
) -> PathBuf {
    let mut request = http::Request::builder()
        .method(method)
        .uri(format!("http://{host}{path}"))
        .header("host", host);
    if method == "PUT" {
        request = request.header("content-length", body.len());
    }
    let mut request = request.body(Bytes::copy_from_slice(body)).unwrap();
    sign_with(
        &mut request,
        SignableBody::Bytes(body),
        &SignOptions {
            time: SystemTime::now(),
            ..SignOptions::default()
        },
    );
    let mut lua = format!("wrk.method = \"{method}\"\n");
    for (name, value) in request.headers() {
        if name == "content-length" {
            continue; // wrk adds it for a body
        }
        // wrk adds its own `Host` unless the table has that exact key.
        let name = if name == "host" {
            "Host"
        } else {
            name.as_str()
        };
        lua.push_str(&format!(
            "wrk.headers[\"{}\"] = \"{}\"\n",
            name,
            value.to_str().unwrap()
        ));
    }
    if !body.is_empty() {
        lua.push_str("wrk.body = [[");
        lua.push_str(std::str::from_utf8(body).unwrap());
        lua.push_str("]]\n");
    }
    let script = dir.join(format!("{name}.lua"));
    std::fs::write(&script, lua).unwrap();
    probe(host, path, &request);
    script
}

/// Sends `request` once on its own connection and fails the bench unless
/// the answer is a success: a run of errors measures nothing.
fn probe(host: &str, path: &str, request: &http::Request<Bytes>) {
    use std::io::{Read, Write};
    let mut head = format!("{} {path} HTTP/1.1\r\n", request.method());
    for (name, value) in request.headers() {
        head.push_str(&format!("{}: {}\r\n", name, value.to_str().unwrap()));
    }
    head.push_str("connection: close\r\n\r\n");
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(request.body()).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    let status = answer.split_whitespace().nth(1).unwrap_or("none");
    assert!(
        status.starts_with('2'),
        "{} {host}{path} answered {}",
        request.method(),
        &answer[..answer.len().min(2000)]
    );
}

struct WrkRun {
    rps: f64,
    errors: u64,
    cpu_us_per_request: f64,
}

fn wrk(
    port: u16,
    path: &str,
    script: &Path,
    connections: usize,
    seconds: u64,
    measured: Measured,
) -> WrkRun {
    let run = |seconds: u64| {
        let output = Command::new("wrk")
            .args(["-t1", &format!("-c{connections}"), &format!("-d{seconds}s")])
            .arg("-s")
            .arg(script)
            .arg(format!("http://127.0.0.1:{port}{path}"))
            .output()
            .expect("run wrk (scripts/bench.sh installs it)");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    run(1); // warm-up: connections, caches
    let cpu_before = measured.cpu();
    let out = run(seconds);
    let cpu = measured.cpu() - cpu_before;
    let rps = out
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    let total: f64 = out
        .lines()
        .find_map(|l| {
            l.split_once(" requests in ")
                .map(|(n, _)| n.trim().to_owned())
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or(0.0);
    let mut errors: u64 = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Non-2xx or 3xx responses:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    if let Some(l) = out.lines().find(|l| l.trim().starts_with("Socket errors:")) {
        errors += l
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|n| n.parse::<u64>().ok())
            .sum::<u64>();
    }
    WrkRun {
        rps,
        errors,
        cpu_us_per_request: cpu * 1e6 / total.max(1.0),
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn spread(values: &[f64]) -> String {
    let min = values.iter().cloned().fold(f64::INFINITY, f64::min);
    let max = values.iter().cloned().fold(0.0, f64::max);
    format!("{min:.0}–{max:.0}")
}

fn goal1() {
    let dir = tempfile::tempdir().unwrap();
    let seconds: u64 = env_or("BENCH_SECONDS", "5").parse().unwrap();
    let rounds: usize = env_or("BENCH_ROUNDS", "3").parse().unwrap();
    let connections: Vec<usize> = env_or("BENCH_CONNECTIONS", "1,32")
        .split(',')
        .map(|c| c.trim().parse().unwrap())
        .collect();
    let cases: Vec<String> = env_or("BENCH_CASES", "get-1k,get-64k,put-1k,put-64k")
        .split(',')
        .map(|c| c.trim().to_owned())
        .collect();
    let perf_seconds: u64 = env_or("BENCH_PERF_SECONDS", "0").parse().unwrap();

    // The upstream: objects for GET, PUT answered at once (its body read
    // and discarded). The webhook receiver: 204 at once.
    let www = dir.path().join("www/bench");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("object-1k"), payload(1024)).unwrap();
    std::fs::write(www.join("object-64k"), payload(64 * 1024)).unwrap();
    let (upstream, receiver, hop_port) = (free_port(), free_port(), free_port());
    let peers = Nginx::start(
        dir.path(),
        "peers",
        2,
        &format!(
            "  server {{\n    listen 127.0.0.1:{upstream};\n    client_max_body_size 0;\n    root {};\n    \
             location / {{ if ($request_method = PUT) {{ return 200; }} }}\n  }}\n  \
             server {{ listen 127.0.0.1:{receiver}; location / {{ return 204; }} }}",
            dir.path().join("www").display()
        ),
    );
    wait_listening(upstream, "nginx upstream");
    wait_listening(receiver, "nginx receiver");
    let hop = nginx_hop(dir.path(), hop_port, upstream);
    let (s3tap, s3tap_port) = S3tap::start(dir.path(), "s3tap", upstream, receiver, "verify");
    // `BENCH_S3TAP_BEFORE`: a saved earlier build, measured in the same
    // rounds (nginx, before, s3tap), so a change is compared in one sitting.
    let before = std::env::var_os("BENCH_S3TAP_BEFORE").map(|binary| {
        S3tap::start_binary(
            Path::new(&binary),
            dir.path(),
            "before",
            upstream,
            receiver,
            "verify",
        )
    });

    struct Row {
        case: String,
        c: usize,
        before_rps: Vec<f64>,
        before_cpu: Vec<f64>,
        nginx_rps: Vec<f64>,
        s3tap_rps: Vec<f64>,
        nginx_cpu: Vec<f64>,
        s3tap_cpu: Vec<f64>,
        errors: u64,
    }
    let mut rows = Vec::new();
    for case in &cases {
        let (method, size) = case.split_once('-').expect("case: get-1k, put-64k, ...");
        let method = method.to_ascii_uppercase();
        let bytes = match size {
            "1k" => 1024,
            "64k" => 64 * 1024,
            other => panic!("size {other}: 1k or 64k"),
        };
        let path = format!("/bench/object-{size}");
        let body = if method == "PUT" {
            payload(bytes)
        } else {
            Vec::new()
        };
        let hop_script = wrk_script(
            dir.path(),
            &format!("{case}-nginx"),
            &method,
            &format!("127.0.0.1:{hop_port}"),
            &path,
            &body,
        );
        let s3tap_script = wrk_script(
            dir.path(),
            &format!("{case}-s3tap"),
            &method,
            &format!("127.0.0.1:{s3tap_port}"),
            &path,
            &body,
        );
        let before_script = before.as_ref().map(|(_, port)| {
            wrk_script(
                dir.path(),
                &format!("{case}-before"),
                &method,
                &format!("127.0.0.1:{port}"),
                &path,
                &body,
            )
        });
        for &c in &connections {
            let mut row = Row {
                case: case.clone(),
                c,
                before_rps: vec![],
                before_cpu: vec![],
                nginx_rps: vec![],
                s3tap_rps: vec![],
                nginx_cpu: vec![],
                s3tap_cpu: vec![],
                errors: 0,
            };
            for _ in 0..rounds {
                let n = wrk(
                    hop_port,
                    &path,
                    &hop_script,
                    c,
                    seconds,
                    Measured::Workers(hop.pid()),
                );
                if let (Some((before, port)), Some(script)) = (&before, &before_script) {
                    let b = wrk(
                        *port,
                        &path,
                        script,
                        c,
                        seconds,
                        Measured::Process(before.pid()),
                    );
                    eprintln!(
                        "{case} c={c}: before {:.0} req/s {:.1} µs/req (errors {})",
                        b.rps, b.cpu_us_per_request, b.errors
                    );
                    row.before_rps.push(b.rps);
                    row.before_cpu.push(b.cpu_us_per_request);
                    row.errors += b.errors;
                }
                let s = wrk(
                    s3tap_port,
                    &path,
                    &s3tap_script,
                    c,
                    seconds,
                    Measured::Process(s3tap.pid()),
                );
                eprintln!(
                    "{case} c={c}: nginx {:.0} req/s {:.1} µs/req, s3tap {:.0} req/s {:.1} µs/req (errors {}/{})",
                    n.rps, n.cpu_us_per_request, s.rps, s.cpu_us_per_request, n.errors, s.errors
                );
                row.nginx_rps.push(n.rps);
                row.s3tap_rps.push(s.rps);
                row.nginx_cpu.push(n.cpu_us_per_request);
                row.s3tap_cpu.push(s.cpu_us_per_request);
                row.errors += n.errors + s.errors;
            }
            rows.push(row);
        }
    }

    if perf_seconds > 0 {
        if let Some((before, port)) = &before {
            profile(dir.path(), "before", before.pid(), *port, perf_seconds);
        }
        profile(dir.path(), "after", s3tap.pid(), s3tap_port, perf_seconds);
    }
    drop(before);
    drop(s3tap);
    drop(hop);
    drop(peers);

    let events = match events_per_post() {
        None => "events to a JSON-lines sink on /dev/null".to_owned(),
        Some(events) => format!("B2 webhook, {events} event(s) per POST"),
    };
    println!(
        "\n## s3tap vs nginx proxy_pass (wrk -t1, {seconds} s per run, median of {rounds} rounds; spread in brackets; {events})\n"
    );
    println!("| case | c | nginx req/s | s3tap req/s | ratio | nginx CPU µs/req | s3tap CPU µs/req | ratio | errors | missed |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for row in &mut rows {
        let nrps = median(&mut row.nginx_rps.clone());
        let srps = median(&mut row.s3tap_rps.clone());
        let ncpu = median(&mut row.nginx_cpu.clone());
        let scpu = median(&mut row.s3tap_cpu.clone());
        let rps_ratio = srps / nrps.max(1.0);
        let cpu_ratio = scpu / ncpu.max(1e-9);
        let mut missed = Vec::new();
        if rps_ratio < 0.9 {
            missed.push(format!("req/s {rps_ratio:.2}× < 0.9×"));
        }
        if cpu_ratio > 1.3 {
            missed.push(format!("CPU {cpu_ratio:.2}× > 1.3×"));
        }
        let cpus = |v: &mut Vec<f64>| {
            let min = v.iter().cloned().fold(f64::INFINITY, f64::min);
            let max = v.iter().cloned().fold(0.0, f64::max);
            format!("{:.1} ({min:.1}–{max:.1})", median(v))
        };
        println!(
            "| {} | {} | {nrps:.0} ({}) | {srps:.0} ({}) | {rps_ratio:.2} | {} | {} | {cpu_ratio:.2} | {} | {} |",
            row.case,
            row.c,
            spread(&row.nginx_rps),
            spread(&row.s3tap_rps),
            cpus(&mut row.nginx_cpu),
            cpus(&mut row.s3tap_cpu),
            row.errors,
            if missed.is_empty() {
                "—".to_owned()
            } else {
                missed.join("; ")
            }
        );
    }
    if rows.iter().any(|r| !r.before_rps.is_empty()) {
        println!("\n### Before (BENCH_S3TAP_BEFORE) and after, same rounds\n");
        println!("| case | c | before req/s | after req/s | before / nginx | after / nginx | before CPU µs/req | after CPU µs/req | after / before CPU |");
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for row in &rows {
            let nrps = median(&mut row.nginx_rps.clone());
            let brps = median(&mut row.before_rps.clone());
            let srps = median(&mut row.s3tap_rps.clone());
            let bcpu = median(&mut row.before_cpu.clone());
            let scpu = median(&mut row.s3tap_cpu.clone());
            println!(
                "| {} | {} | {brps:.0} ({}) | {srps:.0} ({}) | {:.2} | {:.2} | {bcpu:.1} | {scpu:.1} | {:.2} |",
                row.case,
                row.c,
                spread(&row.before_rps),
                spread(&row.s3tap_rps),
                brps / nrps.max(1.0),
                srps / nrps.max(1.0),
                scpu / bcpu.max(1e-9)
            );
        }
    }
}

/// `perf record -g` of one s3tap process under the c=32 1 KiB GET load.
fn profile(dir: &Path, name: &str, pid: u32, port: u16, seconds: u64) {
    let path = "/bench/object-1k";
    let script = wrk_script(
        dir,
        &format!("perf-{name}"),
        "GET",
        &format!("127.0.0.1:{port}"),
        path,
        &[],
    );
    let data = std::env::temp_dir().join(format!("s3tap-proxy-{name}.perf.data"));
    let mut perf = Command::new("perf")
        .args(["record", "-g", "-F", "999", "-o"])
        .arg(&data)
        .args(["-p", &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("perf (scripts/bench.sh installs linux-perf)");
    std::thread::sleep(Duration::from_millis(500));
    let run = wrk(port, path, &script, 32, seconds, Measured::Process(pid));
    let _ = Command::new("kill")
        .args(["-INT", &perf.id().to_string()])
        .status();
    let _ = perf.wait();
    eprintln!(
        "perf ({name}): get-1k c=32 under perf: {:.0} req/s, {:.1} µs/req; data in {}",
        run.rps,
        run.cpu_us_per_request,
        data.display()
    );
}

// ---------------------------------------------------------------- goal 3

/// Incompressible-looking bytes, the same block for every chunk: the
/// client signs each chunk with one precomputed digest.
static BLOCK: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut out = Vec::with_capacity(64 * 1024);
    while out.len() < 64 * 1024 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out
});

#[derive(Clone, Copy, Debug, PartialEq)]
enum UploadMode {
    Hex,
    HexDeferred,
    SignedChunks,
    SignedTrailer,
    UnsignedTrailer,
}

impl UploadMode {
    fn name(self) -> &'static str {
        match self {
            UploadMode::Hex => "hex",
            UploadMode::HexDeferred => "hex-deferred",
            UploadMode::SignedChunks => "signed-chunks",
            UploadMode::SignedTrailer => "signed-trailer",
            UploadMode::UnsignedTrailer => "unsigned-trailer",
        }
    }

    /// Whether s3tap hashes every payload byte with SHA-256 in this mode.
    fn hashes(self) -> bool {
        matches!(
            self,
            UploadMode::Hex | UploadMode::SignedChunks | UploadMode::SignedTrailer
        )
    }
}

type Frames = Box<dyn Iterator<Item = Bytes> + Send>;

/// The signed head and a lazy body of `blocks` 64 KiB blocks in `mode`,
/// for `host` (the client signs the proxy's host), signed now.
fn upload(mode: UploadMode, host: &str, blocks: u64) -> (http::Request<Bytes>, Frames) {
    let block = Bytes::from_static(BLOCK.as_slice());
    let block_digest: [u8; 32] = Sha256::digest(block.as_ref()).into();
    let total = blocks * block.len() as u64;
    let now = SystemTime::now();
    let options = SignOptions {
        time: now,
        ..Default::default()
    };
    let uri = format!("http://{host}/bench/upload.bin");
    match mode {
        UploadMode::Hex | UploadMode::HexDeferred => {
            let mut request = http::Request::put(uri)
                .header("host", host)
                .header("content-length", total)
                .body(Bytes::new())
                .unwrap();
            let mut hasher = Sha256::new();
            for _ in 0..blocks {
                hasher.update(&block);
            }
            sign_with(
                &mut request,
                SignableBody::Precomputed(hex::encode(hasher.finalize())),
                &options,
            );
            (request, Box::new((0..blocks).map(move |_| block.clone())))
        }
        UploadMode::SignedChunks | UploadMode::SignedTrailer | UploadMode::UnsignedTrailer => {
            let signed = mode != UploadMode::UnsignedTrailer;
            let trailer = mode != UploadMode::SignedChunks;
            let hash = match mode {
                UploadMode::SignedChunks => "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
                UploadMode::SignedTrailer => "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
                _ => "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
            };
            let algorithm = ChecksumAlgorithm::Crc32c;
            let mut builder = http::Request::put(uri)
                .header("host", host)
                .header("content-encoding", "aws-chunked")
                .header("x-amz-decoded-content-length", total)
                .header("x-amz-content-sha256", hash);
            if trailer {
                builder = builder.header("x-amz-trailer", algorithm.header_name());
            }
            let mut request = builder.body(Bytes::new()).unwrap();
            sign_with(
                &mut request,
                match mode {
                    UploadMode::SignedTrailer => SignableBody::StreamingSignedPayloadTrailer,
                    UploadMode::UnsignedTrailer => SignableBody::StreamingUnsignedPayloadTrailer,
                    _ => SignableBody::Precomputed(hash.to_owned()),
                },
                &options,
            );
            let mut signer = chunk_signer_seeded_by(&request, &options);
            let trailer_line = trailer.then(|| {
                let mut sum = algorithm.hasher();
                for _ in 0..blocks {
                    sum.update(&block);
                }
                format!("{}:{}", algorithm.header_name(), sum.finalize_base64())
            });
            let mut remaining = blocks;
            let mut done = false;
            let frames = std::iter::from_fn(move || {
                if remaining > 0 {
                    remaining -= 1;
                    let signature = signed.then(|| signer.next_chunk(&block_digest));
                    let mut framed = Vec::with_capacity(block.len() + 100);
                    framed.extend_from_slice(&chunk_header(block.len() as u64, signature.as_ref()));
                    framed.extend_from_slice(&block);
                    framed.extend_from_slice(b"\r\n");
                    return Some(Bytes::from(framed));
                }
                if done {
                    return None;
                }
                done = true;
                // The final chunk, then the trailer (signed or not).
                let signature = signed.then(|| signer.next_chunk(&empty_sha256()));
                let mut tail = chunk_header(0, signature.as_ref()).to_vec();
                if let Some(line) = &trailer_line {
                    tail.extend_from_slice(line.as_bytes());
                    tail.extend_from_slice(b"\r\n");
                    if signed {
                        let signature = signer.trailer(format!("{line}\n").as_bytes());
                        tail.extend_from_slice(
                            format!("x-amz-trailer-signature:{}\r\n", hex::encode(signature))
                                .as_bytes(),
                        );
                    }
                }
                tail.extend_from_slice(b"\r\n");
                Some(Bytes::from(tail))
            });
            let wire_len = s3tap::sigv4::chunked::encoded_length(
                total,
                BLOCK.len() as u64,
                signed,
                trailer_len(mode, algorithm),
            );
            request
                .headers_mut()
                .insert("content-length", wire_len.into());
            (request, Box::new(frames))
        }
    }
}

/// Bytes after the final chunk's header: the trailer lines and the blank
/// line that ends them.
fn trailer_len(mode: UploadMode, algorithm: ChecksumAlgorithm) -> Option<u64> {
    (mode != UploadMode::SignedChunks).then(|| {
        let line = algorithm.header_name().len() + 1 + algorithm.checksum_base64(b"").len() + 2;
        let signature = if mode == UploadMode::SignedTrailer {
            "x-amz-trailer-signature:".len() + 64 + 2
        } else {
            0
        };
        (line + signature + 2) as u64
    })
}

/// An upstream that reads every body to its end and answers 200.
async fn sink() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    |request: http::Request<hyper::body::Incoming>| async move {
                        let mut body = request.into_body();
                        while let Some(frame) = body.frame().await {
                            if frame.is_err() {
                                break;
                            }
                        }
                        Ok::<_, Infallible>(http::Response::new(Empty::<Bytes>::new()))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    port
}

/// Sends one upload to `port`; returns wall seconds and whether it
/// succeeded.
async fn send(port: u16, request: http::Request<Bytes>, frames: Frames) -> (f64, http::StatusCode) {
    let address: SocketAddr = ([127, 0, 0, 1], port).into();
    let stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let body = StreamBody::new(futures_util::stream::iter(
        frames.map(|b| Ok::<_, Infallible>(Frame::data(b))),
    ));
    let (mut parts, _) = request.into_parts();
    parts.uri = parts
        .uri
        .path_and_query()
        .unwrap()
        .as_str()
        .parse()
        .unwrap();
    let started = Instant::now();
    let response = sender
        .send_request(http::Request::from_parts(parts, body))
        .await
        .unwrap();
    let status = response.status();
    let _ = response.into_body().collect().await;
    (started.elapsed().as_secs_f64(), status)
}

fn vm_hwm_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// `openssl speed -evp sha256` over 64 KiB blocks: CPU seconds per GiB.
fn openssl_sha256_cpu_per_gib() -> f64 {
    let output = Command::new("openssl")
        .args([
            "speed", "-evp", "sha256", "-bytes", "65536", "-seconds", "3",
        ])
        .stderr(Stdio::null())
        .output()
        .expect("openssl");
    let text = String::from_utf8_lossy(&output.stdout);
    let kilobytes: f64 = text
        .lines()
        .rev()
        .find(|l| l.starts_with("sha256") || l.starts_with("SHA256"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.trim_end_matches('k').parse().ok())
        .expect("openssl speed output");
    (1u64 << 30) as f64 / (kilobytes * 1000.0)
}

async fn goal3() {
    let dir = tempfile::tempdir().unwrap();
    let gib: f64 = env_or("BENCH_GIB", "1").parse().unwrap();
    let blocks = (gib * 16384.0) as u64; // 64 KiB blocks
    let gib = blocks as f64 / 16384.0;
    let modes: Vec<UploadMode> = {
        let all = [
            UploadMode::Hex,
            UploadMode::HexDeferred,
            UploadMode::SignedChunks,
            UploadMode::SignedTrailer,
            UploadMode::UnsignedTrailer,
        ];
        let wanted = env_or("BENCH_MODES", "");
        all.into_iter()
            .filter(|m| wanted.is_empty() || wanted.split(',').any(|w| w.trim() == m.name()))
            .collect()
    };
    let sha_cpu = openssl_sha256_cpu_per_gib();
    let upstream = sink().await;
    let receiver = free_port();
    let hop_port = free_port();
    let peers = Nginx::start(
        dir.path(),
        "receiver",
        1,
        &format!("  server {{ listen 127.0.0.1:{receiver}; location / {{ return 204; }} }}"),
    );
    wait_listening(receiver, "nginx receiver");
    let hop = nginx_hop(dir.path(), hop_port, upstream);
    let read_bytes = s3tap_read_buffer_bytes(dir.path());
    let (relay, relay_port) = HashingRelay::start(upstream, read_bytes);
    let (verify, verify_port) = S3tap::start(dir.path(), "verify", upstream, receiver, "verify");
    let (defer, defer_port) = S3tap::start(dir.path(), "defer", upstream, receiver, "defer");

    struct Row {
        mode: UploadMode,
        nginx_cpu: f64,
        nginx_wall: f64,
        s3tap_cpu: f64,
        s3tap_wall: f64,
        // The hashing relay's CPU per GiB and wall seconds, in modes that hash.
        relay: Option<(f64, f64)>,
        hwm_growth_kib: u64,
        ok: bool,
    }
    let mut rows = Vec::new();
    for mode in modes {
        let (s3tap, port) = if mode == UploadMode::HexDeferred {
            (&defer, defer_port)
        } else {
            (&verify, verify_port)
        };
        // The nginx hop, same bytes.
        let (request, frames) = upload(mode, &format!("127.0.0.1:{hop_port}"), blocks);
        let measured = Measured::Workers(hop.pid());
        let before = measured.cpu();
        let (nginx_wall, nginx_status) = send(hop_port, request, frames).await;
        let nginx_cpu = measured.cpu() - before;
        // The hashing relay, same bytes, where s3tap hashes them.
        let relay_cost = if mode.hashes() {
            let (request, frames) = upload(mode, &format!("127.0.0.1:{relay_port}"), blocks);
            let measured = Measured::Process(relay.pid());
            let before = measured.cpu();
            let (wall, status) = send(relay_port, request, frames).await;
            assert!(status.is_success(), "the hashing relay's upload: {status}");
            Some(((measured.cpu() - before) / gib, wall))
        } else {
            None
        };
        // s3tap.
        let (request, frames) = upload(mode, &format!("127.0.0.1:{port}"), blocks);
        // Writing 5 to clear_refs resets VmHWM to the current RSS.
        let _ = std::fs::write(format!("/proc/{}/clear_refs", s3tap.pid()), "5");
        let hwm_before = vm_hwm_kib(s3tap.pid());
        let measured = Measured::Process(s3tap.pid());
        let before = measured.cpu();
        let (s3tap_wall, status) = send(port, request, frames).await;
        let s3tap_cpu = measured.cpu() - before;
        let hwm_growth_kib = vm_hwm_kib(s3tap.pid()).saturating_sub(hwm_before);
        if let Some((cpu, wall)) = relay_cost {
            eprintln!(
                "{}: hashing relay {cpu:.3} CPU s/GiB {wall:.2} s",
                mode.name()
            );
        }
        eprintln!(
            "{}: nginx {nginx_status} {:.3} CPU s/GiB {:.2} s; s3tap {status} {:.3} CPU s/GiB {:.2} s, VmHWM +{hwm_growth_kib} KiB",
            mode.name(),
            nginx_cpu / gib,
            nginx_wall,
            s3tap_cpu / gib,
            s3tap_wall
        );
        rows.push(Row {
            mode,
            nginx_cpu: nginx_cpu / gib,
            nginx_wall,
            s3tap_cpu: s3tap_cpu / gib,
            s3tap_wall,
            relay: relay_cost,
            hwm_growth_kib,
            ok: status.is_success() && nginx_status.is_success(),
        });
    }
    drop(verify);
    drop(defer);
    drop(hop);
    drop(relay);
    drop(peers);
    println!(
        "\n## Large uploads: proxy CPU-seconds per GiB ({gib} GiB per upload, 64 KiB chunks; \
         reads of up to {read_bytes} bytes in s3tap and the relay; \
         `openssl speed -evp sha256`: {sha_cpu:.3} CPU s/GiB)\n"
    );
    println!("| mode | nginx CPU s/GiB | s3tap CPU s/GiB | goal (SHA-256 if hashed + 1.0× nginx) | s3tap − nginx − SHA-256 | hashing relay CPU s/GiB | s3tap / relay | nginx MiB/s | s3tap MiB/s | relay MiB/s | s3tap VmHWM growth | status | missed |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|");
    for row in rows {
        let sha = if row.mode.hashes() { sha_cpu } else { 0.0 };
        let goal = sha + row.nginx_cpu;
        let excess = row.s3tap_cpu - row.nginx_cpu - sha;
        println!(
            "| {} | {:.3} | {:.3} | {goal:.3} | {excess:+.3} | {} | {} | {:.0} | {:.0} | {} | {} KiB | {} | {} |",
            row.mode.name(),
            row.nginx_cpu,
            row.s3tap_cpu,
            row.relay
                .map_or("—".to_owned(), |(cpu, _)| format!("{cpu:.3}")),
            row.relay
                .map_or("—".to_owned(), |(cpu, _)| format!("{:.2}", row.s3tap_cpu / cpu)),
            gib * 1024.0 / row.nginx_wall,
            gib * 1024.0 / row.s3tap_wall,
            row.relay
                .map_or("—".to_owned(), |(_, wall)| format!("{:.0}", gib * 1024.0 / wall)),
            row.hwm_growth_kib,
            if row.ok { "ok" } else { "**failed**" },
            if row.s3tap_cpu <= goal {
                "—".to_owned()
            } else {
                format!(
                    "by {:.3} s/GiB ({:.2}× the goal)",
                    row.s3tap_cpu - goal,
                    row.s3tap_cpu / goal
                )
            }
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("hashing-relay") {
        let number = |i: usize| -> usize {
            args[i]
                .parse()
                .expect("hashing-relay <listen> <upstream> <read bytes>")
        };
        HashingRelay::serve(number(2) as u16, number(3) as u16, number(4));
    }
    let which = args
        .iter()
        .skip(1)
        .find(|a| *a == "proxy" || *a == "uploads")
        .map_or("proxy", String::as_str);
    if which == "proxy" {
        goal1();
    } else {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(goal3());
    }
}
