//! The proxy server: binds the listeners, composes
//! `RequestLog → [B2NativeLayer →] NotifyLayer → PostObjectLayer → SigV4VerifyLayer → AuthorizeLayer →
//! BucketNotificationsLayer → RecordAccessKey → TransformLayer → ResignLayer → UpstreamClient`, one
//! copy per worker thread (see [`workers`](super::workers)), serves HTTP or HTTPS on
//! the S3 listener, runs the admin listener beside it, and drains in-flight
//! requests on shutdown (then the event dispatcher).
//!
//! The parts live beside it: the request log in
//! [`request_log`](super::request_log), the admin listener in
//! [`admin_listener`](super::admin_listener), TLS in [`tls`](super::tls).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower_layer::Layer;

use super::admin::AdminState;
use super::admin_listener::serve_admin;
use super::bucket_notifications::{self, BucketNotifications, BucketNotificationsLayer};
use super::clients_reload::{ClientTable, Reloader, ReloadingPolicies};
use super::config::{Config, Limits, RemoteUpstream, UpstreamConfig};
use super::embedded::{self, EmbeddedStore};
use super::error::StartError;
use super::metrics::ProxyMetrics;
use super::outbox::EngineDeliverer;
use super::request_log::{RecordAccessKey, RequestLog};
use super::tls::tls_acceptor;
use super::workers;
use crate::authorize::{Authorize, AuthorizeLayer};
use crate::b2native::{B2Native, B2NativeLayer};
use crate::credentials::{ReloadingCredentials, UpstreamCredentials};
use crate::notify::{Dispatcher, DispatcherTask, Notify, NotifyLayer, SharedRules};
use crate::post::{PostObject, PostObjectLayer};
use crate::resign::{Addressing, CredentialsSource, Resign, ResignLayer, Upstream};
use crate::transform::{Transform, TransformLayer, TransformRule};
use crate::upstream::UpstreamClient;
use crate::verify::{SigV4Verify, SigV4VerifyLayer};

/// The authorize → bucket notification API → record identity → re-sign →
/// upstream stack, behind the verifier and the form uploads.
type AuthorizeStack = Authorize<
    BucketNotifications<RecordAccessKey<Transform<Resign<UpstreamClient>>>>,
    ReloadingPolicies,
>;

/// Form uploads (their `PUT` goes to `AuthorizeStack`), else verify → `AuthorizeStack`.
type Stack = PostObject<
    SigV4Verify<AuthorizeStack, ReloadingCredentials>,
    AuthorizeStack,
    ReloadingCredentials,
>;

/// What one worker serves on the S3 listener.
pub(super) type S3Service = RequestLog<B2Native<Notify<Stack>, UpstreamClient>>;

/// A bound, not yet serving, proxy.
pub struct Proxy {
    /// The S3 listener: one socket per worker, sharing the address.
    listeners: Vec<TcpListener>,
    admin: TcpListener,
    tls: Option<TlsAcceptor>,
    /// One stack per worker thread (each with its own upstream pool).
    services: Vec<S3Service>,
    ready_target: String,
    drain_timeout: Duration,
    banner: Option<String>,
    dispatcher: Dispatcher,
    dispatcher_task: DispatcherTask,
    metrics: Arc<ProxyMetrics>,
    limits: Limits,
    admin_state: Arc<AdminState>,
    /// `clients_file`'s reloader, run while serving.
    reloader: Option<Reloader>,
    /// The delivery role, when `[outbox] deliver = true`.
    deliverer: Option<EngineDeliverer>,
    // Held so the embedded store lives as long as the proxy.
    _embedded: Option<EmbeddedStore>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("listen", &self.listeners[0].local_addr().ok())
            .field("workers", &self.listeners.len())
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

        let listeners = workers::bind(config.listen, config.workers)?;
        let admin = bind(config.admin_listen, "admin listen").await?;
        let local = listeners[0]
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
        let outbox = match &config.outbox {
            Some(settings) => Some(settings.connect().await.map_err(StartError::new)?),
            None => None,
        };
        // In fleet mode the dispatcher's sinks publish to the outbox (its
        // spool is then the write-behind buffer); the configured sinks are
        // built only where this process delivers.
        let delivers_here = config.outbox.as_ref().is_none_or(|s| s.deliver);
        let sinks = if delivers_here {
            config
                .notify
                .build_sinks(&region)
                .await
                .map_err(StartError::new)?
        } else {
            Vec::new()
        };
        let (dispatcher_sinks, sinks) = match &outbox {
            Some(outbox) => {
                let mut routes: Vec<(String, Arc<dyn crate::sink::Sink>)> = Vec::new();
                for name in config.notify.sink_names() {
                    let route = outbox
                        .route(name)
                        .map_err(|e| StartError::new(e.to_string()))?;
                    routes.push((name.to_owned(), route));
                }
                (routes, sinks)
            }
            None => (sinks, Vec::new()),
        };
        let (dispatcher, dispatcher_task) = config
            .notify
            .start(default_spool.clone(), dispatcher_sinks)
            .await
            .map_err(StartError::new)?;
        let api_rules = SharedRules::default();
        let mut emitter = config.notify.emitter(dispatcher.clone(), api_rules.clone());
        let mut deliverer = None;
        let mut commit = false;
        if let (Some(outbox), Some(settings)) = (&outbox, &config.outbox) {
            if settings.commit {
                commit = true;
                emitter = emitter.commit_through(outbox.committer(), settings.commit_timeout);
            }
            if settings.deliver {
                deliverer = Some(outbox.deliverer(settings, sinks).map_err(StartError::new)?);
            }
        }
        let (notifications, sinks_json) = bucket_notifications::start(
            &config.notify,
            default_spool,
            api_rules,
            &clients,
            &config.verify,
            config.virtual_host_suffix.as_deref(),
        )?;
        // One emitter for both APIs: the native API's events pass the same
        // rules into the same dispatcher.
        let emitter: Arc<dyn crate::notify::EventEmitter> = Arc::new(emitter);
        let mut notify = NotifyLayer::from_arc(emitter.clone());
        if config.notify.emit_on_body_end() {
            notify = notify.emit_on_body_end();
        }
        if let Some(suffix) = &config.virtual_host_suffix {
            notify = notify.client_virtual_host_suffix(suffix.clone());
        }
        if commit {
            notify = notify.commit_before_answer();
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
            outbox: outbox.clone().zip(
                config
                    .outbox
                    .as_ref()
                    .map(|settings| settings.readyz_max_buffer_fill),
            ),
        });
        let table = ClientTable::new(&clients);
        let reloader = config
            .clients_file
            .map(|file| Reloader::new(file, &clients, &remote.credentials, table.clone()));
        // Built once: every worker shares its token and upload-URL maps.
        let b2_native = b2_native_layer(config.b2_native.as_ref(), emitter, tls.is_some())?;
        let mut services = Vec::with_capacity(config.workers);
        for _ in 0..config.workers {
            let (stack, head_for_size) = stack(
                &remote,
                table.clone(),
                &config.verify,
                config.virtual_host_suffix.clone(),
                metrics.clone(),
                notifications.clone(),
                tls.is_some(),
                &config.transforms,
            )?;
            let mut notify = notify.clone();
            if config.notify.head_for_size() {
                notify = notify.size_lookup(head_for_size);
            }
            services.push(RequestLog::new(
                b2_native.layer(notify.layer(stack)),
                metrics.clone(),
                config.limits.clone(),
                config.virtual_host_suffix.as_deref(),
            ));
        }
        Ok(Proxy {
            listeners,
            admin,
            tls,
            services,
            ready_target,
            drain_timeout: config.drain_timeout,
            banner,
            dispatcher,
            dispatcher_task,
            metrics,
            limits: config.limits,
            admin_state,
            reloader,
            deliverer,
            _embedded: embedded.map(|(store, _)| store),
        })
    }

    /// The S3 listener's address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listeners[0].local_addr().expect("a bound listener")
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
            listeners,
            admin,
            tls,
            services,
            ready_target,
            drain_timeout,
            banner: _,
            dispatcher,
            dispatcher_task,
            metrics,
            limits,
            admin_state,
            reloader,
            deliverer,
            _embedded,
        } = self;
        let reload_task = reloader.map(|reloader| tokio::spawn(reloader.run()));
        let (stop_delivering, delivering_stopped) = tokio::sync::watch::channel(false);
        let deliver_task = deliverer.map(|deliverer| {
            let mut stopped = delivering_stopped.clone();
            tokio::spawn(deliverer.run(async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            }))
        });
        let protocols = Arc::new(workers::Protocols::new(&limits));
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
        let shared = Arc::new(workers::Shared {
            protocols,
            tls,
            connection_permits: Arc::new(tokio::sync::Semaphore::new(limits.max_connections)),
            drain_timeout,
        });
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let mut running = Vec::with_capacity(services.len());
        for (index, (listener, service)) in listeners.into_iter().zip(services).enumerate() {
            let started = listener
                .into_std()
                .map_err(|e| {
                    StartError::new(format!("cannot hand the listener to worker {index}: {e}"))
                })
                .and_then(|listener| {
                    workers::start(index, listener, service, shared.clone(), stopping.clone())
                });
            match started {
                Ok(worker) => running.push(worker),
                Err(error) => tracing::error!("{error}"),
            }
        }
        if running.is_empty() {
            tracing::error!("no worker serves the S3 listener; shutting down");
        } else {
            shutdown.await;
        }
        let _ = stop.send(true);
        let mut releases = Vec::with_capacity(running.len());
        let mut drained = Vec::with_capacity(running.len());
        let mut exited = Vec::with_capacity(running.len());
        for worker in running {
            let _ = worker.stopped_accepting.await;
            releases.push(worker.release);
            drained.push(worker.drained);
            exited.push(worker.exited);
        }
        tracing::info!(
            "shutting down: no new connections; waiting up to {drain_timeout:?} for in-flight requests"
        );
        let mut all_finished = true;
        for worker in drained {
            all_finished &= worker.await.unwrap_or(false);
        }
        if all_finished {
            tracing::info!("all requests finished");
        } else {
            tracing::warn!("drain timeout reached; closing the remaining connections");
        }
        admin_task.abort();
        metrics_upkeep.abort();
        if let Some(task) = reload_task {
            task.abort();
        }
        // Events of the requests that just finished are queued; deliver what
        // can be delivered quickly, the spool keeps the rest for next start.
        let stats = dispatcher.shutdown(Duration::from_secs(5)).await;
        let _ = dispatcher_task.await;
        for release in releases {
            let _ = release.send(());
        }
        for worker in exited {
            let _ = worker.await;
        }
        let _ = stop_delivering.send(true);
        if let Some(task) = deliver_task {
            let _ = task.await;
        }
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

/// `[b2_native]`'s layer over the S3 stack; without the section, one that
/// passes every request on to it.
fn b2_native_layer(
    settings: Option<&super::config::B2NativeSettings>,
    emitter: Arc<dyn crate::notify::EventEmitter>,
    https: bool,
) -> Result<B2NativeLayer<UpstreamClient>, StartError> {
    let client = UpstreamClient::builder()
        .build()
        .map_err(|e| StartError::new(format!("[b2_native]: {e}")))?;
    let Some(settings) = settings else {
        return Ok(B2NativeLayer::new("http://b2-native.invalid", client).disabled());
    };
    tracing::info!(api_url = %settings.api_url, "B2 native API proxy on the S3 listener");
    let mut layer = B2NativeLayer::new(settings.api_url.clone(), client)
        .https(https)
        .max_tokens(settings.max_tokens)
        .max_upload_urls(settings.max_upload_urls)
        .emitter(emitter);
    if let Some(url) = &settings.public_url {
        layer = layer.public_url(url.clone());
    }
    if let Some(url) = &settings.download_url {
        layer = layer.download_url(url.clone());
    }
    Ok(layer)
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

// One argument per config section the stack is built from; a struct of
// them would only restate `Config`.
#[allow(clippy::too_many_arguments)]
fn stack(
    remote: &RemoteUpstream,
    table: ClientTable,
    verify: &super::config::VerifySettings,
    virtual_host_suffix: Option<String>,
    metrics: Arc<ProxyMetrics>,
    notifications: BucketNotificationsLayer,
    secure_transport: bool,
    transforms: &[TransformRule],
) -> Result<(Stack, super::head::HeadForSize), StartError> {
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
    // Clients without a policy keep full access, as before policies existed.
    let post_suffix = virtual_host_suffix.clone();
    let posts_credentials = table.credentials.clone();
    let mut authorize = AuthorizeLayer::new(table.policies)
        .allow_without_policy(true)
        .secure_transport(secure_transport);
    // After authorization, before re-signing: the verifier has checked
    // the plaintext, the re-signer signs the encoded bytes.
    let mut transform = transforms
        .iter()
        .cloned()
        .fold(TransformLayer::new(), TransformLayer::rule);
    if let Some(suffix) = virtual_host_suffix {
        authorize = authorize.client_virtual_host_suffix(suffix.clone());
        transform = transform.client_virtual_host_suffix(suffix.clone());
        resign = resign.client_virtual_host_suffix(suffix);
    }

    // Sizes in events are the client's view: the HEAD goes through the
    // transform, which answers a transformed object's plaintext length.
    let head_for_size = super::head::HeadForSize {
        upstream: transform.layer(resign.layer(client.clone())),
        credentials: table.credentials.clone(),
    };
    let verify_layer = SigV4VerifyLayer::new(table.credentials)
        // The re-signer frames aws-chunked payloads again with these digests
        // instead of hashing every byte a second time.
        .publish_chunk_digests(true)
        .max_clock_skew(verify.max_clock_skew)
        .max_chunk_size(verify.max_chunk_size)
        .payload_hashing(verify.payload_hashing);
    // Authorization before the notification API answers and before
    // anything goes upstream; a form upload's PUT passes it too.
    let verified = authorize.layer(notifications.layer(RecordAccessKey::new(
        transform.layer(resign.layer(client)),
        metrics,
    )));
    let mut post = PostObjectLayer::new(posts_credentials, verified.clone())
        .secure_transport(secure_transport);
    if let Some(suffix) = post_suffix {
        post = post.client_virtual_host_suffix(suffix);
    }
    Ok((post.layer(verify_layer.layer(verified)), head_for_size))
}

/// Completes on SIGTERM or SIGINT (Ctrl-C). SIGHUP is not a shutdown: with
/// `clients_file` it reloads the clients.
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
