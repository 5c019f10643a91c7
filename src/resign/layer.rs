//! [`ResignLayer`]: the builder users configure.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use tower_layer::Layer;

use super::service::Resign;
use super::upstream::Upstream;
use crate::addressing::ClientAddressing;
use crate::credentials::UpstreamCredentials;
use crate::sigv4::SigningKeyCache;

/// Which credentials sign the upstream request.
#[derive(Clone, Debug)]
pub(crate) enum CredentialsSource {
    /// The verified client's own key.
    Client,
    /// One key for every request.
    Fixed(UpstreamCredentials),
    /// The upstream key the credential store maps to the client's key.
    Mapped,
}

/// How buckets are addressed on the upstream. With the `proxy` feature also
/// the `[upstream] addressing` value of the binary's TOML file: `"path"` or
/// `"virtual"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "proxy", derive(serde::Deserialize))]
#[cfg_attr(feature = "proxy", serde(rename_all = "lowercase"))]
pub(crate) enum Addressing {
    /// `host/bucket/key`.
    #[default]
    Path,
    /// `bucket.host/key`.
    #[cfg_attr(feature = "proxy", serde(rename = "virtual"))]
    VirtualHosted,
}

#[derive(Clone)]
pub(crate) struct ResignConfig {
    pub(crate) upstream: Upstream,
    pub(crate) region: String,
    pub(crate) service: String,
    pub(crate) addressing: Addressing,
    pub(crate) client_addressing: ClientAddressing,
    pub(crate) credentials: CredentialsSource,
    pub(crate) clock: Arc<dyn Fn() -> SystemTime + Send + Sync>,
    pub(crate) key_cache: Arc<SigningKeyCache>,
}

/// Rewrites each request for an upstream S3 endpoint and signs it there with
/// SigV4, keeping the payload mode the client chose.
///
/// See the [module docs](crate::resign).
#[derive(Clone)]
pub struct ResignLayer {
    config: ResignConfig,
}

impl ResignLayer {
    /// Re-signs for `upstream`, in the region its host name implies, with
    /// path-style addressing and the verified client's own credentials.
    pub fn new(upstream: Upstream) -> Self {
        ResignLayer {
            config: ResignConfig {
                region: upstream.region(),
                upstream,
                service: "s3".to_owned(),
                addressing: Addressing::Path,
                client_addressing: ClientAddressing::default(),
                credentials: CredentialsSource::Client,
                clock: Arc::new(SystemTime::now),
                key_cache: Arc::new(SigningKeyCache::default()),
            },
        }
    }

    /// Signs for `region` instead of the one derived from the host name.
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.config.region = region.into();
        self
    }

    /// Addresses buckets as `bucket.upstream-host/key` on the upstream.
    pub fn virtual_hosted_style(mut self) -> Self {
        self.config.addressing = Addressing::VirtualHosted;
        self
    }

    /// Addresses buckets as `upstream-host/bucket/key` (the default).
    pub fn path_style(mut self) -> Self {
        self.config.addressing = Addressing::Path;
        self
    }

    /// Addresses buckets on the upstream as `addressing` says (the proxy's
    /// `[upstream] addressing`).
    #[cfg(feature = "proxy")]
    pub(crate) fn addressing(mut self, addressing: Addressing) -> Self {
        self.config.addressing = addressing;
        self
    }

    /// Recognises clients that address buckets as `bucket.<suffix>` in their
    /// Host header (virtual-hosted style towards the proxy).
    pub fn client_virtual_host_suffix(mut self, suffix: impl Into<String>) -> Self {
        self.config
            .client_addressing
            .set_virtual_host_suffix(suffix);
        self
    }

    /// Takes S3 requests under `prefix` (an app's `/s3/bucket/key` route):
    /// the bucket is the segment after it, and the upstream never sees the
    /// prefix. The client's signature still covers the whole path.
    pub fn client_path_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.client_addressing.set_path_prefix(prefix);
        self
    }

    /// Signs with the verified client's own key (the default): the proxy is
    /// transparent and clients hold keys that also work upstream.
    pub fn sign_with_client_credentials(mut self) -> Self {
        self.config.credentials = CredentialsSource::Client;
        self
    }

    /// Signs every request with one fixed upstream key. Also the mode for
    /// signing requests of internal clients that send no signature at all.
    pub fn sign_with(mut self, credentials: UpstreamCredentials) -> Self {
        self.config.credentials = CredentialsSource::Fixed(credentials);
        self
    }

    /// Signs with the upstream key that the credential store maps to the
    /// client's key ([`Credential::upstream`](crate::credentials::Credential)),
    /// so client keys never work upstream; unmapped clients get AccessDenied.
    pub fn sign_with_mapped_credentials(mut self) -> Self {
        self.config.credentials = CredentialsSource::Mapped;
        self
    }

    /// Signs with the key `source` names (the proxy's resolved
    /// `[upstream] credentials`).
    #[cfg(feature = "proxy")]
    pub(crate) fn credentials(mut self, source: CredentialsSource) -> Self {
        self.config.credentials = source;
        self
    }

    /// Reads the signing time from `clock` instead of the system clock.
    pub fn clock(mut self, clock: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        self.config.clock = Arc::new(clock);
        self
    }
}

impl ResignLayer {
    #[cfg(test)]
    pub(crate) fn into_config(self) -> ResignConfig {
        self.config
    }
}

impl<S> Layer<S> for ResignLayer {
    type Service = Resign<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Resign::new(inner, Arc::new(self.config.clone()))
    }
}

impl fmt::Debug for ResignLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let credentials = match &self.config.credentials {
            CredentialsSource::Client => "client".to_owned(),
            CredentialsSource::Fixed(c) => format!("fixed({})", c.access_key_id),
            CredentialsSource::Mapped => "mapped".to_owned(),
        };
        f.debug_struct("ResignLayer")
            .field("upstream", &self.config.upstream)
            .field("region", &self.config.region)
            .field("addressing", &self.config.addressing)
            .field("client_addressing", &self.config.client_addressing)
            .field("credentials", &credentials)
            .finish()
    }
}
