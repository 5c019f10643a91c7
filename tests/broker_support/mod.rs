//! The message brokers on loopback (NATS, Redis, RabbitMQ, Mosquitto): are
//! they up, and stopping and starting them for restart tests with the
//! commands the machines start them with.
#![allow(dead_code)]

use std::io::Write;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One broker: where it listens and how it is stopped and started.
#[derive(Debug)]
pub struct Broker {
    pub name: &'static str,
    pub port: u16,
    /// The command that starts it, as the machines run it (also named in
    /// the failure message when it is not running).
    pub start: &'static str,
    stop: Stop,
    lock: &'static Mutex<()>,
}

#[derive(Debug)]
enum Stop {
    /// SIGTERM to the process listening on the port (found with `ss`).
    ListenerPid,
    /// SIGTERM to the pid in this file.
    PidFile(&'static str),
    /// A shell command.
    Command(&'static str),
}

static NATS_LOCK: Mutex<()> = Mutex::new(());
static REDIS_LOCK: Mutex<()> = Mutex::new(());
static RABBITMQ_LOCK: Mutex<()> = Mutex::new(());
static MOSQUITTO_LOCK: Mutex<()> = Mutex::new(());

pub static NATS: Broker = Broker {
    name: "NATS",
    port: 4222,
    start: "start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
            -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log",
    stop: Stop::ListenerPid,
    lock: &NATS_LOCK,
};

pub static REDIS: Broker = Broker {
    name: "Redis",
    port: 6379,
    start: "redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save '' \
            --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log",
    stop: Stop::Command("redis-cli -h 127.0.0.1 -p 6379 shutdown nosave"),
    lock: &REDIS_LOCK,
};

/// Stopped with `rabbitmqctl stop_app` (listeners closed, every connection
/// dropped, queues stopped; durable queues and persistent messages are
/// reloaded from disk by `start_app`), which is what clients see of a
/// broker restart, without the Erlang VM's 10-second boot.
pub static RABBITMQ: Broker = Broker {
    name: "RabbitMQ",
    port: 5672,
    start: "rabbitmqctl start_app >/dev/null 2>&1 || rabbitmq-server -detached",
    stop: Stop::Command("rabbitmqctl stop_app"),
    lock: &RABBITMQ_LOCK,
};

pub static MOSQUITTO: Broker = Broker {
    name: "Mosquitto",
    port: 1883,
    start: "mosquitto -d -c /etc/mosquitto/mosquitto.conf",
    stop: Stop::PidFile("/run/mosquitto/mosquitto.pid"),
    lock: &MOSQUITTO_LOCK,
};

/// Whether the peer tests were opted out of (`S3TAP_SKIP_PEERS=1`, refused
/// under `CI=true`); prints a loud line when so.
fn skipped(what: &str) -> bool {
    if std::env::var("S3TAP_SKIP_PEERS").as_deref() != Ok("1") {
        return false;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("S3TAP_SKIP_PEERS=1 is for local runs only; CI must run every peer test");
    }
    let test = std::thread::current()
        .name()
        .unwrap_or("<unnamed test>")
        .to_owned();
    let _ = writeln!(
        std::io::stderr(),
        "\n!!!!!!!! SKIPPED {test}: S3TAP_SKIP_PEERS=1, {what} was NOT exercised !!!!!!!!"
    );
    true
}

/// Held by a test for as long as it uses (and may restart) a broker.
pub struct BrokerLease {
    pub broker: &'static Broker,
    _guard: MutexGuard<'static, ()>,
}

impl Broker {
    /// `host:port`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Takes the broker for this test (one test per broker at a time), or
    /// `None` when peers are opted out. Panics, naming the start command,
    /// when the broker is not running.
    pub fn lease(&'static self) -> Option<BrokerLease> {
        if skipped(self.name) {
            return None;
        }
        let guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        if !self.is_up() {
            panic!(
                "{} is not reachable at {}; start it with: {}",
                self.name,
                self.addr(),
                self.start
            );
        }
        Some(BrokerLease {
            broker: self,
            _guard: guard,
        })
    }

    pub fn is_up(&self) -> bool {
        TcpStream::connect_timeout(
            &self.addr().parse().expect("an address"),
            Duration::from_millis(500),
        )
        .is_ok()
    }

    fn wait(&self, up: bool, within: Duration) {
        let deadline = Instant::now() + within;
        while self.is_up() != up {
            assert!(
                Instant::now() < deadline,
                "{} did not {} within {within:?}",
                self.name,
                if up { "come up" } else { "go down" }
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn stop_now(&self) {
        match self.stop {
            Stop::Command(command) => sh(command),
            Stop::PidFile(path) => {
                let pid = std::fs::read_to_string(path)
                    .unwrap_or_else(|e| panic!("{}: reading {path}: {e}", self.name));
                sh(&format!("kill -TERM {}", pid.trim()));
            }
            Stop::ListenerPid => {
                let pid = listener_pid(self.port).unwrap_or_else(|| {
                    panic!("{}: no process listens on {}", self.name, self.port)
                });
                sh(&format!("kill -TERM {pid}"));
            }
        }
        self.wait(false, Duration::from_secs(30));
    }

    /// Starts the broker with its start command and waits for its port.
    pub fn start_now(&self) {
        if !self.is_up() {
            sh(self.start);
        }
        self.wait(true, Duration::from_secs(60));
    }
}

impl BrokerLease {
    /// Stops the broker; it is started again when the returned guard is
    /// dropped (also when the test fails) unless [`Outage::restart`] did it.
    pub fn stop(&self) -> Outage {
        self.broker.stop_now();
        Outage {
            broker: self.broker,
            running: false,
        }
    }
}

/// A stopped broker.
pub struct Outage {
    broker: &'static Broker,
    running: bool,
}

impl Outage {
    pub fn restart(&mut self) {
        self.broker.start_now();
        self.running = true;
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        if !self.running {
            self.broker.start_now();
        }
    }
}

fn sh(command: &str) {
    let status = Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("running {command}: {e}"));
    assert!(status.success(), "{command}: {status}");
}

/// The pid of the process listening on `port` on loopback.
fn listener_pid(port: u16) -> Option<u32> {
    let out = Command::new("ss")
        .args(["-Hltnp", &format!("sport = :{port}")])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let at = text.find("pid=")? + 4;
    text[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// A name no other run uses (streams, keys, queues, topics).
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}
