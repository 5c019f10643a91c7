//! Middleware that verifies signed webhooks before your handler sees them.
//!
//! [`VerifyWebhookLayer`] wraps any tower service (an axum route, a hyper
//! service). For each request it
//!
//! 1. refuses with `413` a `Content-Length` above the body limit (default
//!    1 MiB, [`max_body_size`](VerifyWebhookLayer::max_body_size)) without
//!    reading any of the body, and refuses what the headers alone condemn
//!    (missing or malformed signature header, timestamp out of tolerance);
//! 2. reads the body, stopping with `413` at the first frame that passes the
//!    limit;
//! 3. computes the HMAC-SHA256 of the raw bytes the sender signed and compares
//!    it in constant time with every signature in the request, under every
//!    configured secret;
//! 4. optionally recognises a message it has already accepted inside the
//!    replay window ([`replay_cache`](VerifyWebhookLayer::replay_cache)):
//!    refused when its scheme signs a timestamp, passed on marked as a
//!    [`Redelivery`] when it does not;
//! 5. calls the inner service with the request whose body is the verified
//!    bytes, as [`http_body_util::Full<Bytes>`](http_body_util::Full): the
//!    body is complete and small by then, and `Full` is what axum and hyper
//!    handlers already accept (axum's `Bytes`, `String` and `Json`
//!    extractors work on it unchanged). Trailers, which no scheme signs, are
//!    dropped.
//!
//! The inner service is never called for a refused request.
//!
//! # Schemes
//!
//! | sender | constructor | headers | signed content | timestamp |
//! | --- | --- | --- | --- | --- |
//! | Backblaze B2 Event Notifications | [`VerifyWebhookLayer::b2`] | `x-bz-event-notification-signature: v1=<hex>[,v1=<hex>...]` | body | none |
//! | Frame.io custom actions | [`VerifyWebhookLayer::frameio`] | `X-Frameio-Request-Timestamp`, `X-Frameio-Signature: v0=<hex>` | `v0:{timestamp}:{body}` | ± tolerance |
//! | Standard Webhooks | [`VerifyWebhookLayer::standard_webhooks`] | `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64> ...` | `{id}.{timestamp}.{body}` | ± tolerance |
//! | GitHub | [`VerifyWebhookLayer::github`] | `X-Hub-Signature-256: sha256=<hex>` | body | none |
//! | Stripe | [`VerifyWebhookLayer::stripe`] | `Stripe-Signature: t=<unix>,v1=<hex>[,v1=...]` | `{t}.{body}` | ± tolerance |
//!
//! To accept several secrets while rotating, build the scheme yourself:
//! `VerifyWebhookLayer::new(B2::new(current).or_secret(previous))`. Any other
//! format plugs in through the [`WebhookScheme`] trait and
//! [`VerifyWebhookLayer::new`].
//!
//! # Refusals
//!
//! A refused request gets `content-type: application/json` and a body such as
//! `{"error":"invalid_signature","message":"no signature matches the request"}`:
//!
//! | status | `error` | when |
//! | --- | --- | --- |
//! | 401 | `missing_header` | a required header is absent |
//! | 401 | `malformed_header` | a header does not parse (bad prefix, hex, base64, non-numeric timestamp, repeated header) |
//! | 401 | `invalid_signature` | no signature matches |
//! | 401 | `replayed` | the replay cache has seen this message inside the window, and its scheme signs a timestamp |
//! | 403 | `stale_timestamp`, `future_timestamp` | the signed timestamp is beyond the tolerance (default ±300 s, [`tolerance`](VerifyWebhookLayer::tolerance)) |
//! | 413 | `body_too_large` | the body exceeds the limit |
//! | 400 | `body_unreadable` | the body stream failed |
//! | 503 | `replay_store_unavailable` | a shared replay store could not answer; the sender should retry |
//!
//! A replay is answered `401`, not `409`: the receiver cannot tell a replay
//! from an attack, and every sender treats a 4xx as final for that delivery.
//!
//! # Replay cache
//!
//! With [`replay_cache(capacity)`](VerifyWebhookLayer::replay_cache), the layer
//! remembers up to `capacity` accepted messages for twice the tolerance (the
//! whole window in which a timestamp is accepted). Messages are recognised by
//! `webhook-id` (Standard Webhooks) or by their verified signature. When the
//! cache is full the oldest entry goes first. The cache is per process; clones
//! of the layer share it.
//!
//! A fleet of receivers behind a load balancer shares one [`ReplayStore`]
//! instead, set with [`replay_store`](VerifyWebhookLayer::replay_store):
//! `RedisReplayStore` (feature `webhook-redis`) remembers each id with
//! `SET <prefix><hex id> 1 NX PX <twice the tolerance in ms>`, so a message
//! accepted by one receiver is recognised by every other. When the store
//! cannot answer, the layer fails closed with `503 replay_store_unavailable`:
//! the senders retry a 5xx, and accepting could let a replay through.
//!
//! ```no_run
//! # #[cfg(feature = "webhook-redis")]
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use s3tap::webhook::{RedisReplayStore, VerifyWebhookLayer};
//!
//! let store = RedisReplayStore::connect("redis://127.0.0.1:6379/")
//!     .await?
//!     .prefix("billing:webhooks:");
//! let layer = VerifyWebhookLayer::standard_webhooks("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?
//!     .replay_store(store);
//! # let _ = layer;
//! # Ok(()) }
//! ```
//!
//! What a repeat gets depends on whether the scheme signs a timestamp
//! ([`WebhookScheme::signs_timestamp`]):
//!
//! - **Timestamped** (Frame.io, Standard Webhooks, Stripe): refused with `401
//!   replayed`. The signed timestamp already bounds a replay to the window; a
//!   repeat inside it is a captured message sent again.
//! - **No timestamp** (B2 `v1`, GitHub): passed to the handler with the
//!   [`Redelivery`] extension. Such senders retry a delivery with the
//!   identical body and signature (B2 does, until it sees a `2xx`), so a
//!   repeat is most likely a legitimate retry whose first answer was lost;
//!   refusing it would make the sender retry until it gives up, and the
//!   handler, not the layer, knows whether the effect is idempotent. Treat it
//!   as a duplicate: skip the work and answer `2xx`.
//!
//! # Secrets
//!
//! Keys are held in [`Secret`]s: zeroized on drop and printed as
//! `Secret(<redacted>)` by `Debug`, including in the layer's own `Debug`.
//!
//! # Example
//!
//! ```
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::{BodyExt, Full};
//! use s3tap::webhook::VerifyWebhookLayer;
//! use std::time::{Duration, UNIX_EPOCH};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let secret = "b2-rule-signing-secret-0123456789";
//! let app = ServiceBuilder::new()
//!     .layer(
//!         VerifyWebhookLayer::b2(secret)
//!             .max_body_size(64 * 1024)
//!             .replay_cache(10_000)
//!             // Tests pin the clock; production leaves the system clock.
//!             .clock(|| UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
//!     )
//!     .service_fn(|request: Request<Full<Bytes>>| async move {
//!         let body = request.into_body().collect().await?.to_bytes();
//!         Ok::<_, std::convert::Infallible>(Response::new(format!("{} verified bytes", body.len())))
//!     });
//!
//! let body = r#"{"events":[]}"#;
//! let signature = hex::encode(s3tap::crypto::hmac_sha256(secret.as_bytes(), body.as_bytes()));
//! let signed = Request::post("/b2")
//!     .header("x-bz-event-notification-signature", format!("v1={signature}"))
//!     .body(Full::new(Bytes::from(body)))
//!     .unwrap();
//! let response = app.clone().oneshot(signed).await.unwrap();
//! assert_eq!(response.status(), StatusCode::OK);
//!
//! let unsigned = Request::post("/b2").body(Full::new(Bytes::from(body))).unwrap();
//! let response = app.oneshot(unsigned).await.unwrap();
//! assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(response.headers()["content-type"], "application/json");
//! # }
//! ```
//!
//! With axum, add the layer to the route that receives the webhooks, e.g.
//! `Router::new().route("/b2", post(handler)).layer(VerifyWebhookLayer::b2(secret))`;
//! `examples/b2_webhook_receiver.rs` and `examples/frameio_custom_action/`
//! are complete receivers.

mod b2;
mod body;
mod error;
mod frameio;
mod future;
mod github;
mod layer;
#[cfg(feature = "webhook-redis")]
mod redis_store;
mod replay;
mod scheme;
mod secret;
mod service;
mod standard;
mod stripe;

pub use b2::B2;

/// A request extension the layer adds when the replay cache has already
/// accepted this exact message and its scheme signs no timestamp (B2,
/// GitHub): the sender retried a delivery (B2 retries identical bodies
/// when it saw no `2xx`, or saw it too late). The message is verified and
/// reaches the handler, which should treat it as a duplicate (its effects
/// are already done) and answer `2xx` again:
/// `request.extensions().get::<Redelivery>().is_some()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Redelivery;
pub use body::ResponseBody;
pub use error::{InvalidSecret, WebhookError};
pub use frameio::FrameIo;
pub use future::ResponseFuture;
pub use github::GitHub;
pub use layer::{VerifyWebhookLayer, DEFAULT_MAX_BODY_SIZE, DEFAULT_TOLERANCE};
#[cfg(feature = "webhook-redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "webhook-redis")))]
pub use redis_store::RedisReplayStore;
pub use replay::{MemoryReplayStore, ReplayCheck, ReplayStore, ReplayStoreError};
pub use scheme::{ReplayId, WebhookContext, WebhookScheme};
pub use secret::Secret;
pub use service::VerifyWebhook;
pub use standard::StandardWebhooks;
pub use stripe::Stripe;
