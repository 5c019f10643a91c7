//! An existing axum app with routes of its own (`/api/hello`) that adds an S3
//! endpoint under `/s3`: requests signed with AWS SigV4 are verified, signed
//! again for the real upstream and forwarded, and every operation becomes an
//! event that a [`Dispatcher`] delivers to a sink (JSON lines on stdout
//! here). The three layers of the crate on one route, beside the app's own.
//!
//! ```text
//! UPSTREAM=http://127.0.0.1:9000 UPSTREAM_KEY=... UPSTREAM_SECRET=... \
//!   cargo run --example axum_app --features proxy
//! AWS_ACCESS_KEY_ID=AKIDEXAMPLE AWS_SECRET_ACCESS_KEY=example-secret \
//!   aws --endpoint-url http://127.0.0.1:3000/s3 s3 cp file.txt s3://bucket/file.txt
//! ```

use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use s3tap::credentials::{StaticCredentials, UpstreamCredentials};
use s3tap::notify::{Dispatcher, Event, NotifyLayer};
use s3tap::resign::{ResignLayer, Upstream};
use s3tap::sink::JsonLinesSink;
use s3tap::upstream::UpstreamClient;
use s3tap::verify::SigV4VerifyLayer;
use tower::ServiceBuilder;

/// The key clients sign with.
pub const ACCESS_KEY: &str = "AKIDEXAMPLE";
/// Its secret.
pub const SECRET: &str = "example-secret";
/// Where the S3 routes are mounted.
pub const S3_PREFIX: &str = "/s3";

/// The whole app: plain routes beside the proxied S3 routes. Events go to
/// `dispatcher`'s sink named `events`.
pub fn app(
    upstream: &str,
    upstream_key: UpstreamCredentials,
    dispatcher: Dispatcher,
) -> Result<Router, Box<dyn std::error::Error>> {
    let s3 = ServiceBuilder::new()
        // Outermost, so rejected requests are events too. The emitter only
        // queues: the response never waits for the sink.
        .layer(
            NotifyLayer::new(move |event: Event| {
                if let Err(error) = dispatcher.emit("events", event) {
                    eprintln!("event not queued: {error}");
                }
            })
            .client_path_prefix(S3_PREFIX),
        )
        .layer(
            SigV4VerifyLayer::new(StaticCredentials::new().with_key(ACCESS_KEY, SECRET))
                // The re-signer reuses each verified chunk's digest.
                .publish_chunk_digests(true),
        )
        .layer(
            ResignLayer::new(Upstream::parse(upstream)?)
                .client_path_prefix(S3_PREFIX)
                .sign_with(upstream_key),
        )
        .service(UpstreamClient::new());
    // Clients sign the full path, `/s3/...` included, so the S3 service must
    // see it: `Router::nest` would strip the prefix. The layers read the
    // bucket after it, and the upstream never sees it.
    Ok(Router::new()
        .route("/api/hello", get(|| async { "hello from the app\n" }))
        .route_service(S3_PREFIX, s3.clone())
        .route_service(&format!("{S3_PREFIX}/{{*path}}"), s3))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let upstream = std::env::var("UPSTREAM").unwrap_or_else(|_| "http://127.0.0.1:9000".into());
    let upstream_key = UpstreamCredentials::new(
        std::env::var("UPSTREAM_KEY").unwrap_or_else(|_| ACCESS_KEY.into()),
        std::env::var("UPSTREAM_SECRET").unwrap_or_else(|_| SECRET.into()),
    );
    let spool = std::env::temp_dir().join("s3tap-axum-app-events.redb");
    let (dispatcher, _task) = Dispatcher::builder()
        .sink("events", Arc::new(JsonLinesSink::stdout()))
        .spool(spool, Default::default())
        .build()
        .await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!(
        "listening on http://{}, S3 under {S3_PREFIX} -> {upstream}",
        listener.local_addr()?
    );
    axum::serve(listener, app(&upstream, upstream_key, dispatcher)?).await?;
    Ok(())
}
