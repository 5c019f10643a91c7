//! [`UpstreamClient`]: the HTTP(S) client at the end of the proxy stack that
//! sends re-signed requests to the real S3 upstream (feature `upstream`).
//!
//! It is a tower [`Service`](tower_service::Service) over `http::Request<B>`
//! with an absolute URI (as `ResignLayer` produces). Connections are pooled;
//! HTTPS uses rustls with the webpki roots (optionally the system's roots and
//! extra CAs), HTTP/1.1, and HTTP/2 where the upstream offers it by ALPN.
//! Host names go to the system resolver, except `localhost` and
//! `*.localhost`, which are loopback (RFC 6761), so virtual-hosted buckets of
//! a local upstream (`bucket.localhost:9000`) resolve everywhere.
//!
//! Responses stream back as they arrive: status, headers (less hop-by-hop
//! ones) and body, whose bytes are never copied. The service never fails:
//! an unreachable upstream, a timeout or a broken connection become S3 XML
//! errors (`502 BadGateway`, `504 GatewayTimeout`, `503 ServiceUnavailable`)
//! naming the upstream host, so every client gets an answer and none hangs.
//!
//! ```no_run
//! use std::time::Duration;
//! use s3tap::upstream::UpstreamClient;
//!
//! # fn main() -> Result<(), s3tap::upstream::BuildError> {
//! let client = UpstreamClient::builder()
//!     .connect_timeout(Duration::from_secs(5))
//!     .response_timeout(Duration::from_secs(30))
//!     .build()?;
//! # let _ = client;
//! # Ok(())
//! # }
//! ```

mod body;
mod client;
mod error;
mod future;
mod resolve;

pub use body::UpstreamBody;
pub use client::{UpstreamClient, UpstreamClientBuilder};
pub use error::{BuildError, UpstreamError};
pub use future::ResponseFuture;
