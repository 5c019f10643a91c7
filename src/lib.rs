//! s3tap: tower middleware and a proxy for S3-compatible storage (Backblaze
//! B2 first, any S3 API in general).
//!
//! A request to the proxy passes five layers, each usable alone in any tower
//! or axum stack:
//!
//! | layer | does | feature |
//! |---|---|---|
//! | [`notify::NotifyLayer`] | classifies the S3 operation and hands an [`Event`](notify::Event) to an emitter when the response ends, never delaying it | `notify` |
//! | [`verify::SigV4VerifyLayer`] | checks the client's AWS Signature V4 (headers, presigned URLs, every payload mode, aws-chunked with trailers) and gives the inner service a verified, decoded body | always |
//! | [`authorize::AuthorizeLayer`] | refuses what the verified client's IAM-style policy does not allow, before anything goes further | `authorize` |
//! | [`post::PostObjectLayer`] | accepts browser form uploads (presigned POST): checks the policy's signature and conditions, then hands on a verified `PUT` of the file | `post` |
//! | [`resign::ResignLayer`] | rewrites the request for the real upstream and signs it again, in the payload mode the client chose | always |
//! | [`upstream::UpstreamClient`] | forwards to the upstream over HTTP(S), answering S3 errors when it cannot | `upstream` |
//!
//! Events go to a [`Dispatcher`](notify::Dispatcher) (feature `dispatcher`),
//! which batches, retries and spools them (redb) so that none is lost, and
//! delivers them through a [`Sink`](sink::Sink): a webhook, JSON lines,
//! Kafka, SNS/SQS, NATS, Redis, RabbitMQ, MQTT (one `sink-*` feature each),
//! or your own. [`webhook::VerifyWebhookLayer`] (feature `webhook`) is for
//! the other end: an app that *receives* signed webhooks (B2 Event
//! Notifications, Frame.io, Standard Webhooks, GitHub, Stripe).
//! [`proxy`] (feature `proxy`) is the `s3tap` binary as a library. The SigV4
//! math lives in [`sigv4`], free of tower and of any HTTP server.
//!
//! # The whole stack
//!
//! Verify, re-sign, notify, with a dispatcher and a sink. Here the upstream
//! is a stand-in service and the client is signed by a second
//! [`ResignLayer`](resign::ResignLayer) (which signs unsigned requests when
//! used alone); a real proxy puts an [`UpstreamClient`](upstream::UpstreamClient)
//! at the bottom and serves the stack with hyper (`examples/minimal_proxy.rs`).
//!
//! ```
//! # #[cfg(feature = "dispatcher")]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, Full};
//! use s3tap::credentials::{StaticCredentials, UpstreamCredentials};
//! use s3tap::notify::{Dispatcher, Event, NotifyLayer};
//! use s3tap::resign::{ResignLayer, Upstream};
//! use s3tap::sink::JsonLinesSink;
//! use s3tap::verify::SigV4VerifyLayer;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! // Events for the sink named "log": JSON lines on stdout, spooled on disk.
//! let spool = tempfile::tempdir()?;
//! let (dispatcher, task) = Dispatcher::builder()
//!     .sink("log", Arc::new(JsonLinesSink::stdout()))
//!     .spool(spool.path().join("events.redb"), Default::default())
//!     .build()
//!     .await?;
//! let events = dispatcher.clone();
//!
//! let proxy = ServiceBuilder::new()
//!     .layer(NotifyLayer::new(move |event: Event| {
//!         let _ = events.emit("log", event);
//!     }))
//!     .layer(
//!         SigV4VerifyLayer::new(StaticCredentials::new().with_key("CLIENTKEY", "client-secret"))
//!             .region("us-east-1")
//!             .publish_chunk_digests(true),
//!     )
//!     .layer(
//!         ResignLayer::new(Upstream::parse("http://upstream.internal:9000")?)
//!             .sign_with(UpstreamCredentials::new("UPSTREAMKEY", "upstream-secret")),
//!     )
//!     // Stand-in for UpstreamClient: every request is stored.
//!     .service_fn(|request: http::Request<_>| async move {
//!         assert_eq!(request.uri().host(), Some("upstream.internal"));
//!         Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::new())))
//!     });
//!
//! // A client that signs its PUT with its own key.
//! let client = ServiceBuilder::new()
//!     .layer(
//!         ResignLayer::new(Upstream::parse("http://127.0.0.1:8080")?)
//!             .sign_with(UpstreamCredentials::new("CLIENTKEY", "client-secret")),
//!     )
//!     .service(proxy);
//! let request = http::Request::put("http://127.0.0.1:8080/photos/cat.jpg")
//!     .body(Full::new(Bytes::from_static(b"meow")))?;
//! let response = client.oneshot(request).await?;
//! assert_eq!(response.status(), 200);
//! response.into_body().collect().await?;
//!
//! let stats = dispatcher.shutdown(Duration::from_secs(5)).await;
//! assert_eq!(stats.delivered(), 1);
//! task.await?;
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "dispatcher"))]
//! # fn main() {}
//! ```
//!
//! # Features
//!
//! None is on by default (as in tower-http); `full` turns on all of them.
//!
//! | feature | brings |
//! |---|---|
//! | (none) | [`sigv4`], [`verify`], [`resign`], [`credentials`], [`s3error`] |
//! | `notify` | [`notify::NotifyLayer`], the event model, classification, rules, formats |
//! | `authorize` | [`authorize::AuthorizeLayer`]: IAM-style JSON policies per client (with `notify`) |
//! | `post` | [`post::PostObjectLayer`]: browser form uploads (multer, tempfile) |
//! | `dispatcher` | [`notify::Dispatcher`] with its durable spool, the [`sink::Sink`] port, [`sink::JsonLinesSink`] |
//! | `upstream` | [`upstream::UpstreamClient`] (hyper, rustls) |
//! | `webhook` | [`webhook::VerifyWebhookLayer`] for receiving signed webhooks |
//! | `sink-webhook`, `sink-kafka`, `sink-sns`, `sink-nats`, `sink-redis`, `sink-rabbitmq`, `sink-mqtt` | one sink each |
//! | `outbox-nats` | [`outbox`]: the fleet's outbox on NATS JetStream, its deliverer, dead-letter stream and replay |
//! | `outbox-kafka` | [`outbox::kafka`]: the same on Kafka (topics, a consumer group per sink, dead-letter topic, replay by time) |
//! | `transform` | [`transform::TransformLayer`]: zstd compression of uploads, decompression of downloads (zstd) |
//! | `proxy` | the `s3tap` binary and [`proxy`] (with `upstream` and `sink-webhook`) |
//! | `full` | all of the above: `cargo install s3tap --features full` is a proxy that knows every sink |
#![deny(unsafe_code)]
#![warn(missing_docs)]
#![deny(unreachable_pub, rust_2018_idioms)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod addressing;
#[cfg(feature = "authorize")]
pub mod authorize;
#[cfg(feature = "b2-native")]
pub mod b2native;
pub mod body;
pub mod credentials;
pub mod crypto;
mod hop_by_hop;
#[cfg(any(feature = "upstream", feature = "sink-webhook"))]
mod https;
#[cfg(any(feature = "sink-nats", feature = "outbox-nats"))]
mod nats;
#[cfg(feature = "notify")]
pub mod notify;
#[cfg(any(feature = "outbox-nats", feature = "outbox-kafka"))]
pub mod outbox;
#[cfg(feature = "post")]
pub mod post;
#[cfg(feature = "proxy")]
pub mod proxy;
pub mod resign;
pub mod s3error;
pub mod secret;
pub mod sigv4;
#[cfg(feature = "dispatcher")]
pub mod sink;
#[cfg(feature = "transform")]
pub mod transform;
#[cfg(feature = "upstream")]
pub mod upstream;
pub mod verified;
pub mod verify;
#[cfg(feature = "webhook")]
pub mod webhook;
#[cfg(any(feature = "sink-sns", feature = "proxy", feature = "transform"))]
mod xml;
