//! s3tap: tower middleware and a proxy for S3-compatible storage.
//!
//! - [`verify::SigV4VerifyLayer`] checks the client's AWS Signature V4 (header
//!   auth and presigned URLs, every payload mode including aws-chunked with
//!   trailers and checksums) and hands the inner service a verified, decoded body.
//! - [`webhook::VerifyWebhookLayer`] (feature `webhook`) lets an app check
//!   signed webhooks it receives (B2 Event Notifications, Frame.io, Standard
//!   Webhooks, GitHub, Stripe).
//! - [`upstream::UpstreamClient`] (feature `upstream`) forwards requests to
//!   the real S3 upstream and answers S3 errors when it cannot.
//! - [`proxy`] (feature `proxy`) is the `s3tap` binary as a library:
//!   configuration, server, embedded store.
//!
//! The SigV4 math lives in [`sigv4`], free of tower and of any HTTP server.
#![deny(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

pub mod body;
pub mod credentials;
pub mod crypto;
#[cfg(feature = "notify")]
pub mod notify;
#[cfg(feature = "proxy")]
pub mod proxy;
pub mod resign;
pub mod s3error;
pub mod sigv4;
#[cfg(feature = "notify")]
pub mod sink;
#[cfg(feature = "upstream")]
pub mod upstream;
pub mod verified;
pub mod verify;
#[cfg(feature = "webhook")]
pub mod webhook;
#[cfg(any(feature = "sink-sns", feature = "proxy"))]
mod xml;
