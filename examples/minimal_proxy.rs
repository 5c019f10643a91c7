//! The s3tap proxy composed by hand: verify the client's signature, re-sign
//! for the upstream, forward. What the `s3tap` binary does, minus
//! configuration, logging and shutdown.
//!
//! ```text
//! UPSTREAM=http://127.0.0.1:9000 cargo run --example minimal_proxy --features proxy
//! ```
//!
//! Clients sign with `AKIDEXAMPLE` / `example-secret`; the upstream must
//! accept the same key (the default `sign_with_client_credentials` mode).

use std::net::SocketAddr;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use s3tap::credentials::StaticCredentials;
use s3tap::resign::{ResignLayer, Upstream};
use s3tap::upstream::UpstreamClient;
use s3tap::verify::SigV4VerifyLayer;
use tokio::net::TcpListener;
use tower::ServiceBuilder;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let upstream = std::env::var("UPSTREAM").unwrap_or_else(|_| "http://127.0.0.1:9000".into());
    let credentials = StaticCredentials::new().with_key("AKIDEXAMPLE", "example-secret");

    let proxy = ServiceBuilder::new()
        // The re-signer reuses each verified chunk's digest instead of
        // hashing the payload again.
        .layer(SigV4VerifyLayer::new(credentials).publish_chunk_digests(true))
        .layer(ResignLayer::new(Upstream::parse(&upstream)?))
        .service(UpstreamClient::new());

    let addr: SocketAddr = "127.0.0.1:8080".parse()?;
    let listener = TcpListener::bind(addr).await?;
    println!("proxying http://{addr} -> {upstream}");
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
