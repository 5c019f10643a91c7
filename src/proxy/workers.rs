//! The S3 listener's serving engine: one single-threaded tokio runtime per
//! worker thread, each accepting from the same listening socket with its own
//! copy of the stack (and so its own upstream connection pool).
//!
//! A connection, the requests on it and the upstream connections they use
//! then live on one thread, as in nginx's worker processes: no request hands
//! its bytes to a task on another thread. The multi-threaded runtime that
//! called [`Proxy::serve`](super::server::Proxy::serve) keeps the rest (the
//! admin listener, the dispatcher and its sinks, the outbox).
//!
//! Each worker has its own listening socket on the same address
//! (`SO_REUSEPORT`), so the kernel spreads new connections over the workers;
//! one socket shared by all would let whichever worker wakes first take a
//! whole burst of connections (as `wrk` opens them), leaving the others idle.
//! The address is first bound once without the option, so a second process
//! started on a port in use still fails to bind instead of silently sharing
//! the port.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{oneshot, watch, Semaphore};
use tokio_rustls::TlsAcceptor;

use super::config::Limits;
use super::error::StartError;
use super::server::S3Service;

/// Binds `count` listening sockets to `addr` (its port resolved once when
/// it is 0), one per worker.
pub(super) fn bind(addr: SocketAddr, count: usize) -> Result<Vec<TcpListener>, StartError> {
    let refused =
        |e: std::io::Error| StartError::new(format!("cannot bind the listen address {addr}: {e}"));
    // A plain bind fails on a port anyone holds, with or without
    // `SO_REUSEPORT`; the sockets below then take the same port.
    let addr = std::net::TcpListener::bind(addr)
        .and_then(|probe| probe.local_addr())
        .map_err(refused)?;
    (0..count.max(1))
        .map(|_| {
            let socket = if addr.is_ipv4() {
                TcpSocket::new_v4()
            } else {
                TcpSocket::new_v6()
            }?;
            // As std's and tokio's `bind` do: a restart may bind while the
            // last run's connections are in TIME_WAIT.
            socket.set_reuseaddr(true)?;
            socket.set_reuseport(true)?;
            socket.bind(addr)?;
            socket.listen(1024)
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(refused)
}

/// The HTTP/2 connection preface (RFC 9113, section 3.4), how a client that
/// speaks HTTP/2 over plain TCP without asking first ("prior knowledge")
/// opens. No HTTP/1 request starts with `PRI `.
const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How a connection is served, HTTP/1 or HTTP/2, chosen per connection: by
/// ALPN over TLS, by the client's first bytes over plain TCP.
///
/// hyper's own builders rather than hyper-util's `auto`: the head-size
/// limit is `max_header_size` there, which `auto` does not offer, and
/// without it the limit had to be the whole read buffer's size.
pub(super) struct Protocols {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
    /// `[limits] header_read_timeout`, also the most a plain TCP client may
    /// take to send its first bytes (hyper's own timeout starts once the
    /// protocol is chosen).
    head_timeout: Duration,
}

impl Protocols {
    /// Both protocols under `limits`: a slow or oversized request head
    /// costs a bounded buffer and time.
    pub(super) fn new(limits: &Limits) -> Self {
        let mut http1 = http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_header_size(limits.max_header_bytes)
            .max_buf_size(limits.read_buffer_bytes)
            .max_headers(limits.max_headers);
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
        Protocols {
            http1,
            http2,
            head_timeout: limits.header_read_timeout,
        }
    }

    /// Serves `io` until the client or the shutdown ends it.
    async fn serve<I>(
        &self,
        io: I,
        http2: bool,
        service: TowerToHyperService<S3Service>,
        watcher: hyper_util::server::graceful::Watcher,
    ) -> Result<(), hyper::Error>
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        if http2 {
            let connection = self.http2.serve_connection(TokioIo::new(io), service);
            watcher.watch(connection).await
        } else {
            let connection = self.http1.serve_connection(TokioIo::new(io), service);
            watcher.watch(connection).await
        }
    }
}

/// Whether a plain TCP client opens with the HTTP/2 preface, looked at
/// without consuming it. A client whose first bytes are fewer than four
/// and could still be the preface is looked at again, for up to about
/// 100 ms; after that it is served as HTTP/1, whose head timeout applies.
async fn opens_with_http2_preface(tcp: &TcpStream) -> bool {
    let mut first = [0u8; 4];
    for _ in 0..100 {
        match tcp.peek(&mut first).await {
            Ok(0) | Err(_) => return false,
            Ok(n) if n == first.len() => return first[..] == HTTP2_PREFACE[..n],
            Ok(n) if first[..n] != HTTP2_PREFACE[..n] => return false,
            Ok(_) => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    }
    false
}

/// What every worker shares.
pub(super) struct Shared {
    pub protocols: Arc<Protocols>,
    pub tls: Option<TlsAcceptor>,
    /// `[limits] max_connections`, over all workers.
    pub connection_permits: Arc<Semaphore>,
    pub drain_timeout: Duration,
}

/// A running worker thread, as the serving task sees it.
pub(super) struct Running {
    /// Sent once the worker has closed its copy of the listening socket.
    pub stopped_accepting: oneshot::Receiver<()>,
    /// Sent once its connections have finished (`true`) or the drain
    /// timeout cut them off (`false`).
    pub drained: oneshot::Receiver<bool>,
    /// Lets the thread drop its runtime. Held until the events of the last
    /// requests are handed on: tasks a layer spawned for them (an outbox
    /// commit, say) run on the worker's runtime.
    pub release: oneshot::Sender<()>,
    /// Sent when the runtime is gone.
    pub exited: oneshot::Receiver<()>,
}

/// Starts worker `index` on its own thread, serving `listener` (a duplicate
/// of the S3 listener's socket) with `service` until `stop` turns `true`.
pub(super) fn start(
    index: usize,
    listener: std::net::TcpListener,
    service: S3Service,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) -> Result<Running, StartError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| StartError::new(format!("cannot start worker {index}: {e}")))?;
    let (stopped_tx, stopped_accepting) = oneshot::channel();
    let (drained_tx, drained) = oneshot::channel();
    let (release, released) = oneshot::channel::<()>();
    let (exited_tx, exited) = oneshot::channel();
    std::thread::Builder::new()
        .name(format!("s3tap-worker-{index}"))
        .spawn(move || {
            let finished = runtime.block_on(async move {
                let listener = match TcpListener::from_std(listener) {
                    Ok(listener) => listener,
                    Err(error) => {
                        tracing::error!("worker {index} cannot use the listener: {error}");
                        let _ = stopped_tx.send(());
                        return true;
                    }
                };
                serve(listener, service, &shared, stop, stopped_tx).await
            });
            let _ = drained_tx.send(finished);
            runtime.block_on(async move {
                let _ = released.await;
            });
            drop(runtime);
            let _ = exited_tx.send(());
        })
        .map_err(|e| StartError::new(format!("cannot start worker {index}: {e}")))?;
    Ok(Running {
        stopped_accepting,
        drained,
        release,
        exited,
    })
}

/// Accepts until `stop`, then closes the listener, tells `stopped_accepting`
/// and lets in-flight requests finish for up to the drain timeout. `true`
/// when they all finished.
async fn serve(
    listener: TcpListener,
    service: S3Service,
    shared: &Shared,
    mut stop: watch::Receiver<bool>,
    stopped_accepting: oneshot::Sender<()>,
) -> bool {
    let graceful = GracefulShutdown::new();
    let stopping = async move {
        let _ = stop.wait_for(|stop| *stop).await;
    };
    tokio::pin!(stopping);
    loop {
        let (tcp, peer): (tokio::net::TcpStream, SocketAddr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait a little
                    // rather than spin.
                    tracing::warn!("accept failed: {error}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stopping => break,
        };
        // Beyond the limit this connection waits, unread, for a slot, and
        // this worker accepts no other meanwhile: the rest wait in the listen
        // backlog, so at most one connection per worker is held beyond
        // `max_connections` (taking the permit before `accept` would let a
        // worker with no permit leave a connection its socket received
        // waiting while another worker holds a free one).
        let permit = tokio::select! {
            permit = shared.connection_permits.clone().acquire_owned() => permit.expect("never closed"),
            () = &mut stopping => break,
        };
        let _ = tcp.set_nodelay(true);
        let service = TowerToHyperService::new(service.for_peer(peer));
        let protocols = shared.protocols.clone();
        let watcher = graceful.watcher();
        let tls = shared.tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let result = match tls {
                Some(acceptor) => {
                    let stream =
                        match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp))
                            .await
                        {
                            Ok(Ok(stream)) => stream,
                            Ok(Err(error)) => {
                                tracing::debug!(%peer, "TLS handshake failed: {error}");
                                return;
                            }
                            Err(_) => return,
                        };
                    let http2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                    protocols.serve(stream, http2, service, watcher).await
                }
                None => {
                    let first_bytes = opens_with_http2_preface(&tcp);
                    let Ok(http2) = tokio::time::timeout(protocols.head_timeout, first_bytes).await
                    else {
                        tracing::debug!(%peer, "no request within the head read timeout");
                        return;
                    };
                    protocols.serve(tcp, http2, service, watcher).await
                }
            };
            if let Err(error) = result {
                tracing::debug!(%peer, "connection ended with an error: {error}");
            }
        });
    }
    drop(listener);
    let _ = stopped_accepting.send(());
    tokio::select! {
        () = graceful.shutdown() => true,
        () = tokio::time::sleep(shared.drain_timeout) => false,
    }
}
