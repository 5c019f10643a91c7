//! A loopback webhook receiver the notification tests control: it can be
//! down (port closed, connections cut), answer any status with any headers,
//! or hang; it records every request and the event ids it acknowledged.
#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// One request as the receiver saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    /// Index among all requests this receiver got (from 0).
    pub n: usize,
    pub received: Instant,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// `id` of each event in the JSON-array body.
    pub ids: Vec<String>,
    /// `key` of each event.
    pub keys: Vec<Option<String>>,
}

/// What to answer.
#[derive(Clone, Debug)]
pub enum Reply {
    Status(u16),
    StatusWith(u16, Vec<(&'static str, String)>),
    /// Answer 200 after this long.
    After(Duration),
    /// Never answer.
    Hang,
}

pub type Behaviour = Arc<dyn Fn(&Seen) -> Reply + Send + Sync>;

/// A request and what it was answered.
#[derive(Clone, Debug)]
pub struct Record {
    pub seen: Seen,
    pub status: Option<u16>,
    pub answered: Option<Instant>,
}

#[derive(Default)]
pub struct Log {
    pub records: Mutex<Vec<Record>>,
    /// Event id -> how many times a request carrying it was answered 2xx.
    pub acked: Mutex<HashMap<String, usize>>,
}

impl Log {
    pub fn acked_ids(&self) -> std::collections::HashSet<String> {
        self.acked.lock().unwrap().keys().cloned().collect()
    }

    pub fn acked_total(&self) -> usize {
        self.acked.lock().unwrap().values().sum()
    }

    pub fn records(&self) -> Vec<Record> {
        self.records.lock().unwrap().clone()
    }
}

pub struct Receiver {
    pub addr: SocketAddr,
    pub log: Arc<Log>,
    task: JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    /// Starts on `addr` (port 0 for a free one), answering as `behaviour`
    /// says, recording into `log`.
    pub async fn start_with_log(addr: SocketAddr, behaviour: Behaviour, log: Arc<Log>) -> Receiver {
        let listener = TcpListener::bind(addr).await.expect("bind the receiver");
        let addr = listener.local_addr().unwrap();
        let shared = log.clone();
        let task = tokio::spawn(async move {
            // Dropping the set (when the task is aborted) aborts every
            // connection: "down" means down, not draining.
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let log = shared.clone();
                let behaviour = behaviour.clone();
                connections.spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        let log = log.clone();
                        let behaviour = behaviour.clone();
                        async move { Ok::<_, Infallible>(handle(request, &log, &behaviour).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
                while connections.try_join_next().is_some() {}
            }
        });
        Receiver { addr, log, task }
    }

    pub async fn start(addr: SocketAddr, behaviour: Behaviour) -> Receiver {
        Self::start_with_log(addr, behaviour, Arc::new(Log::default())).await
    }

    /// A receiver that answers 200 to everything.
    pub async fn ok() -> Receiver {
        Self::start(free(), Arc::new(|_: &Seen| Reply::Status(200))).await
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Stops accepting and cuts every open connection.
    pub fn stop(self) {
        self.task.abort();
    }
}

/// 127.0.0.1 with port 0.
pub fn free() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A loopback address nobody listens on (bound, then released).
pub fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

async fn handle(
    request: Request<Incoming>,
    log: &Log,
    behaviour: &Behaviour,
) -> Response<Full<Bytes>> {
    let received = Instant::now();
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let events: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap_or_default();
    let ids = events
        .iter()
        .filter_map(|e| e["id"].as_str().map(str::to_owned))
        .collect();
    let keys = events
        .iter()
        .map(|e| e["key"].as_str().map(str::to_owned))
        .collect();
    let index = {
        let mut records = log.records.lock().unwrap();
        let seen = Seen {
            n: records.len(),
            received,
            headers: parts.headers,
            body,
            ids,
            keys,
        };
        records.push(Record {
            seen,
            status: None,
            answered: None,
        });
        records.len() - 1
    };
    let seen = log.records.lock().unwrap()[index].seen.clone();
    let reply = behaviour(&seen);
    let (status, headers) = match reply {
        Reply::Status(status) => (status, Vec::new()),
        Reply::StatusWith(status, headers) => (status, headers),
        Reply::After(delay) => {
            tokio::time::sleep(delay).await;
            (200, Vec::new())
        }
        Reply::Hang => {
            std::future::pending::<()>().await;
            unreachable!()
        }
    };
    if (200..300).contains(&status) {
        let mut acked = log.acked.lock().unwrap();
        for id in &seen.ids {
            *acked.entry(id.clone()).or_default() += 1;
        }
    }
    {
        let mut records = log.records.lock().unwrap();
        records[index].status = Some(status);
        records[index].answered = Some(Instant::now());
    }
    let mut response = Response::new(Full::new(Bytes::from_static(b"{}")));
    *response.status_mut() = StatusCode::from_u16(status).unwrap();
    for (name, value) in headers {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}

/// Polls `condition` every 10 ms until it holds or `timeout` passes.
pub async fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    condition()
}
