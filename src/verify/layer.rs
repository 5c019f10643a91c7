//! [`SigV4VerifyLayer`]: the builder users configure.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tower_layer::Layer;

use super::service::SigV4Verify;
use crate::credentials::CredentialStore;
use crate::sigv4::{ChunkedLimits, SigningKeyCache, UriEncoding};

/// What to do with the payload of hex-hash and `UNSIGNED-PAYLOAD` requests.
///
/// With the `proxy` feature it is also the `[verify] payload_hashing` value
/// of the binary's TOML file: `"verify"` or `"defer"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "proxy", derive(serde::Deserialize))]
#[cfg_attr(feature = "proxy", serde(rename_all = "lowercase"))]
pub enum PayloadHashing {
    /// Hash the payload and hold back its last frame until the digest (and
    /// any `x-amz-checksum-*` header) matches. The default.
    #[default]
    Verify,
    /// Pass hex and unsigned payloads through untouched and let the upstream,
    /// which checks the same hash, reject a mismatch. Saves one SHA-256 pass
    /// per byte in a proxy; aws-chunked payloads are always verified.
    #[cfg_attr(feature = "proxy", serde(rename = "defer"))]
    DeferToUpstream,
}

type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

#[derive(Clone)]
pub(crate) struct VerifyConfig {
    pub(crate) regions: Option<Vec<String>>,
    pub(crate) service: String,
    pub(crate) max_clock_skew: Duration,
    pub(crate) clock: Clock,
    pub(crate) chunked_limits: ChunkedLimits,
    pub(crate) payload_hashing: PayloadHashing,
    pub(crate) uri_encoding: UriEncoding,
    pub(crate) require_content_length: bool,
    pub(crate) publish_chunk_digests: bool,
    pub(crate) key_cache: Arc<SigningKeyCache>,
}

impl VerifyConfig {
    pub(crate) fn now(&self) -> SystemTime {
        (self.clock)()
    }
}

/// Verifies the AWS Signature V4 of every request before the inner service
/// sees it, and the payload while it streams.
///
/// See the [module docs](crate::verify) for what the inner service receives.
#[derive(Clone)]
pub struct SigV4VerifyLayer<C> {
    store: Arc<C>,
    config: VerifyConfig,
}

impl<C: CredentialStore> SigV4VerifyLayer<C> {
    /// A layer that looks up secrets in `store`, accepts any region, the
    /// service `s3`, ±15 minutes of clock skew and chunks up to 16 MiB.
    pub fn new(store: C) -> Self {
        SigV4VerifyLayer {
            store: Arc::new(store),
            config: VerifyConfig {
                regions: None,
                service: "s3".to_owned(),
                max_clock_skew: Duration::from_secs(15 * 60),
                clock: Arc::new(SystemTime::now),
                chunked_limits: ChunkedLimits::default(),
                payload_hashing: PayloadHashing::Verify,
                uri_encoding: UriEncoding::S3,
                require_content_length: true,
                publish_chunk_digests: false,
                key_cache: Arc::new(SigningKeyCache::default()),
            },
        }
    }

    /// Accepts signatures scoped to `region` (call again to accept more).
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.config
            .regions
            .get_or_insert_with(Vec::new)
            .push(region.into());
        self
    }

    /// Accepts signatures scoped to any region (the default).
    pub fn any_region(mut self) -> Self {
        self.config.regions = None;
        self
    }

    /// Accepts signatures scoped to `service` instead of `s3`.
    pub fn service(mut self, service: impl Into<String>) -> Self {
        self.config.service = service.into();
        self
    }

    /// Allows this much difference between the signing time and now.
    pub fn max_clock_skew(mut self, skew: Duration) -> Self {
        self.config.max_clock_skew = skew;
        self
    }

    /// Reads the time from `clock` instead of the system clock (for tests and
    /// for replaying recorded traffic).
    pub fn clock(mut self, clock: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        self.config.clock = Arc::new(clock);
        self
    }

    /// Rejects aws-chunked chunks larger than `bytes` (default 16 MiB). Each
    /// signed chunk is held in memory until its signature is checked, so this
    /// bounds memory per request.
    pub fn max_chunk_size(mut self, bytes: u64) -> Self {
        self.config.chunked_limits.max_chunk_size = bytes;
        self
    }

    /// Rejects trailer sections larger than `bytes` (default 16 KiB).
    pub fn max_trailer_size(mut self, bytes: usize) -> Self {
        self.config.chunked_limits.max_trailer_size = bytes;
        self
    }

    /// Chooses whether hex and unsigned payloads are hashed here.
    pub fn payload_hashing(mut self, hashing: PayloadHashing) -> Self {
        self.config.payload_hashing = hashing;
        self
    }

    /// Uses the generic-service path rule (double encoding, optional
    /// normalization) instead of S3's. Only useful for non-S3 services.
    pub fn uri_encoding(mut self, encoding: UriEncoding) -> Self {
        self.config.uri_encoding = encoding;
        self
    }

    /// Whether a `PUT` sent with `Transfer-Encoding: chunked` and no length is
    /// rejected with MissingContentLength, as S3 does (default true).
    pub fn require_content_length(mut self, require: bool) -> Self {
        self.config.require_content_length = require;
        self
    }

    /// Publishes each verified chunk's length and SHA-256 in
    /// [`Verified::chunk_digests`](crate::verified::Verified::chunk_digests), so a
    /// re-signing layer can sign the same chunks without hashing them again.
    /// Off by default: without a consumer the list would grow with the object.
    pub fn publish_chunk_digests(mut self, publish: bool) -> Self {
        self.config.publish_chunk_digests = publish;
        self
    }
}

impl<S, C: CredentialStore> Layer<S> for SigV4VerifyLayer<C> {
    type Service = SigV4Verify<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        SigV4Verify::new(inner, self.store.clone(), Arc::new(self.config.clone()))
    }
}

impl<C> fmt::Debug for SigV4VerifyLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigV4VerifyLayer")
            .field("regions", &self.config.regions)
            .field("service", &self.config.service)
            .field("max_clock_skew", &self.config.max_clock_skew)
            .field("chunked_limits", &self.config.chunked_limits)
            .field("payload_hashing", &self.config.payload_hashing)
            .finish_non_exhaustive()
    }
}
