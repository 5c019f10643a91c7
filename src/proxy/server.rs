//! The proxy server: binds the listeners, composes
//! `SigV4VerifyLayer → BucketNotificationsLayer → ResignLayer →
//! UpstreamClient` behind a request log, serves HTTP or HTTPS, answers
//! `/healthz`, `/readyz` and `/admin/sinks` on the admin address, and drains
//! in-flight requests on shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Either;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower_layer::Layer;
use tower_service::Service;
use tracing::Instrument;

use super::admin::AdminState;
use super::bucket_notifications::{self, BucketNotifications, BucketNotificationsLayer};
use super::config::{ClientKey, Config, Limits, RemoteUpstream, UpstreamConfig};
use super::embedded::{self, EmbeddedStore};
use super::limits::{ClientBody, CountedBody};
use super::metrics::ProxyMetrics;
use crate::credentials::{Credential, Identity, StaticCredentials, UpstreamCredentials};
use crate::notify::{Dispatcher, DispatcherTask, Notify, NotifyLayer, SharedRules};
use crate::resign::{Addressing, CredentialsSource, Resign, ResignLayer, Upstream};
use crate::s3error::{RequestId, S3Error, S3ErrorCode};
use crate::upstream::UpstreamClient;
use crate::verified::{ClientAddr, Rejection};
use crate::verify::{SigV4Verify, SigV4VerifyLayer, Verified};

use super::error::StartError;

/// The verify → bucket notification API → record identity → re-sign →
/// upstream stack.
type Stack =
    SigV4Verify<BucketNotifications<RecordAccessKey<Resign<UpstreamClient>>>, StaticCredentials>;

/// A bound, not yet serving, proxy.
pub struct Proxy {
    listener: TcpListener,
    admin: TcpListener,
    tls: Option<TlsAcceptor>,
    service: RequestLog<Notify<Stack>>,
    ready_target: String,
    drain_timeout: Duration,
    banner: Option<String>,
    dispatcher: Dispatcher,
    dispatcher_task: DispatcherTask,
    metrics: Arc<ProxyMetrics>,
    limits: Limits,
    admin_state: Arc<AdminState>,
    // Held so the embedded store lives as long as the proxy.
    _embedded: Option<EmbeddedStore>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("listen", &self.listener.local_addr().ok())
            .field("admin", &self.admin.local_addr().ok())
            .field("tls", &self.tls.is_some())
            .field("upstream", &self.ready_target)
            .finish_non_exhaustive()
    }
}

impl Proxy {
    /// Checks TLS files, starts the embedded store when no upstream is
    /// configured, builds the stack and binds both listeners.
    pub async fn bind(config: Config) -> Result<Proxy, StartError> {
        let tls = match &config.tls {
            Some(files) => Some(tls_acceptor(&files.cert, &files.key)?),
            None => None,
        };
        let scheme = if tls.is_some() { "https" } else { "http" };

        let (remote, clients, embedded) = match config.upstream {
            UpstreamConfig::Remote(remote) => (remote, config.clients, None),
            UpstreamConfig::Embedded { data_dir } => {
                let client = embedded::client_key(&data_dir, config.clients.first())?;
                let store = EmbeddedStore::start(&data_dir).await?;
                let endpoint = Upstream::parse(&store.endpoint())
                    .map_err(|e| StartError::new(e.to_string()))?;
                let remote = RemoteUpstream {
                    endpoint,
                    region: None,
                    addressing: Addressing::Path,
                    credentials: {
                        let (id, secret) = store.internal_key();
                        CredentialsSource::Fixed(UpstreamCredentials::new(id, secret))
                    },
                    ca_pem: None,
                    connect_timeout: Duration::from_secs(5),
                    response_timeout: Duration::from_secs(60),
                };
                (remote, vec![client], Some((store, data_dir)))
            }
        };

        let listener = bind(config.listen, "listen").await?;
        let admin = bind(config.admin_listen, "admin listen").await?;
        let local = listener
            .local_addr()
            .map_err(|e| StartError::new(e.to_string()))?;
        let admin_local = admin
            .local_addr()
            .map_err(|e| StartError::new(e.to_string()))?;

        let banner = embedded.as_ref().map(|(_, data_dir)| {
            let client = &clients[0];
            let endpoint = format!("{scheme}://{local}");
            format!(
                "s3tap: embedded S3 store in {dir} (no upstream endpoint configured)\n\
                 \x20 endpoint:          {endpoint}\n\
                 \x20 access key id:     {id}\n\
                 \x20 secret access key: {secret}\n\
                 \x20 region:            us-east-1\n\
                 \x20 admin:             http://{admin_local}/healthz, /readyz\n\
                 try:\n\
                 \x20 AWS_ACCESS_KEY_ID={id} AWS_SECRET_ACCESS_KEY={secret} AWS_DEFAULT_REGION=us-east-1 \
                 aws --endpoint-url {endpoint} s3 ls",
                dir = data_dir.display(),
                id = client.access_key_id,
                secret = client.secret.expose(),
            )
        });

        let ready_target = format!(
            "{}:{}",
            remote.endpoint.host(),
            remote.endpoint.authority().port_u16().unwrap_or(
                if remote.endpoint.scheme() == &http::uri::Scheme::HTTPS {
                    443
                } else {
                    80
                }
            )
        );
        tracing::info!(
            listen = %format!("{scheme}://{local}"),
            admin = %admin.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            upstream = %remote.endpoint,
            credentials = credentials_label(&remote.credentials),
            clients = clients.len(),
            "s3tap is ready"
        );
        let default_spool = match &embedded {
            Some((_, data_dir)) => data_dir.join("spool"),
            None => std::path::PathBuf::from("s3tap-spool"),
        };
        let region = remote
            .region
            .clone()
            .unwrap_or_else(|| remote.endpoint.region());
        let (dispatcher, dispatcher_task) = config
            .notify
            .start(default_spool.clone(), &region)
            .await
            .map_err(StartError::new)?;
        let api_rules = SharedRules::default();
        let emitter = config.notify.emitter(dispatcher.clone(), api_rules.clone());
        let (notifications, sinks_json) = bucket_notifications::start(
            &config.notify,
            default_spool,
            api_rules,
            &clients,
            &config.verify,
            config.virtual_host_suffix.as_deref(),
        )?;
        let mut notify = NotifyLayer::new(emitter);
        if config.notify.emit_on_body_end() {
            notify = notify.emit_on_body_end();
        }
        if let Some(suffix) = &config.virtual_host_suffix {
            notify = notify.client_virtual_host_suffix(suffix.clone());
        }
        let metrics = Arc::new(ProxyMetrics::new());
        let admin_state = Arc::new(AdminState {
            dispatcher: dispatcher.clone(),
            sinks_json: Arc::from(sinks_json),
            token: config.admin_token.clone(),
            rules: config
                .notify
                .rules()
                .iter()
                .map(|rule| (rule.name.clone(), rule.sinks.clone()))
                .collect(),
            readyz_max_spool_fill: config.notify.readyz_max_spool_fill(),
        });
        let (stack, head_for_size) = stack(
            &remote,
            &clients,
            &config.verify,
            config.virtual_host_suffix.clone(),
            metrics.clone(),
            notifications,
        )?;
        if config.notify.head_for_size() {
            notify = notify.size_lookup(head_for_size);
        }
        let service = RequestLog {
            inner: notify.layer(stack),
            peer: None,
            metrics: metrics.clone(),
            limits: config.limits.clone(),
            virtual_host_suffix: config.virtual_host_suffix.map(Arc::from),
        };
        Ok(Proxy {
            listener,
            admin,
            tls,
            service,
            ready_target,
            drain_timeout: config.drain_timeout,
            banner,
            dispatcher,
            dispatcher_task,
            metrics,
            limits: config.limits,
            admin_state,
            _embedded: embedded.map(|(store, _)| store),
        })
    }

    /// The S3 listener's address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener")
    }

    /// The admin listener's address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.local_addr().expect("a bound listener")
    }

    /// What to print at startup for the embedded store: endpoint, client
    /// credentials and an `aws` command line. `None` with a real upstream.
    pub fn banner(&self) -> Option<&str> {
        self.banner.as_deref()
    }

    /// Serves until `shutdown` completes, then stops accepting and lets
    /// in-flight requests finish for up to the drain timeout.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let Proxy {
            listener,
            admin,
            tls,
            service,
            ready_target,
            drain_timeout,
            banner: _,
            dispatcher,
            dispatcher_task,
            metrics,
            limits,
            admin_state,
            _embedded,
        } = self;
        let graceful = GracefulShutdown::new();
        let mut builder = auto::Builder::new(TokioExecutor::new());
        // A slow or oversized request head costs a bounded buffer and time.
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(limits.max_header_bytes)
            .max_headers(limits.max_headers);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(limits.max_header_bytes as u32);
        let admin_task = tokio::spawn(serve_admin(
            admin,
            Arc::from(ready_target),
            metrics.clone(),
            admin_state,
        ));
        let metrics_upkeep = tokio::spawn({
            let metrics = metrics.clone();
            async move {
                let mut every = tokio::time::interval(super::metrics::UPKEEP_INTERVAL);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    every.tick().await;
                    metrics.run_upkeep();
                }
            }
        });
        // Connections beyond the limit wait in the listen backlog until one
        // finishes, instead of exhausting memory or file descriptors.
        let connection_permits = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
        tokio::pin!(shutdown);
        loop {
            let permit = tokio::select! {
                permit = connection_permits.clone().acquire_owned() => permit.expect("never closed"),
                () = &mut shutdown => break,
            };
            let (tcp, peer) = tokio::select! {
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
                () = &mut shutdown => break,
            };
            let _ = tcp.set_nodelay(true);
            let mut service = service.clone();
            service.peer = Some(peer);
            let service = TowerToHyperService::new(service);
            let builder = builder.clone();
            let watcher = graceful.watcher();
            let tls = tls.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let result = match tls {
                    Some(acceptor) => {
                        let stream = match tokio::time::timeout(
                            Duration::from_secs(10),
                            acceptor.accept(tcp),
                        )
                        .await
                        {
                            Ok(Ok(stream)) => stream,
                            Ok(Err(error)) => {
                                tracing::debug!(%peer, "TLS handshake failed: {error}");
                                return;
                            }
                            Err(_) => return,
                        };
                        let connection = builder.serve_connection(TokioIo::new(stream), service);
                        watcher.watch(connection.into_owned()).await
                    }
                    None => {
                        let connection = builder.serve_connection(TokioIo::new(tcp), service);
                        watcher.watch(connection.into_owned()).await
                    }
                };
                if let Err(error) = result {
                    tracing::debug!(%peer, "connection ended with an error: {error}");
                }
            });
        }
        drop(listener);
        tracing::info!(
            "shutting down: no new connections; waiting up to {drain_timeout:?} for in-flight requests"
        );
        tokio::select! {
            () = graceful.shutdown() => tracing::info!("all requests finished"),
            () = tokio::time::sleep(drain_timeout) => {
                tracing::warn!("drain timeout reached; closing the remaining connections");
            }
        }
        admin_task.abort();
        metrics_upkeep.abort();
        // Events of the requests that just finished are queued; deliver what
        // can be delivered quickly, the spool keeps the rest for next start.
        let stats = dispatcher.shutdown(Duration::from_secs(5)).await;
        let _ = dispatcher_task.await;
        tracing::info!(
            delivered = stats.delivered(),
            spooled = stats.spooled,
            "event dispatcher stopped"
        );
    }

    /// The event dispatcher (counters, dead letters).
    pub fn dispatcher(&self) -> &Dispatcher {
        &self.dispatcher
    }
}

/// How the startup line names the signing key: `Client`, `Fixed` or
/// `Mapped`, never the key.
fn credentials_label(credentials: &CredentialsSource) -> &'static str {
    match credentials {
        CredentialsSource::Client => "Client",
        CredentialsSource::Fixed(_) => "Fixed",
        CredentialsSource::Mapped => "Mapped",
    }
}

async fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| StartError::new(format!("cannot bind the {what} address {addr}: {e}")))
}

fn stack(
    remote: &RemoteUpstream,
    clients: &[ClientKey],
    verify: &super::config::VerifySettings,
    virtual_host_suffix: Option<String>,
    metrics: Arc<ProxyMetrics>,
    notifications: BucketNotificationsLayer,
) -> Result<(Stack, super::head::HeadForSize), StartError> {
    let mut store = StaticCredentials::new();
    for client in clients {
        let mut credential = Credential::new(&client.access_key_id, client.secret.clone());
        if let Some(identity) = &client.identity {
            credential = credential.identity(Identity::new(identity.as_str()));
        }
        if let Some((id, secret)) = &client.upstream {
            credential = credential.upstream(UpstreamCredentials::new(id.clone(), secret.clone()));
        }
        store = store.with_credential(client.access_key_id.clone(), credential);
    }

    let mut client = UpstreamClient::builder()
        .connect_timeout(remote.connect_timeout)
        .response_timeout(remote.response_timeout);
    if let Some(pem) = &remote.ca_pem {
        client = client.add_root_certificate(pem.clone());
    }
    let client = client
        .build()
        .map_err(|e| StartError::new(format!("[upstream] ca_file: {e}")))?;

    let mut resign = ResignLayer::new(remote.endpoint.clone());
    if let Some(region) = &remote.region {
        resign = resign.region(region.clone());
    }
    resign = resign
        .addressing(remote.addressing)
        .credentials(remote.credentials.clone());
    if let Some(suffix) = virtual_host_suffix {
        resign = resign.client_virtual_host_suffix(suffix);
    }

    let head_for_size = super::head::HeadForSize {
        upstream: resign.layer(client.clone()),
        credentials: Arc::new(store),
    };
    let verify_layer = SigV4VerifyLayer::new((*head_for_size.credentials).clone())
        // The re-signer frames aws-chunked payloads again with these digests
        // instead of hashing every byte a second time.
        .publish_chunk_digests(true)
        .max_clock_skew(verify.max_clock_skew)
        .max_chunk_size(verify.max_chunk_size)
        .payload_hashing(verify.payload_hashing);
    Ok((
        verify_layer.layer(notifications.layer(RecordAccessKey {
            inner: resign.layer(client),
            metrics,
        })),
        head_for_size,
    ))
}

// ---- request log ------------------------------------------------------------

/// One span per request (request id, method, path, access key id once
/// verified, status, duration) and an `x-amz-request-id` on every response.
#[derive(Clone)]
struct RequestLog<S> {
    inner: S,
    peer: Option<SocketAddr>,
    metrics: Arc<ProxyMetrics>,
    limits: Limits,
    virtual_host_suffix: Option<Arc<str>>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// What the client gets: the stack's response, counted, or the proxy's own
/// S3 error for a request it refused at the door.
type ClientResponse<B> = Response<Either<CountedBody<B>, Full<Bytes>>>;

impl<S, B> Service<Request<Incoming>> for RequestLog<S>
where
    S: Service<Request<ClientBody<Incoming>>, Response = Response<B>, Error = Infallible>,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
{
    type Response = ClientResponse<B>;
    type Error = Infallible;
    type Future = BoxFuture<Result<ClientResponse<B>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Incoming>) -> Self::Future {
        let request_id = RequestId::generate();
        request.extensions_mut().insert(request_id.clone());
        if let Some(peer) = self.peer {
            request.extensions_mut().insert(ClientAddr(peer));
        }
        // The path only: a presigned URL's query holds its signature.
        let span = tracing::info_span!(
            "request",
            request_id = %request_id,
            method = %request.method(),
            path = %request.uri().path(),
            access_key_id = tracing::field::Empty,
            status = tracing::field::Empty,
            duration_ms = tracing::field::Empty,
        );
        let started = Instant::now();
        let operation = operation_label(
            crate::notify::classify(
                request.method(),
                request.uri(),
                request.headers(),
                self.virtual_host_suffix.as_deref(),
            )
            .operation,
        );
        let metrics = self.metrics.clone();
        // botocore (aws-cli v1, boto3) sends `Expect: 100-continue` even for
        // empty uploads; answered without a 100 (there is no body to ask
        // for), it misreads the next response on that connection and waits
        // for its read timeout. Closing such a connection after the answer
        // keeps the client's next request on a fresh one.
        let close_after = request
            .headers()
            .get(http::header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
            && request
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .is_some_and(|v| v.as_bytes() == b"0");
        let target_len = request
            .uri()
            .path_and_query()
            .map_or(0, |p| p.as_str().len());
        if target_len > self.limits.max_uri_bytes {
            let error = S3Error::new(
                S3ErrorCode::InvalidURI,
                format!(
                    "The request target is {target_len} bytes long; this proxy accepts at most {}.",
                    self.limits.max_uri_bytes
                ),
            );
            let is_head = request.method() == http::Method::HEAD;
            let response = error
                .to_response("", request_id.as_str(), is_head)
                .map(|body| Either::Right(Full::new(body)));
            metrics.rejection("proxy", "uri_too_long");
            metrics.request(operation, response.status().as_u16());
            return Box::pin(async move { Ok(response) }.instrument(span));
        }
        let request = request
            .map(|body| ClientBody::new(body, self.limits.body_idle_timeout, metrics.bytes_in()));
        let future = span.in_scope(|| self.inner.call(request));
        Box::pin(
            async move {
                let Ok(response) = future.await;
                let (mut parts, body) = response.into_parts();
                if !parts.headers.contains_key("x-amz-request-id") {
                    if let Ok(value) = http::HeaderValue::from_str(request_id.as_str()) {
                        parts.headers.insert("x-amz-request-id", value);
                    }
                }
                if close_after {
                    parts.headers.insert(
                        http::header::CONNECTION,
                        http::HeaderValue::from_static("close"),
                    );
                }
                if let Some(rejection) = parts.extensions.get::<Rejection>() {
                    metrics.rejection(rejection.layer, rejection.reason);
                }
                metrics.request(operation, parts.status.as_u16());
                let span = tracing::Span::current();
                span.record("status", parts.status.as_u16());
                span.record("duration_ms", started.elapsed().as_millis() as u64);
                // The id the client saw: ours, or the upstream's own.
                let amz_request_id = parts
                    .headers
                    .get("x-amz-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                tracing::info!(amz_request_id, "response");
                let body = Either::Left(CountedBody::new(body, metrics.bytes_out()));
                Ok(Response::from_parts(parts, body))
            }
            .instrument(span),
        )
    }
}

/// A stable label for an operation: its AWS API name.
fn operation_label(operation: crate::notify::S3Operation) -> &'static str {
    operation.as_str()
}

/// Writes the verified access key id into the request's span and times the
/// upstream's answer.
#[derive(Clone)]
struct RecordAccessKey<S> {
    inner: S,
    metrics: Arc<ProxyMetrics>,
}

impl<S, B> Service<Request<B>> for RecordAccessKey<S>
where
    S: Service<Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if let Some(verified) = request.extensions().get::<Verified>() {
            tracing::Span::current().record("access_key_id", verified.access_key_id.as_str());
        }
        let started = Instant::now();
        let metrics = self.metrics.clone();
        let future = self.inner.call(request);
        Box::pin(async move {
            let result = future.await;
            metrics.observe_upstream_latency(started.elapsed().as_secs_f64());
            result
        })
    }
}

// ---- admin ----------------------------------------------------------------

async fn serve_admin(
    listener: TcpListener,
    ready_target: Arc<str>,
    metrics: Arc<ProxyMetrics>,
    state: Arc<AdminState>,
) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let ready_target = ready_target.clone();
        let metrics = metrics.clone();
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let ready_target = ready_target.clone();
                let metrics = metrics.clone();
                let state = state.clone();
                async move {
                    if request.uri().path().starts_with("/admin/") {
                        return Ok::<_, Infallible>(super::admin::handle(&state, request).await);
                    }
                    if request.uri().path() == "/metrics" {
                        let dispatcher = &state.dispatcher;
                        super::admin::record_oldest_undelivered(&metrics, dispatcher).await;
                        let text = metrics.render(&dispatcher.stats());
                        let mut response = Response::new(Full::new(Bytes::from(text)));
                        response.headers_mut().insert(
                            http::header::CONTENT_TYPE,
                            http::HeaderValue::from_static("text/plain; version=0.0.4"),
                        );
                        return Ok::<_, Infallible>(response);
                    }
                    Ok::<_, Infallible>(admin_response(&request, &ready_target, &state).await)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

async fn admin_response(
    request: &Request<Incoming>,
    ready_target: &str,
    state: &AdminState,
) -> Response<Full<Bytes>> {
    let (status, text) = match request.uri().path() {
        "/healthz" => (StatusCode::OK, "ok\n".to_owned()),
        "/readyz" => {
            // A TCP connect is cheap, needs no credentials, and tells whether
            // the upstream can be reached at all.
            let connect = tokio::net::TcpStream::connect(ready_target);
            match tokio::time::timeout(Duration::from_secs(2), connect).await {
                Ok(Ok(_)) => match super::admin::notify_unready(state).as_slice() {
                    [] => (StatusCode::OK, "ready\n".to_owned()),
                    reasons => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("not ready: {}\n", reasons.join("; ")),
                    ),
                },
                Ok(Err(e)) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("upstream {ready_target} unreachable: {e}\n"),
                ),
                Err(_) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("upstream {ready_target} did not accept a connection within 2 s\n"),
                ),
            }
        }
        _ => (StatusCode::NOT_FOUND, "not found\n".to_owned()),
    };
    let mut response = Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    response
}

// ---- TLS ------------------------------------------------------------------

fn tls_acceptor(cert: &std::path::Path, key: &std::path::Path) -> Result<TlsAcceptor, StartError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|iter| iter.collect::<Result<_, _>>())
        .map_err(|e| {
            StartError::new(format!(
                "cannot read the TLS certificate {}: {}",
                cert.display(),
                pem_error(&e)
            ))
        })?;
    if certs.is_empty() {
        return Err(StartError::new(format!(
            "the TLS certificate {} has no CERTIFICATE block",
            cert.display()
        )));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        StartError::new(format!(
            "cannot read the TLS private key {}: {}",
            key.display(),
            pem_error(&e)
        ))
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StartError::new(format!("TLS setup failed: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| {
            StartError::new(format!(
                "the TLS certificate {} and key {} do not work together: {e}",
                cert.display(),
                key.display()
            ))
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn pem_error(error: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    match error {
        Error::Io(e) => e.to_string(),
        Error::NoItemsFound => "no PEM block of the right kind".to_owned(),
        other => format!("not valid PEM ({other:?})"),
    }
}

/// Completes on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received"),
        () = terminate => tracing::info!("SIGTERM received"),
    }
}
