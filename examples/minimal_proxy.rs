//! The s3tap proxy composed by hand: notify, verify the client's signature,
//! re-sign for the upstream, forward, with a Dispatcher delivering each event
//! as a JSON line on stdout. What the `s3tap` binary does, minus
//! configuration, rules, logging and shutdown.
//!
//! ```text
//! UPSTREAM=http://127.0.0.1:9000 cargo run --example minimal_proxy --features proxy
//! ```
//!
//! Clients sign with `AKIDEXAMPLE` / `example-secret`; the upstream must
//! accept the same key (the default `sign_with_client_credentials` mode).

use std::net::SocketAddr;
use std::sync::Arc;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use s3tap::credentials::StaticCredentials;
use s3tap::notify::{Dispatcher, Event, NotifyLayer};
use s3tap::resign::{ResignLayer, Upstream};
use s3tap::sink::JsonLinesSink;
use s3tap::upstream::UpstreamClient;
use s3tap::verify::SigV4VerifyLayer;
use tokio::net::TcpListener;
use tower::ServiceBuilder;

/// The key clients sign with.
pub const ACCESS_KEY: &str = "AKIDEXAMPLE";
/// Its secret.
pub const SECRET: &str = "example-secret";

/// Serves the proxy to `upstream` on `listener`, events to `dispatcher`'s
/// sink named `events`, until the listener fails.
pub async fn serve(
    listener: TcpListener,
    upstream: &str,
    dispatcher: Dispatcher,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let proxy = ServiceBuilder::new()
        // Outermost, so rejections are events too; emit only queues.
        .layer(NotifyLayer::new(move |event: Event| {
            let _ = dispatcher.emit("events", event);
        }))
        // The re-signer reuses each verified chunk's digest instead of
        // hashing the payload again.
        .layer(
            SigV4VerifyLayer::new(StaticCredentials::new().with_key(ACCESS_KEY, SECRET))
                .publish_chunk_digests(true),
        )
        .layer(ResignLayer::new(Upstream::parse(upstream)?))
        .service(UpstreamClient::new());
    loop {
        let (tcp, _) = listener.accept().await?;
        let service = TowerToHyperService::new(proxy.clone());
        tokio::spawn(async move {
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let upstream = std::env::var("UPSTREAM").unwrap_or_else(|_| "http://127.0.0.1:9000".into());
    let (dispatcher, _task) = Dispatcher::builder()
        .sink("events", Arc::new(JsonLinesSink::stdout()))
        .spool(
            std::env::temp_dir().join("s3tap-minimal-proxy-events.redb"),
            Default::default(),
        )
        .build()
        .await?;
    let addr: SocketAddr = "127.0.0.1:8080".parse()?;
    let listener = TcpListener::bind(addr).await?;
    eprintln!("proxying http://{addr} -> {upstream}");
    serve(listener, &upstream, dispatcher).await
}
